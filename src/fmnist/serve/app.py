"""`fmnist serve`: the HTTP API and the page, as a FastAPI app built by `create_app(model)`.

The routes only map HTTP onto a fmnist.serve.service.Service (the request path, without HTTP). The
page's files are read once when the app is built. HTTP mechanics (body reading, HEAD, request ids) are
in fmnist.serve.http, keys and rate limits in fmnist.serve.access, the model's identity and checks in
fmnist.serve.model, the Prometheus metrics in fmnist.serve.metrics.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from fmnist.inference import Predictor
from fmnist.serve.http import ApiError, Body, Edge
from fmnist.serve.limits import Limits
from fmnist.serve.metrics import CONTENT_TYPE
from fmnist.serve.model import ServedModel
from fmnist.serve.service import Service

_STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


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


def create_app(
    model: Predictor | ServedModel,
    limits: Limits = Limits(),
    *,
    api_keys: tuple[str, ...] = (),
    cors_origins: tuple[str, ...] = (),
    reload: Callable[[], ServedModel] | None = None,
    ood_threshold: float | None = None,
) -> FastAPI:
    """The app serving `model` within `limits`: the routes of a fmnist.serve.service.Service (which see for
    api_keys, reload and ood_threshold). cors_origins: origins whose pages may call the API from a browser
    (none by default). On SIGHUP the app reloads the model (Service.reload)."""
    service = Service(model, limits, api_keys=api_keys, reload=reload, ood_threshold=ood_threshold)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service:
            yield

    # No /docs or /redoc: FastAPI serves them from a CDN, and every page here must work offline.
    app = FastAPI(
        title="fmnist",
        summary="Fashion-MNIST classifier",
        lifespan=lifespan,
        responses={code: {"model": ErrorResponse} for code in (400, 401, 413, 415, 422, 429, 503)},
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    app.state.model_header = service.model.header()  # the model it starts with
    app.state.layout = service.model.predictor.describe().get("layout")  # what a bare state dict was read as
    _add_error_handlers(app)
    _add_routes(app, service, _read_static())
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
    app.add_middleware(Edge, metrics=service.metrics, model_header=lambda: service.model.header(), routes=routes)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every refusal and error as {"error": one line}."""

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


def _add_routes(app: FastAPI, service: Service, static: dict[str, bytes]) -> None:
    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return service.health()

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        return Response(service.exposition(request.headers), media_type=CONTENT_TYPE)

    @app.post("/predict", response_model=PredictResponse, openapi_extra=PREDICT_BODY)
    async def predict(
        request: Request,
        view: bool = Query(False, alias="input", description="add each image's 28x28 view"),
        explain: str = Query("0", description="1: add a heatmap of what drove each answer (explain.py)"),
    ) -> Response:
        """Classify one raw image body (image/* or application/octet-stream) or the multipart field(s) `file`."""
        client = request.client.host if request.client else ""
        body = Body(request, service.limits.body_timeout)
        content, model = await service.predict(body, client=client, view=view, explain=explain)
        return JSONResponse(content, headers={"X-Model": model})

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return Response(static["index.html"], media_type=_STATIC_TYPES[".html"])

    @app.get("/static/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        if name not in static:  # a lookup in a dict read at start: no path from a request reaches the disk
            raise ApiError(404, f"no such file: {name}")
        media_type = _STATIC_TYPES.get("." + name.rpartition(".")[2], "application/octet-stream")
        return Response(static[name], media_type=media_type)


# POST /predict's body in the OpenAPI schema: a raw image, or multipart field(s) `file`.
PREDICT_BODY = {
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
}


def _read_static() -> dict[str, bytes]:
    folder = resources.files("fmnist.serve") / "static"
    return {entry.name: entry.read_bytes() for entry in folder.iterdir() if entry.is_file()}
