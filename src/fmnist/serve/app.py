"""`fmnist serve`: the HTTP API and the page, as a FastAPI app built by `create_app(predictor)`.

Requests never touch the filesystem: bodies are read into memory (at most `max_body` bytes,
counted while they stream in), multipart forms are parsed in memory, and the page's files are
read once when the app is built. Images are decoded in a small thread pool and the model runs
in the micro-batcher's thread, so the event loop only moves bytes.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import io
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from PIL import Image
from pydantic import BaseModel
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from fmnist import trust
from fmnist.data import CLASSES
from fmnist.errors import FmnistError
from fmnist.images import Cues, load_picture
from fmnist.inference import Predictor
from fmnist.serve.batching import MicroBatcher, QueueFull

RETRY = {"Retry-After": "1"}  # seconds, on every 503
_STATIC_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}


@dataclass(frozen=True)
class Limits:
    """What one server accepts and how it batches; `fmnist serve` flags map onto these."""

    max_batch: int = 64  # images per model call
    max_wait_ms: float = 2.0  # how long the first image of a batch waits for company
    max_queue: int = 256  # requests in progress, and images waiting for the model; beyond: 503
    decoders: int = 2  # threads decoding uploads at once (each may hold a large decoded photo)
    max_body: int = 10 * 2**20  # bytes of one request body
    max_buffered: int = 128 * 2**20  # bytes of request bodies in memory at once, all requests together; beyond: 503
    max_files: int = 16  # images in one multipart request
    top_k: int = 5  # classes listed in each prediction's "top"

    def check(self) -> None:
        for name, value in asdict(self).items():
            if value < (0 if name == "max_wait_ms" else 1):
                least = ">= 0" if name == "max_wait_ms" else ">= 1"
                raise FmnistError(f"{name.replace('_', '-')} must be {least}, got {value}")
        if self.max_body > self.max_buffered:
            raise FmnistError(f"max-body ({self.max_body:,} bytes) cannot exceed max-buffered ({self.max_buffered:,})")
        if self.max_files > self.max_batch:
            raise FmnistError(f"max-files ({self.max_files}) cannot exceed max-batch ({self.max_batch})")
        if self.top_k > len(CLASSES):
            raise FmnistError(f"top-k must be at most {len(CLASSES)}, got {self.top_k}")


class BodyBudget:
    """Bytes of request bodies held in memory by all requests together: one large upload is bounded by
    max_body, but many at once only by this (the event loop is one thread, so no lock is needed)."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0

    def request(self) -> BodyHold:
        return BodyHold(self)


class BodyHold:
    """What one request holds of the budget; released when its response is built."""

    def __init__(self, budget: BodyBudget):
        self.budget, self.held = budget, 0

    def take(self, n: int) -> None:
        if self.budget.used + n > self.budget.limit:
            raise ApiError(503, f"server busy: {self.budget.used:,} bytes of uploads in memory; retry shortly", RETRY)
        self.budget.used += n
        self.held += n

    def release(self) -> None:
        self.budget.used -= self.held
        self.held = 0


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


class Prediction(BaseModel):
    class_index: int
    class_name: str
    probability: float
    top: list[tuple[str, float]]
    input: str  # the 28x28 image the model saw, as a data:image/png;base64 URL
    garment: bool  # looks like a Fashion-MNIST item; false: "does not look like clothing", class_name is a guess
    in_distribution_score: float | None  # 0..1 (docs/TRUST.md); None when the model has no detector
    ood_threshold: float | None  # the score a garment reaches
    calibrated: bool  # probabilities use the model's fitted temperature


class PredictResponse(BaseModel):
    predictions: list[Prediction]


class ErrorResponse(BaseModel):
    error: str


