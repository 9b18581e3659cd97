"""`fmnist serve`: the HTTP API and the page, as a FastAPI app built by `create_app(model)`.

Requests never touch the filesystem: bodies are read into memory (at most `max_body_mb`,
counted while they stream in), multipart forms are parsed in memory, and the page's files are
read once when the app is built. Images are decoded in a small thread pool and the model runs
in the micro-batcher's thread, so the event loop only moves bytes. HTTP mechanics (body reading,
HEAD, request ids) are in fmnist.serve.http, keys and rate limits in fmnist.serve.access, the
model's identity and checks in fmnist.serve.model, the Prometheus metrics in fmnist.serve.metrics.
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
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from typing import Any

import torch
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from PIL import Image
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from fmnist import answers
from fmnist.data import CLASSES
from fmnist.errors import FmnistError
from fmnist.images import Framed, load_picture
from fmnist.inference import Predictor
from fmnist.serve.access import Keys, RateLimiter
from fmnist.serve.batching import Answer, MicroBatcher, QueueFull
from fmnist.serve.http import RETRY, ApiError, Body, BodyBudget, Edge, read_uploads
from fmnist.serve.metrics import CONTENT_TYPE, Metrics
from fmnist.serve.model import ServedModel, identify

log = logging.getLogger("uvicorn.error")  # uvicorn's own log: reloads are told where its messages go
_STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
MIB = 2**20


def _limit(default: float, help: str, least: float = 1, above: bool = False) -> Any:
    """A Limits field: its `fmnist serve` flag's help, and its lowest allowed value (`above`: strictly above)."""
    return field(default=default, metadata={"help": help, "least": least, "above": above})


@dataclass(frozen=True)
class Limits:
    """What one server (one worker process) accepts and how it batches; each field is an `fmnist serve` flag."""

    max_batch: int = _limit(64, "images per model call")
    max_wait_ms: float = _limit(2.0, "how long a batch waits for more images once one arrived", least=0)
    max_queue: int = _limit(256, "requests in progress, and images waiting for the model, before answering 503")
    decoders: int = _limit(2, "threads decoding uploaded images (each may hold a large decoded photo)")
    max_body_mb: float = _limit(10.0, "largest request body, MiB", least=0, above=True)
    max_buffered_mb: float = _limit(
        128.0, "request bodies held in memory by all requests together, MiB; beyond: 503", least=0, above=True
    )
    max_files: int = _limit(16, "images in one multipart request")
    top_k: int = _limit(5, "classes listed per prediction")
    rate: float = _limit(
        0.0,
        "POST /predict requests per second per client (API key, else IP address), token bucket; 0: no limit",
        least=0,
    )
    burst: int = _limit(20, "requests a client may send at once before --rate applies")

    @property
    def max_body(self) -> int:
        """Bytes of one request body."""
        return max(1, round(self.max_body_mb * MIB))

    @property
    def max_buffered(self) -> int:
        """Bytes of request bodies in memory at once, all requests together."""
        return max(1, round(self.max_buffered_mb * MIB))

    def check(self) -> None:
        """FmnistError naming the first value out of range (flag names, as the user typed them)."""
        for f in fields(self):
            value, least = getattr(self, f.name), f.metadata["least"]
            if value < least or (f.metadata["above"] and value <= least):
                bound = f"> {least:g}" if f.metadata["above"] else f">= {least:g}"
                raise FmnistError(f"{f.name.replace('_', '-')} must be {bound}, got {value}")
        if self.max_body > self.max_buffered:
            raise FmnistError(
                f"max-body-mb ({self.max_body_mb:g}) cannot exceed max-buffered-mb ({self.max_buffered_mb:g})"
            )
        if self.max_files > self.max_batch:
            raise FmnistError(f"max-files ({self.max_files}) cannot exceed max-batch ({self.max_batch})")
        if self.top_k > len(CLASSES):
            raise FmnistError(f"top-k must be at most {len(CLASSES)}, got {self.top_k}")


class HeatmapResponse(BaseModel):
    method: str  # how the map was computed (explain.py)
    heatmap: str  # what drove the predicted class over the 28x28 view, as a data:image/png;base64 URL


class Prediction(BaseModel):
    class_index: int
    class_name: str
    probability: float
    top: list[tuple[str, float]]
    input: str | None = None  # with ?input=1: the 28x28 image the model saw, as a data:image/png;base64 URL
    garment: bool  # looks like a Fashion-MNIST item; false: "does not look like clothing", class_name is a guess
    in_distribution_score: float | None  # 0..1 (docs/TRUST.md); None when the model has no detector
    ood_threshold: float | None  # the score a garment reaches
    calibrated: bool  # probabilities use the model's fitted temperature
    explanation: HeatmapResponse | None = None  # with ?explain=1 only


class ModelIdentity(BaseModel):
    file: str
    sha256: str
    kind: str
    train_accuracy: float | None = None
    val_accuracy: float | None = None
    test_accuracy: float | None = None


class PredictResponse(BaseModel):
    model: ModelIdentity
    predictions: list[Prediction]


class ErrorResponse(BaseModel):
    error: str


