"""What one `fmnist serve` worker does, without HTTP: a `Service` holds the model, the micro-batcher, the
decode pool, the memory budget, the keys, the rate limiter, the metrics and the model reload.

`Service.predict` is the whole request path of POST /predict (admission, reading, decoding,
batching, answering), `health` the facts of GET /healthz, `reload` what SIGHUP runs; fmnist.serve.app
only maps routes onto them. Requests never touch the filesystem: bodies are read into memory (at most
`max_body_mb`, counted while they stream in) and images decoded in a small thread pool, while the model
runs in the micro-batcher's thread, so the event loop only moves bytes.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import io
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from PIL import Image

from fmnist import signals
from fmnist.answer import Answer as ImageAnswer
from fmnist.answer import answers
from fmnist.data import CLASSES
from fmnist.errors import FmnistError
from fmnist.images import Cues, Framed, load_picture
from fmnist.inference import Predictor
from fmnist.serve.access import Keys, RateLimiter
from fmnist.serve.batching import Answer, MicroBatcher, QueueFull
from fmnist.serve.http import RETRY, ApiError, Body, BodyBudget, BodyHold, read_uploads
from fmnist.serve.limits import Limits
from fmnist.serve.metrics import Metrics
from fmnist.serve.model import ServedModel, identify

log = logging.getLogger("uvicorn.error")  # uvicorn's own log: reloads are told where its messages go
# What /healthz reports of the model's own description (Predictor.describe).
HEALTH_FACTS = (
    "format",
    "source",
    "device",
    "layout",
    "tta_views",
    "temperature",
    "calibrated",
    "ood_detector",
    "ood_threshold",
)


@dataclass(frozen=True)
class Classified:
    """One request's images as classified: the model's answer, the pictures as the model saw them (with
    their framing cues), and with ?explain=1 one {"method", "heatmap"} per image (else none)."""

    answer: Answer[ServedModel]
    pictures: list[Framed]
    heatmaps: list[dict[str, str]]


class Service:
    """One worker's model and everything around it; used as `async with Service(...) as service:`.

    api_keys: when given, predict and metrics need one of them (fmnist.serve.access).
    ood_threshold: overrides the model's in-distribution threshold (fmnist.trust).
    reload: loads and checks the model again (fmnist.serve.model.load); `reload()` runs it in a thread and
    swaps the model between batches, or keeps the old one and logs why if it fails."""

    def __init__(
        self,
        model: Predictor | ServedModel,
        limits: Limits = Limits(),
        *,
        api_keys: tuple[str, ...] = (),
        reload: Callable[[], ServedModel] | None = None,
        ood_threshold: float | None = None,
    ):
        self.model = model if isinstance(model, ServedModel) else identify(model)
        self.limits, self.ood_threshold, self._load = limits, ood_threshold, reload
        self.in_progress = 0  # requests admitted and not yet answered
        self.preparing = 0  # of those, the ones still being read or decoded: the batcher waits only when some are
        self.metrics = Metrics()
        self.bodies = BodyBudget(limits.max_buffered)
        self.batcher = MicroBatcher(
            self.model,
            limits.max_batch,
            limits.max_wait_ms / 1000,
            limits.max_queue,
            expected=lambda: self.preparing,
            on_batch=self.metrics.model_call,
            finish=self._answers,
        )
        self.decode_pool = concurrent.futures.ThreadPoolExecutor(limits.decoders, thread_name_prefix="fmnist-decode")
        self.keys = Keys(api_keys) if api_keys else None
        self.rate = RateLimiter(limits.rate, limits.burst) if limits.rate > 0 else None
        # Built on the first ?explain=1 (a server that never explains never imports Captum), again after a reload.
        self._explainer: tuple[Predictor, Any] | None = None
        self._reloads: set[asyncio.Task[None]] = set()  # held so that a reload in progress is not garbage-collected
        self._hup = False  # whether SIGHUP is ours (only in the main thread's event loop)

    async def __aenter__(self) -> Service:
        await self.batcher.__aenter__()
        if self._load is not None:
            loop = asyncio.get_running_loop()
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):  # not the main thread (tests)
                loop.add_signal_handler(signal.SIGHUP, self.reload_soon)
                self._hup = True
            if self._hup and signals.take_hangup():  # one came while the server started: reload now
                self.reload_soon()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._hup:  # asyncio gives SIGHUP back to the system's default, death: hold it while we stop
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            signals.hold_hangups()
        await self.batcher.__aexit__(*exc_info)
        self.decode_pool.shutdown(wait=True)
        self.metrics.close()

    async def predict(
        self, body: Body, *, client: str, view: bool = False, explain: str = "0"
    ) -> tuple[dict[str, Any], str]:
        """The JSON of POST /predict for `body`, sent by `client` (its IP address), and the X-Model header of
        the model that answered; ApiError when refused, after reading what is left of the body so that the
        client hears the refusal."""
        try:
            self.admit(body.request.headers, client, explain)
            classified = await self.classify(body, explain == "1")
        except ApiError:
            await body.discard()
            raise
        start = time.perf_counter()
        content = self.answer(classified, view)
        self.metrics.stages["encode"].observe(time.perf_counter() - start)
        return content, classified.answer.model.header()

    def admit(self, headers: Mapping[str, str], client: str, explain: str = "0") -> None:
        """ApiError 401 without a valid key (first: a stranger learns nothing), 422 for a bad ?explain,
        429 past the rate limit of this client (its key when keys are in use, else `client`)."""
        key = self.keys.check(headers) if self.keys is not None else ""
        if explain not in ("0", "1"):
            raise ApiError(422, f"explain: expected 0 or 1, got {explain!r}")
        if self.rate is not None:
            self.rate.take(key or client)

    async def classify(self, body: Body, explain: bool = False) -> Classified:
        """Read, decode and classify the images of one request (503 when max_queue requests are in progress)."""
        if self.in_progress >= self.limits.max_queue:
            raise ApiError(503, f"server busy ({self.in_progress} requests in progress); retry shortly", RETRY)
        self.in_progress += 1
        self.preparing += 1
        self.metrics.in_progress.inc()
        hold = self.bodies.request()
        try:
            pictures = await self._prepare(body, hold)
            images = torch.stack([picture.image for picture in pictures])
            try:
                answer = await self.batcher.submit(images, [picture.cues for picture in pictures])
            except QueueFull as exc:
                raise ApiError(503, f"server busy: {exc}; retry shortly", RETRY) from None
            self.metrics.queued.set(self.batcher.waiting)
            self.metrics.stages["batch_wait"].observe(answer.waited)
            # While still counted in progress: an explanation is many times a prediction's work.
            heatmaps = await self._explain(answer, images) if explain else []
            return Classified(answer, pictures, heatmaps)
        finally:
            hold.release()
            self.in_progress -= 1
            self.metrics.in_progress.dec()

    async def _prepare(self, body: Body, hold: BodyHold) -> list[Framed]:
        """The request's pictures, read and decoded; ApiError 400 naming the first bad file in request order."""
        try:
            start = time.perf_counter()
            uploads = await read_uploads(body, self.limits.max_body, self.limits.max_files, hold)
            read = time.perf_counter()
            self.metrics.stages["body"].observe(read - start)
            loop = asyncio.get_running_loop()
            results = await asyncio.gather(
                *(loop.run_in_executor(self.decode_pool, load_picture, data, name) for name, data in uploads),
                return_exceptions=True,
            )
            self.metrics.stages["decode"].observe(time.perf_counter() - read)
        finally:
            self.preparing -= 1
        for result in results:
            if isinstance(result, FmnistError):
                raise ApiError(400, str(result))
            if isinstance(result, BaseException):
                raise result
        return results  # type: ignore[return-value]  # every result is a picture now

    async def _explain(self, answer: Answer[ServedModel], images: torch.Tensor) -> list[dict[str, str]]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.decode_pool, self._heatmaps, answer.model.predictor, images, answer.logits.argmax(1)
        )

    def _heatmaps(self, predictor: Predictor, images: torch.Tensor, targets: torch.Tensor) -> list[dict[str, str]]:
        from fmnist.explain import Explainer, heatmap_png

        if self._explainer is None or self._explainer[0] is not predictor:
            self._explainer = (predictor, Explainer(predictor))
        explanation = self._explainer[1](images, targets)
        return [
            {"method": explanation.method, "heatmap": data_url(heatmap_png(image, attribution))}
            for image, attribution in zip(images, explanation.maps, strict=True)
        ]

    def _answers(
        self, model: ServedModel, images: torch.Tensor, logits: torch.Tensor, cues: list[Cues | None]
    ) -> list[ImageAnswer]:
        """Every answer of one batch at once (the micro-batcher's finish): the detector scores the batch."""
        return answers(model.predictor.trust, logits, images, cues, self.limits.top_k, self.ood_threshold)

    def answer(self, classified: Classified, view: bool = False) -> dict[str, Any]:
        """The JSON of POST /predict for what `classify` found; `view`: add each 28x28 view as `input`."""
        return build_answer(classified.answer, classified.pictures, view, classified.heatmaps)

    def health(self) -> dict[str, Any]:
        """The JSON of GET /healthz: the model, this process, the limits and the load right now."""
        facts = self.model.predictor.describe()
        return {
            "status": "ok",
            "model": self.model.identity(),
            "pid": os.getpid(),  # the worker process that answered (--workers)
            **{key: value for key, value in facts.items() if key in HEALTH_FACTS},
            **({"ood_threshold": self.ood_threshold} if self.ood_threshold is not None else {}),
            "classes": list(CLASSES),
            "limits": asdict(self.limits),
            "in_progress": self.in_progress,
            "buffered_bytes": self.bodies.used,
            "queued_images": self.batcher.waiting,
            "model_calls": self.batcher.batches,
            "images_classified": self.batcher.images,
        }

    def exposition(self, headers: Mapping[str, str]) -> bytes:
        """The Prometheus text of GET /metrics; ApiError 401 when keys are in use and none is valid."""
        if self.keys is not None:
            self.keys.check(headers)
        return self.metrics.exposition()

    async def reload(self) -> None:
        """Load the model again in a thread and answer with it from the next batch on; if loading or its
        check fails, keep answering with the current model and log why."""
        if self._load is None:
            return
        try:
            new = await asyncio.get_running_loop().run_in_executor(None, self._load)
        except Exception as exc:  # whatever went wrong, the server keeps answering with the model it has
            self.metrics.reloads.labels("failed").inc()
            log.error("model reload failed, still serving %s: %s", self.model.header(), exc)
            return
        self.batcher.swap(new)
        self.model = new
        self.metrics.reloads.labels("ok").inc()
        log.info("model reloaded: now serving %s", new.header())

    def reload_soon(self) -> None:
        """Start `reload` in the running loop (SIGHUP's handler)."""
        task = asyncio.get_running_loop().create_task(self.reload())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)