def create_app(predictor: Predictor, limits: Limits = Limits(), ood_threshold: float | None = None) -> FastAPI:
    limits.check()
    in_progress = 0  # requests admitted and not yet answered
    preparing = 0  # of those, the ones still being read or decoded: the batcher waits only when some are
    bodies = BodyBudget(limits.max_buffered)
    batcher = MicroBatcher(predictor.logits, limits.max_batch, limits.max_wait_ms / 1000, limits.max_queue,
                           expected=lambda: preparing)
    decode_pool = concurrent.futures.ThreadPoolExecutor(limits.decoders, thread_name_prefix="fmnist-decode")
    static = _read_static()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with batcher:
            yield
        decode_pool.shutdown(wait=True)

    errors: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (400, 413, 415, 422, 503)}
    # No /docs or /redoc: FastAPI serves them from a CDN, and every page here must work offline.
    app = FastAPI(title="fmnist", summary="Fashion-MNIST classifier", lifespan=lifespan, responses=errors,
                  docs_url=None, redoc_url=None)

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

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # Starlette still logs the traceback on the server; the client gets one line.
        return JSONResponse({"error": f"internal error ({type(exc).__name__})"}, 500)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            **predictor.describe(),
            **({"ood_threshold": ood_threshold} if ood_threshold is not None else {}),
            "classes": list(CLASSES),
            "limits": asdict(limits),
            "in_progress": in_progress,
            "buffered_bytes": bodies.used,
            "queued_images": batcher.waiting,
            "model_calls": batcher.batches,
            "images_classified": batcher.images,
        }

    @app.post(
        "/predict",
        response_model=PredictResponse,
        openapi_extra={"requestBody": {"content": {
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {"schema": {"type": "object", "properties": {
                "file": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
        }}},
    )
    async def predict(request: Request) -> Response:
        """Classify one raw image body (Content-Type image/*) or the multipart field(s) `file`, in order."""
        nonlocal in_progress, preparing
        if in_progress >= limits.max_queue:
            raise ApiError(503, f"server busy ({in_progress} requests in progress); retry shortly", RETRY)
        in_progress += 1
        preparing += 1
        submitted = False
        hold = bodies.request()
        try:
            uploads = await _read_uploads(request, limits, hold)
            loop = asyncio.get_running_loop()
            results = await asyncio.gather(*(loop.run_in_executor(decode_pool, _decode, data, name)
                                             for name, data in uploads), return_exceptions=True)
            decoded: list[tuple[torch.Tensor, str, Cues | None]] = []
            for result in results:  # the first bad file, in request order, names itself
                if isinstance(result, FmnistError):
                    raise ApiError(400, str(result))
                if isinstance(result, BaseException):
                    raise result
                decoded.append(result)
            images = torch.stack([image for image, _, _ in decoded])
            preparing -= 1
            submitted = True
            try:
                logits = await batcher.submit(images)
            except QueueFull as exc:
                raise ApiError(503, f"server busy: {exc}; retry shortly", RETRY) from None
        finally:
            hold.release()
            in_progress -= 1
            if not submitted:
                preparing -= 1
        verdict = trust.judge(predictor.trust, logits, [cues for _, _, cues in decoded], ood_threshold)
        top_p, top_i = verdict.probabilities.topk(limits.top_k, dim=1)
        predictions = [
            {
                "class_index": int(i[0]),
                "class_name": CLASSES[int(i[0])],
                "probability": float(p[0]),
                "top": [[CLASSES[c], q] for c, q in zip(i.tolist(), p.tolist(), strict=True)],
                "input": png_url,
                **trust.fields(verdict, n, predictor.trust, ood_threshold),
            }
            for n, (p, i, (_, png_url, _)) in enumerate(zip(top_p, top_i, decoded, strict=True))
        ]
        # Built by hand rather than validated through the response model: same JSON, less work per request.
        return JSONResponse({"predictions": predictions})

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return Response(static["index.html"], media_type=_STATIC_TYPES[".html"])

    @app.get("/static/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        if name not in static:  # a lookup in a dict read at start: no path from a request reaches the disk
            raise ApiError(404, f"no such file: {name}")
        media_type = _STATIC_TYPES.get("." + name.rpartition(".")[2], "application/octet-stream")
        return Response(static[name], media_type=media_type)

    return app


async def _read_uploads(request: Request, limits: Limits, hold: BodyHold) -> list[tuple[str, bytes]]:
    """(name, bytes) of each image in the body, checking type and size as it streams in."""
    content_type = request.headers.get("content-type", "")
    kind, params = parse_options_header(content_type)
    if kind.startswith(b"image/"):
        body = b"".join([chunk async for chunk in _limited_stream(request, limits.max_body, hold)])
        return [("upload", body)]
    if kind == b"multipart/form-data":
        return await _read_multipart(request, params.get(b"boundary"), limits, hold)
    shown = content_type or "none"
    raise ApiError(415, f"Content-Type {shown!r} not accepted: send an image (image/png, image/jpeg, ...) "
                        "as the body, or multipart/form-data with the image(s) in field 'file'")


async def _limited_stream(request: Request, limit: int, hold: BodyHold) -> AsyncIterator[bytes]:
    declared = request.headers.get("content-length", "")
    too_big = ApiError(413, f"request body is larger than the {limit:,} bytes allowed")
    if declared.isdigit() and int(declared) > limit:
        raise too_big  # refuse before reading a byte
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:  # a missing or lying Content-Length
                raise too_big
            hold.take(len(chunk))
            yield chunk
    except ClientDisconnect:
        raise ApiError(400, "client disconnected before the body was complete") from None


async def _read_multipart(
    request: Request, boundary: bytes | None, limits: Limits, hold: BodyHold
) -> list[tuple[str, bytes]]:
    if not boundary:
        raise ApiError(400, "multipart/form-data without a boundary parameter")
    files: list[tuple[str, list[bytes]]] = []
    state: dict[str, Any] = {"field": b"", "value": b"", "headers": {}, "ended": False}

    def part_begin() -> None:
        state["headers"] = {}

    def header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def header_end() -> None:
        state["headers"][state["field"].lower()] = state["value"]
        state["field"] = state["value"] = b""

    def headers_finished() -> None:
        _, options = parse_options_header(state["headers"].get(b"content-disposition", b""))
        state["target"] = None
        if options.get(b"name") == b"file":
            if len(files) >= limits.max_files:
                raise ApiError(400, f"too many files: at most {limits.max_files} per request")
            name = options.get(b"filename", b"").decode("utf-8", "replace") or f"file {len(files) + 1}"
            files.append((name, []))
            state["target"] = files[-1][1]

    def part_data(data: bytes, start: int, end: int) -> None:
        if state["target"] is not None:  # other fields are skipped, not stored
            state["target"].append(data[start:end])

    def end() -> None:
        state["ended"] = True

    parser = MultipartParser(boundary, {
        "on_part_begin": part_begin, "on_header_field": header_field, "on_header_value": header_value,
        "on_header_end": header_end, "on_headers_finished": headers_finished, "on_part_data": part_data,
        "on_end": end,
    })
    try:
        async for chunk in _limited_stream(request, limits.max_body, hold):
            parser.write(chunk)
        parser.finalize()
    except ApiError:
        raise
    except Exception as exc:  # python-multipart reports malformed bodies with several exception types
        raise ApiError(400, f"malformed multipart body: {' '.join(str(exc).split()) or type(exc).__name__}") from None
    if not state["ended"]:
        raise ApiError(400, "malformed multipart body: it ends before the closing boundary")
    if not files:
        raise ApiError(400, "no field 'file' in the form: send the image(s) as multipart field 'file'")
    return [(name, b"".join(chunks)) for name, chunks in files]


def _decode(data: bytes, name: str) -> tuple[torch.Tensor, str, Cues | None]:
    """The 28x28 image the model sees, the same as a PNG data URL for the page, and the framing's cues
    (FmnistError if unreadable)."""
    framed = load_picture(data, name)
    image = framed.image
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image)).save(buffer, format="PNG", compress_level=1)  # 28x28: speed over bytes
    return image, "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), framed.cues


def _read_static() -> dict[str, bytes]:
    folder = resources.files("fmnist.serve") / "static"
    return {entry.name: entry.read_bytes() for entry in folder.iterdir() if entry.is_file()}