def create_app(  # noqa: C901 -- the FastAPI app factory: its routes are nested functions sharing its state
    model: Predictor | ServedModel,
    limits: Limits = Limits(),
    *,
    api_keys: tuple[str, ...] = (),
    cors_origins: tuple[str, ...] = (),
    reload: Callable[[], ServedModel] | None = None,
    ood_threshold: float | None = None,
) -> FastAPI:
    """The app serving `model` within `limits`.

    api_keys: when given, POST /predict and GET /metrics need one of them (fmnist.serve.access).
    cors_origins: origins whose pages may call the API from a browser (none by default).
    ood_threshold: overrides the model's in-distribution threshold (fmnist.trust).
    reload: loads and checks the model again (fmnist.serve.model.load); on SIGHUP the app runs it in a
    thread and swaps the model between batches, or keeps the old one and logs why if it fails.
    Raises FmnistError for limits out of range."""
    limits.check()
    current = model if isinstance(model, ServedModel) else identify(model)
    in_progress = 0  # requests admitted and not yet answered
    preparing = 0  # of those, the ones still being read or decoded: the batcher waits only when some are
    metrics = Metrics()
    bodies = BodyBudget(limits.max_buffered)
    batcher = MicroBatcher(
        current,
        limits.max_batch,
        limits.max_wait_ms / 1000,
        limits.max_queue,
        expected=lambda: preparing,
        on_batch=metrics.model_call,
    )
    decode_pool = concurrent.futures.ThreadPoolExecutor(limits.decoders, thread_name_prefix="fmnist-decode")
    keys = Keys(api_keys) if api_keys else None
    rate = RateLimiter(limits.rate, limits.burst) if limits.rate > 0 else None
    static = _read_static()
    reloads: set[asyncio.Task[None]] = set()  # held so that a reload in progress is not garbage-collected

    async def reload_model() -> None:
        nonlocal current
        if reload is None:
            return
        try:
            new = await asyncio.get_running_loop().run_in_executor(None, reload)
        except Exception as exc:  # whatever went wrong, the server keeps answering with the model it has
            metrics.reloads.labels("failed").inc()
            log.error("model reload failed, still serving %s: %s", current.header(), exc)
            return
        batcher.swap(new)
        current = new
        metrics.reloads.labels("ok").inc()
        log.info("model reloaded: now serving %s", new.header())

    def on_hup(loop: asyncio.AbstractEventLoop) -> None:
        task = loop.create_task(reload_model())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    # (predictor, its Explainer): built on the first ?explain=1 (a server that never explains never imports
    # Captum), and again after a reload swapped the model.
    explainer: list[Any] = [None, None]

    def explain_urls(predictor: Predictor, images: torch.Tensor, targets: torch.Tensor) -> list[dict[str, str]]:
        from fmnist.explain import Explainer, heatmap_png

        if explainer[0] is not predictor:
            explainer[:] = [predictor, Explainer(predictor)]
        explanation = explainer[1](images, targets)
        return [
            {"method": explanation.method, "heatmap": data_url(heatmap_png(image, attribution))}
            for image, attribution in zip(images, explanation.maps, strict=True)
        ]

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        hup = False
        if reload is not None:
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):  # not the main thread (tests)
                loop.add_signal_handler(signal.SIGHUP, on_hup, loop)
                hup = True
        async with batcher:
            yield
        if hup:
            loop.remove_signal_handler(signal.SIGHUP)
        decode_pool.shutdown(wait=True)
        metrics.close()

    errors: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorResponse} for code in (400, 401, 413, 415, 422, 429, 503)
    }
    # No /docs or /redoc: FastAPI serves them from a CDN, and every page here must work offline.
    app = FastAPI(
        title="fmnist",
        summary="Fashion-MNIST classifier",
        lifespan=lifespan,
        responses=errors,
        docs_url=None,
        redoc_url=None,
    )
    app.state.reload = reload_model  # what SIGHUP runs
    app.state.model_header = current.header()  # the model it starts with
    app.state.layout = current.predictor.describe().get("layout")  # what a bare state dict was read as

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid')}"}, 422)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        facts = current.predictor.describe()
        return {
            "status": "ok",
            "model": current.identity(),
            "pid": os.getpid(),  # the worker process that answered (--workers)
            **{
                key: value
                for key, value in facts.items()
                if key
                in (
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
            },
            **({"ood_threshold": ood_threshold} if ood_threshold is not None else {}),
            "classes": list(CLASSES),
            "limits": asdict(limits),
            "in_progress": in_progress,
            "buffered_bytes": bodies.used,
            "queued_images": batcher.waiting,
            "model_calls": batcher.batches,
            "images_classified": batcher.images,
        }

    @app.get("/metrics", include_in_schema=False)
    async def metrics_route(request: Request) -> Response:
        if keys is not None:
            keys.check(request.headers)
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    @app.post(
        "/predict",
        response_model=PredictResponse,
        openapi_extra={
            "requestBody": {
                "content": {
                    "image/*": {"schema": {"type": "string", "format": "binary"}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"file": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                        }
                    },
                }
            }
        },
    )
    async def predict(
        request: Request,
        view: bool = Query(False, alias="input", description="add each image's 28x28 view"),
        explain: str = Query("0", description="1: add a heatmap of what drove each answer (explain.py)"),
    ) -> Response:
        """Classify one raw image body (image/* or application/octet-stream) or the multipart field(s) `file`."""
        body = Body(request)
        try:
            client = keys.check(request.headers) if keys is not None else ""  # first: a stranger learns nothing
            if explain not in ("0", "1"):
                raise ApiError(422, f"explain: expected 0 or 1, got {explain!r}")
            if rate is not None:
                rate.take(client or (request.client.host if request.client else ""))
            answer, pictures, heatmaps = await classify(body, explain == "1")
        except ApiError:
            await body.discard()  # read what is left of the body so that the client gets this answer
            raise
        start = time.perf_counter()
        content = build_answer(answer, pictures, limits.top_k, view, heatmaps, ood_threshold)
        metrics.stage.labels("encode").observe(time.perf_counter() - start)
        return JSONResponse(content, headers={"X-Model": answer.model.header()})

    async def classify(body: Body, explain: bool) -> tuple[Answer[ServedModel], list[Framed], list[dict[str, str]]]:
        """Read, decode and classify the images of one request: the model's answer, the pictures as the model
        saw them (with their framing cues), and with `explain` one heatmap per image (else none)."""
        nonlocal in_progress, preparing
        if in_progress >= limits.max_queue:
            raise ApiError(503, f"server busy ({in_progress} requests in progress); retry shortly", RETRY)
        in_progress += 1
        preparing += 1
        metrics.in_progress.inc()
        submitted = False
        hold = bodies.request()
        try:
            start = time.perf_counter()
            uploads = await read_uploads(body, limits.max_body, limits.max_files, hold)
            read = time.perf_counter()
            metrics.stage.labels("body").observe(read - start)
            loop = asyncio.get_running_loop()
            results = await asyncio.gather(
                *(loop.run_in_executor(decode_pool, load_picture, data, name) for name, data in uploads),
                return_exceptions=True,
            )
            metrics.stage.labels("decode").observe(time.perf_counter() - read)
            for result in results:  # the first bad file, in request order, names itself
                if isinstance(result, FmnistError):
                    raise ApiError(400, str(result))
                if isinstance(result, BaseException):
                    raise result
            pictures: list[Framed] = results  # type: ignore[assignment]  # every result is a picture now
            images = torch.stack([picture.image for picture in pictures])
            preparing -= 1
            submitted = True
            try:
                answer = await batcher.submit(images)
            except QueueFull as exc:
                raise ApiError(503, f"server busy: {exc}; retry shortly", RETRY) from None
            metrics.queued.set(batcher.waiting)
            metrics.stage.labels("batch_wait").observe(answer.waited)
            heatmaps: list[dict[str, str]] = []
            if explain:  # while still counted in progress: an explanation is many times a prediction's work
                heatmaps = await loop.run_in_executor(
                    decode_pool, explain_urls, answer.model.predictor, images, answer.logits.argmax(1)
                )
            return answer, pictures, heatmaps
        finally:
            hold.release()
            in_progress -= 1
            metrics.in_progress.dec()
            if not submitted:
                preparing -= 1

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return Response(static["index.html"], media_type=_STATIC_TYPES[".html"])

    @app.get("/static/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        if name not in static:  # a lookup in a dict read at start: no path from a request reaches the disk
            raise ApiError(404, f"no such file: {name}")
        media_type = _STATIC_TYPES.get("." + name.rpartition(".")[2], "application/octet-stream")
        return Response(static[name], media_type=media_type)

    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "HEAD", "POST"],
            allow_headers=["Content-Type", "Authorization", "X-API-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID", "X-Model", "Retry-After"],
            max_age=600,
        )
    routes = {getattr(route, "path", "") for route in app.routes} - {"/static/{name}"}
    app.add_middleware(Edge, metrics=metrics, model_header=lambda: current.header(), routes=routes)
    return app


def build_answer(
    answer: Answer[ServedModel],
    pictures: list[Framed],
    top_k: int,
    view: bool,
    heatmaps: list[dict[str, str]],
    ood_threshold: float | None = None,
) -> dict[str, Any]:
    """The JSON of POST /predict: the model that answered, and one prediction per image in request order,
    each the image's Answer (fmnist.answers: class, probabilities, garment or not, in-distribution score,
    calibrated), as `fmnist predict --json` gives it.

    answer.logits: float32 [k, 10]; pictures: the k framed pictures the model saw; view: add each as `input`;
    heatmaps: one {"method", "heatmap"} per image with ?explain=1, else empty."""
    cues = [picture.cues for picture in pictures]
    found = answers.answer(answer.model.predictor.trust, answer.logits, cues, top_k, ood_threshold)
    predictions = []
    for picture, one in zip(pictures, found, strict=True):
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


def _read_static() -> dict[str, bytes]:
    folder = resources.files("fmnist.serve") / "static"
    return {entry.name: entry.read_bytes() for entry in folder.iterdir() if entry.is_file()}