def build_answer(
    answer: Answer[ServedModel], pictures: list[Framed], view: bool, heatmaps: list[dict[str, str]]
) -> dict[str, Any]:
    """The JSON of POST /predict: the model that answered, and one prediction per image in request order,
    each the picture's fmnist.answer.Answer (class, probabilities, garment or not, in-distribution score,
    calibrated) as `fmnist predict --json` writes it.

    answer.results: the k images' fmnist.answer.Answer, made with their batch (Service._answers); pictures:
    the k framed pictures the model saw; view: add each as `input`; heatmaps: one {"method", "heatmap"} per
    image with ?explain=1, else empty."""
    predictions = []
    for picture, one in zip(pictures, answer.results, strict=True):
        prediction = one.as_dict()
        if view:
            prediction["input"] = png_url(picture.image)
        predictions.append(prediction)
    for prediction, heatmap in zip(predictions, heatmaps, strict=False):  # none unless ?explain=1
        prediction["explanation"] = heatmap
    # Built by hand rather than validated through the response model: same JSON, less work per request.
    return {"model": answer.model.identity(), "predictions": predictions}


def png_url(image: torch.Tensor) -> str:
    """A uint8 [28, 28] image as a PNG data URL (an <img src> shows it as it is)."""
    buffer = io.BytesIO()
    Image.fromarray(image.numpy()).save(buffer, format="PNG", compress_level=1)  # 28x28: speed over bytes
    return data_url(buffer.getvalue())


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
