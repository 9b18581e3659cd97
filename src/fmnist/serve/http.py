"""HTTP mechanics of `fmnist serve` below the routes: reading bodies within bounds, and the edge middleware.

Reading: a body is read from the ASGI `receive` channel into memory, counted against the request's
size limit and the server's memory budget as it streams in; multipart forms are parsed in memory
(python-multipart's streaming parser). A request refused before its body was read (413, 415, 401,
429, 503, a bad multipart part) first reads and discards the rest of the body, at most DRAIN_BYTES
within DRAIN_SECONDS, as nginx's lingering close does: a server that answers and closes with unread
bytes in its socket makes the kernel reset the connection, and a client still sending (Python's
urllib, any client on a slow link) then sees "connection reset" instead of the answer. A client that
sent `Expect: 100-continue` and has not been told to go on is answered at once: it sends nothing.

Edge (`Edge`, pure ASGI, outside every route): HEAD on every GET route (RFC 9110 §9.3.2: the GET
answer without its body), a request id on every answer (`X-Request-ID`, the client's own when it
sent a sane one), the model's identity (`X-Model`) when the route did not set it, and the request
counters and latency of fmnist.serve.metrics by route and status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fmnist.serve.metrics import Metrics

RETRY = {"Retry-After": "1"}  # seconds, on every 503
DRAIN_BYTES = 64 * 2**20  # most bytes of a refused body read and discarded before answering
DRAIN_SECONDS = 5.0  # most time spent discarding them
REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")  # accepted as sent; anything else is replaced by a new id


class ApiError(Exception):
    """An answer `{"error": message}` with `status` and extra headers; raised anywhere a request is refused."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


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


class Body:
    """The request body as it arrives, remembering whether all of it has been read. A client that sends nothing for
    `timeout` seconds is answered 408 (as nginx's client_body_timeout), so that a stalled upload cannot hold its place
    among the requests in progress (Limits.max_queue) for ever."""

    def __init__(self, request: Request, timeout: float):
        self.request, self.timeout = request, timeout
        self.complete = False  # the last chunk (or the client's disconnect) has been received
        self.started = False

    async def chunks(self) -> AsyncIterator[bytes]:
        self.started = True
        while not self.complete:
            try:
                message = await asyncio.wait_for(self.request.receive(), self.timeout)
            except asyncio.TimeoutError:
                self.complete = True  # nothing more is read, and the answer closes the connection
                said = f"request body timed out: nothing received for {self.timeout:g} s"
                raise ApiError(408, said, {"Connection": "close"}) from None
            if message["type"] == "http.disconnect":
                self.complete = True
                raise ApiError(400, "client disconnected before the body was complete")
            self.complete = not message.get("more_body", False)
            if message.get("body"):
                yield message["body"]

    async def discard(self) -> None:
        """Read and drop the rest of the body, at most DRAIN_BYTES within DRAIN_SECONDS (see the module doc)."""
        headers = self.request.headers
        if self.complete or (not self.started and "100-continue" in headers.get("expect", "").lower()):
            return
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > DRAIN_BYTES:
            return  # too much to read for nothing: answer and close

        async def drop() -> None:
            seen = 0
            async for chunk in self.chunks():
                seen += len(chunk)
                if seen > DRAIN_BYTES:
                    return

        with contextlib.suppress(ApiError, asyncio.TimeoutError):
            await asyncio.wait_for(drop(), DRAIN_SECONDS)


async def read_uploads(body: Body, max_body: int, max_files: int, hold: BodyHold) -> list[tuple[str, bytes]]:
    """(name, bytes) of each image in the body, checking type and size as it streams in.

    Raw bodies: any `image/*` or `application/octet-stream` (the content decides); multipart/form-data:
    the fields named `file`, at most `max_files`. Raises ApiError 400, 413, 415 or 503 (memory budget)."""
    content_type = body.request.headers.get("content-type", "")
    kind, params = parse_options_header(content_type)
    if kind.startswith(b"image/") or kind == b"application/octet-stream":
        return [("upload", b"".join([chunk async for chunk in _limited(body, max_body, hold)]))]
    if kind == b"multipart/form-data":
        return await _read_multipart(body, params.get(b"boundary"), max_body, max_files, hold)
    shown = content_type or "none"
    raise ApiError(
        415,
        f"Content-Type {shown!r} not accepted: send an image (image/png, image/jpeg, ..., or "
        "application/octet-stream) as the body, or multipart/form-data with the image(s) in "
        "field 'file'",
    )


async def _limited(body: Body, limit: int, hold: BodyHold) -> AsyncIterator[bytes]:
    too_big = ApiError(413, f"request body is larger than the {limit:,} bytes allowed")
    declared = body.request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big  # refuse before reading a byte
    size = 0
    async for chunk in body.chunks():
        size += len(chunk)
        if size > limit:  # a missing or lying Content-Length
            raise too_big
        hold.take(len(chunk))
        yield chunk


class _FormFiles:
    """python-multipart's callbacks for one form: collects the fields named `file`, skips the others."""

    def __init__(self, max_files: int):
        self.max_files = max_files
        self.files: list[tuple[str, list[bytes]]] = []
        self.headers: dict[bytes, bytes] = {}
        self.field = self.value = b""
        self.target: list[bytes] | None = None
        self.ended = False

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self.field += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self.value += data[start:end]

    def header_end(self) -> None:
        self.headers[self.field.lower()] = self.value
        self.field = self.value = b""

    def headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        self.target = None
        if options.get(b"name") == b"file":
            if len(self.files) >= self.max_files:
                raise ApiError(400, f"too many files: at most {self.max_files} per request")
            name = options.get(b"filename", b"").decode("utf-8", "replace") or f"file {len(self.files) + 1}"
            self.files.append((name, []))
            self.target = self.files[-1][1]

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self.target is not None:  # other fields are skipped, not stored
            self.target.append(data[start:end])

    def end(self) -> None:
        self.ended = True


async def _read_multipart(
    body: Body, boundary: bytes | None, max_body: int, max_files: int, hold: BodyHold
) -> list[tuple[str, bytes]]:
    if not boundary:
        raise ApiError(400, "multipart/form-data without a boundary parameter")
    form = _FormFiles(max_files)
    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": form.headers.clear,
            "on_header_field": form.header_field,
            "on_header_value": form.header_value,
            "on_header_end": form.header_end,
            "on_headers_finished": form.headers_finished,
            "on_part_data": form.part_data,
            "on_end": form.end,
        },
    )
    try:
        async for chunk in _limited(body, max_body, hold):
            parser.write(chunk)
        parser.finalize()
    except ApiError:
        raise
    except Exception as exc:  # python-multipart reports malformed bodies with several exception types
        raise ApiError(400, f"malformed multipart body: {' '.join(str(exc).split()) or type(exc).__name__}") from None
    if not form.ended:
        raise ApiError(400, "malformed multipart body: it ends before the closing boundary")
    if not form.files:
        raise ApiError(400, "no field 'file' in the form: send the image(s) as multipart field 'file'")
    return [(name, b"".join(chunks)) for name, chunks in form.files]


class Edge:
    """HEAD for GET, X-Request-ID, X-Model and request metrics around the whole app (see the module doc)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, model_header: Callable[[], str], routes: Collection[str]):
        self.app, self.metrics, self.model_header, self.routes = app, metrics, model_header, routes

    def route(self, path: str) -> str:
        """The metrics label of a path: a route's own path, "/static", or "other" (bounded label values)."""
        if path in self.routes:
            return path
        return "/static" if path.startswith("/static/") else "other"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        method = scope["method"]
        if method == "HEAD":
            scope = {**scope, "method": "GET"}
        sent_id = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        request_id = sent_id if REQUEST_ID.fullmatch(sent_id) else uuid.uuid4().hex
        status = 500  # until the app answers: a failure before that is answered with 500 below

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(raw=list(message.get("headers", [])))
                headers["X-Request-ID"] = request_id
                if "x-model" not in headers:
                    headers["X-Model"] = self.model_header()
                message = {**message, "headers": headers.raw}
            elif message["type"] == "http.response.body" and method == "HEAD":
                message = {**message, "body": b""}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            # Answered here rather than by Starlette's outermost error middleware, so that a 500 carries
            # the request id too; that middleware still logs the traceback, the client gets one line.
            if status == 500:
                body = json.dumps({"error": f"internal error ({type(exc).__name__})"}).encode()
                await send_with_headers(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send_with_headers({"type": "http.response.body", "body": body})
            raise
        finally:
            self.metrics.answered(self.route(scope["path"]), method, status, time.perf_counter() - start)
