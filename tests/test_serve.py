"""fmnist serve in-process: the micro-batcher, every route and every bad input through FastAPI's TestClient."""

from __future__ import annotations

import asyncio
import base64
import builtins
import dataclasses
import hashlib
import io
import os
import socket
import time

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from support import png_claiming, product_photo, real_bomb, tiny_checkpoint

from fmnist import checkpoint, cli
from fmnist import trust as trust_lib
from fmnist.data import CLASSES
from fmnist.errors import FmnistError
from fmnist.explain import Explainer, heatmap_png
from fmnist.images import load_image
from fmnist.inference import load_predictor, probabilities
from fmnist.serve import access, server
from fmnist.serve import model as serve_model
from fmnist.serve.app import create_app
from fmnist.serve.batching import MicroBatcher, QueueFull
from fmnist.serve.limits import Limits


class Recorder:
    """A predictor whose answer encodes its input (class = mean pixel mod 10), recording each batch size."""

    def __init__(self, delay: float = 0.0):
        self.batch_sizes: list[int] = []
        self.delay = delay

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(len(images))
        time.sleep(self.delay)
        classes = images.float().mean((1, 2)).round().long() % 10
        return (torch.nn.functional.one_hot(classes, 10).float() * 0.91 + 0.01).log()  # softmax: those 0.91, 0.01

    trust = trust_lib.UNFITTED

    def describe(self) -> dict:
        return {"format": "test", "model": "recorder"}


def images_of(value: int, n: int = 1) -> torch.Tensor:
    return torch.full((n, 28, 28), value, dtype=torch.uint8)


# --- the micro-batcher -----------------------------------------------------------------------------


def test_concurrent_requests_share_one_model_call_and_get_their_own_rows():
    recorder = Recorder()

    async def main():
        async with MicroBatcher(recorder, max_batch=64, max_wait=0.2) as batcher:
            return await asyncio.gather(*(batcher.submit(images_of(v, n=1 + v % 2)) for v in range(10)))

    results = [answer.logits for answer in asyncio.run(main())]
    assert recorder.batch_sizes == [15]  # 10 requests, 15 images, one call
    for value, probs in enumerate(results):
        assert probs.shape == (1 + value % 2, 10) and probs.argmax(1).tolist() == [value] * (1 + value % 2)


def test_batches_never_exceed_max_batch_nor_split_a_request():
    recorder = Recorder()

    async def main():
        async with MicroBatcher(recorder, max_batch=4, max_wait=0.05) as batcher:
            return await asyncio.gather(*(batcher.submit(images_of(v, n=3)) for v in range(5)))

    results = asyncio.run(main())
    assert recorder.batch_sizes == [3] * 5  # two requests of 3 would exceed 4
    assert [r.logits.argmax(1).tolist() for r in results] == [[v] * 3 for v in range(5)]


def test_a_lone_request_waits_at_most_max_wait():
    recorder = Recorder()

    async def main():
        async with MicroBatcher(recorder, max_batch=64, max_wait=0.05) as batcher:
            start = time.perf_counter()
            await batcher.submit(images_of(1))
            return time.perf_counter() - start

    assert 0.04 <= asyncio.run(main()) < 1.0


def test_a_batch_waits_only_for_requests_on_their_way():
    async def lone(expected: int, max_wait: float) -> float:
        async with MicroBatcher(Recorder(), max_batch=64, max_wait=max_wait, expected=lambda: expected) as batcher:
            start = time.perf_counter()
            await batcher.submit(images_of(1))
            return time.perf_counter() - start

    assert asyncio.run(lone(expected=0, max_wait=5.0)) < 2.0  # nobody else coming: no 5 s wait
    assert asyncio.run(lone(expected=1, max_wait=0.2)) >= 0.19  # another request is being decoded: wait for it


def test_full_queue_refuses_at_once():
    recorder = Recorder(delay=0.3)

    async def main():
        async with MicroBatcher(recorder, max_batch=2, max_wait=0, max_queue=3) as batcher:
            first = asyncio.ensure_future(batcher.submit(images_of(0, 2)))
            await asyncio.sleep(0.1)  # the model now holds the first batch; the queue is empty
            queued = [asyncio.ensure_future(batcher.submit(images_of(1))) for _ in range(3)]
            await asyncio.sleep(0)
            with pytest.raises(QueueFull, match="3 images are already waiting"):
                await batcher.submit(images_of(2))
            return await asyncio.gather(first, *queued)

    assert len(asyncio.run(main())) == 4


def test_model_failure_reaches_every_waiting_request_and_the_batcher_goes_on():
    calls = []

    class Flaky(Recorder):
        def logits(self, images):
            calls.append(len(images))
            if len(calls) == 1:
                raise RuntimeError("model broke")
            return super().logits(images)

    async def main():
        async with MicroBatcher(Flaky(), max_batch=8, max_wait=0.1) as batcher:
            failed = await asyncio.gather(*(batcher.submit(images_of(v)) for v in range(3)), return_exceptions=True)
            after = await batcher.submit(images_of(4))
            return failed, after

    failed, after = asyncio.run(main())
    assert [str(e) for e in failed] == ["model broke"] * 3 and after.logits.argmax(1).tolist() == [4]


# --- the app ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tiny_checkpoint(tmp_path_factory.mktemp("serve") / "tiny.pt")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def predictor(model_path):
    return load_predictor(model_path, "cpu")


@pytest.fixture(scope="module")
def client(predictor):
    with TestClient(create_app(predictor, Limits(max_body_mb=1, max_files=3, max_wait_ms=1))) as client:
        yield client


def expected(predictor, data: bytes) -> torch.Tensor:
    return probabilities(predictor, load_image(data)[None])[0]


def test_raw_image_body(client, predictor):
    photo = product_photo()
    response = client.post("/predict", content=photo, headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 200
    [prediction] = response.json()["predictions"]
    probs = expected(predictor, photo)
    assert prediction["class_index"] == int(probs.argmax()) and prediction["class_name"] == CLASSES[int(probs.argmax())]
    assert prediction["probability"] == pytest.approx(float(probs.max()), abs=1e-6)
    top = prediction["top"]
    assert len(top) == 5 and top[0] == [prediction["class_name"], prediction["probability"]]
    assert [p for _, p in top] == sorted((p for _, p in top), reverse=True)


def test_input_is_the_28x28_view_the_model_saw(client):
    photo = product_photo("shirt", fmt="PNG")
    assert "input" not in client.post("/predict", content=photo, headers=PNG).json()["predictions"][0]
    response = client.post("/predict?input=1", content=photo, headers=PNG)
    url = response.json()["predictions"][0]["input"]
    assert url.startswith("data:image/png;base64,")
    seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
    assert seen.shape == (28, 28) and np.array_equal(seen, load_image(photo).numpy())


def test_multipart_files_answer_in_order(client, predictor):
    photos = [product_photo("trouser"), product_photo("shirt", fmt="PNG"), product_photo("trouser", size=(600, 300))]
    files = [("file", (f"p{i}", data, "application/octet-stream")) for i, data in enumerate(photos)]
    response = client.post("/predict", files=files, data={"note": "ignored"})
    assert response.status_code == 200
    got = [p["probability"] for p in response.json()["predictions"]]
    assert got == pytest.approx([float(expected(predictor, data).max()) for data in photos], abs=1e-6)
    assert len(set(got)) == 3  # three different images, not one answer repeated


def test_healthz(client):
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["model"]["kind"] == "mlp pytorch" and body["format"] == "pytorch"
    assert body["model"]["file"] == "tiny.pt" and len(body["model"]["sha256"]) == 12
    assert body["classes"] == list(CLASSES) and body["limits"]["max_files"] == 3


def test_page_and_its_assets_come_from_fmnist(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    # Relative links, so that the same page works in a folder written by `fmnist export --web`.
    assets = [src for src in ("/static/style.css", "/static/app.js", "/static/logo.svg") if f'"{src[1:]}"' in page.text]
    assert len(assets) == 3 and "http://" not in page.text and "https://" not in page.text
    for src in assets:
        response = client.get(src)
        assert response.status_code == 200 and "http" not in response.text.replace("http://www.w3.org", "")
    assert client.get("/docs").status_code == 404  # FastAPI's docs page would load from a CDN


PNG, JPEG = {"Content-Type": "image/png"}, {"Content-Type": "image/jpeg"}
BAD_INPUTS = {
    "not an image": ({"content": b"hello, world", "headers": PNG}, 400, "not an image"),
    "truncated": ({"content": product_photo(fmt="PNG")[:500], "headers": PNG}, 400, "truncated"),
    "empty body": ({"content": b"", "headers": PNG}, 400, "empty"),
    "header bomb": ({"content": png_claiming(60_000, 60_000), "headers": PNG}, 400, "pixels"),
    "real bomb": ({"content": real_bomb(), "headers": PNG}, 400, "pixels"),
    "wrong content type": ({"content": product_photo(), "headers": {"Content-Type": "text/plain"}}, 415, "text/plain"),
    "no content type": ({"content": product_photo()}, 415, "Content-Type 'none'"),
    "over the size limit": ({"content": b"\xff" * (2**20 + 1), "headers": JPEG}, 413, "larger than"),
    "over the size limit, no length": ({"content": iter([b"\xff" * 2**19] * 3), "headers": JPEG}, 413, "larger than"),
    "too many files": ({"files": [("file", ("a.jpg", product_photo()))] * 4}, 400, "too many files: at most 3"),
    "missing field": ({"files": [("photo", ("a.jpg", product_photo()))]}, 400, "no field 'file'"),
    "bad file among good": (
        {"files": [("file", ("a.jpg", product_photo())), ("file", ("b.png", b"nope"))]},
        400,
        "b.png",
    ),
    "no boundary": ({"content": b"x", "headers": {"Content-Type": "multipart/form-data"}}, 400, "boundary"),
    "cut multipart": (
        {
            "content": b'--xx\r\nContent-Disposition: form-data; name="file"\r\n\r\nabc',
            "headers": {"Content-Type": "multipart/form-data; boundary=xx"},
        },
        400,
        "malformed multipart",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_gets_a_json_error(client, case):
    kwargs, status, message = BAD_INPUTS[case]
    response = client.post("/predict", **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json" and message in response.json()["error"]
    assert client.get("/healthz").json()["in_progress"] == 0  # the failed request let go of its slot


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("get", "/predict", 405),
        ("get", "/nowhere", 404),
        ("get", "/static/app.py", 404),
        ("get", "/static/..%2fapp.py", 404),
    ],
)
def test_wrong_routes_get_json_errors(client, method, path, status):
    response = getattr(client, method)(path)
    assert response.status_code == status and "error" in response.json()


def test_requests_never_touch_the_filesystem(predictor, monkeypatch):
    opened = []

    def refuse(*args, **kwargs):
        opened.append(args[0])
        raise AssertionError(f"a request opened {args[0]!r}")

    noise = np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    big = buffer.getvalue()
    assert len(big) > 2**20  # over the 1 MiB at which Starlette's own form parser spools a file to disk
    with TestClient(create_app(predictor)) as fresh:
        fresh.post("/predict", files=[("file", ("warm.jpg", product_photo()))])  # lazy imports happen now, not below
        monkeypatch.setattr(builtins, "open", refuse)
        monkeypatch.setattr(os, "open", refuse)
        multipart = fresh.post("/predict", files=[("file", ("big.png", big))])
        raw = fresh.post("/predict", content=big, headers={"Content-Type": "image/png"})
        page = fresh.get("/static/app.js")
    assert (multipart.status_code, raw.status_code, page.status_code, opened) == (200, 200, 200, [])


def test_flood_beyond_the_queue_gets_503_and_the_rest_succeed():
    recorder = Recorder(delay=0.2)
    app = create_app(recorder, Limits(max_queue=4, max_batch=4, max_files=4, max_wait_ms=0))
    photo = product_photo(size=(80, 100))

    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                return await asyncio.gather(*(http.post("/predict", content=photo, headers=JPEG) for _ in range(20)))

    responses = asyncio.run(main())
    codes = [r.status_code for r in responses]
    assert set(codes) == {200, 503} and codes.count(200) >= 4
    busy = next(r for r in responses if r.status_code == 503)
    assert "server busy" in busy.json()["error"] and busy.headers["retry-after"] == "1"


def test_uploads_beyond_the_memory_budget_get_503_and_every_byte_is_given_back():
    photo = product_photo(size=(80, 100))
    limits = Limits(max_body_mb=len(photo) / 2**20, max_buffered_mb=3 * len(photo) / 2**20, max_wait_ms=0)
    app = create_app(Recorder(delay=0.2), limits)

    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                flood = await asyncio.gather(*(http.post("/predict", content=photo, headers=JPEG) for _ in range(10)))
                return flood, (await http.get("/healthz")).json()

    responses, health = asyncio.run(main())
    codes = [r.status_code for r in responses]
    assert 0 < codes.count(200) <= 3 and codes.count(503) == 10 - codes.count(200)
    assert "bytes of uploads in memory" in next(r for r in responses if r.status_code == 503).json()["error"]
    assert health["buffered_bytes"] == 0


def test_limits_are_checked():
    with pytest.raises(Exception, match="max-queue must be >= 1"):
        create_app(Recorder(), Limits(max_queue=0))
    with pytest.raises(Exception, match="max-files .* cannot exceed max-batch"):
        create_app(Recorder(), Limits(max_files=8, max_batch=4))
    with pytest.raises(Exception, match="max-body-mb .* cannot exceed max-buffered-mb"):
        create_app(Recorder(), Limits(max_body_mb=1, max_buffered_mb=0.5))
    with pytest.raises(Exception, match="max-body-mb must be > 0"):
        create_app(Recorder(), Limits(max_body_mb=0))
    with pytest.raises(Exception, match="body-timeout must be > 0, got nan"):  # NaN is no number of seconds
        create_app(Recorder(), Limits(body_timeout=float("nan")))


def test_cli_errors_are_one_line(model_path, tmp_path, capsys):
    assert cli.main(["serve", str(tmp_path / "missing.pt"), "--port", "0"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert cli.main(["serve", str(model_path), "--max-batch", "0"]) == 2
    assert "max-batch must be >= 1" in capsys.readouterr().err
    assert cli.main(["serve", str(model_path), "--max-body-mb", "0"]) == 2
    assert "max-body-mb must be > 0" in capsys.readouterr().err
    assert cli.main(["serve", str(model_path), "--workers", "0"]) == 2
    assert "--workers must be >= 1" in capsys.readouterr().err
    assert cli.main(["serve", str(model_path), "--api-key-file", str(tmp_path / "nokeys")]) == 2
    assert "nokeys: API key file not found" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert cli.main(["serve", str(model_path), "--port", str(taken.getsockname()[1])]) == 2
    err = capsys.readouterr().err
    assert "cannot listen on 127.0.0.1" in err and len(err.strip().splitlines()) == 1
    for port in ("99999", "-1"):  # bind() raised OverflowError: a traceback
        assert cli.main(["serve", str(model_path), "--port", port]) == 2
        err = capsys.readouterr().err
        assert f"--port must be 0-65535 (0: any free port), got {port}" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(FmnistError, match="cannot listen on 127.0.0.1:70000: bind"):
        server.listen("127.0.0.1", 70000)


def test_explain_adds_a_heatmap_of_the_view_and_only_when_asked(client, predictor):
    photos = [product_photo("trouser"), product_photo("shirt", fmt="PNG")]
    files = [("file", (f"p{i}", data, "application/octet-stream")) for i, data in enumerate(photos)]
    plain = client.post("/predict", files=files).json()["predictions"]
    assert all("explanation" not in p for p in plain)
    explained = client.post("/predict?explain=1", files=files).json()["predictions"]
    for prediction, before, photo in zip(explained, plain, photos, strict=True):
        assert {k: v for k, v in prediction.items() if k != "explanation"} == before
        assert prediction["explanation"]["method"].startswith("integrated gradients")
        heatmap = Image.open(io.BytesIO(base64.b64decode(prediction["explanation"]["heatmap"].split(",", 1)[1])))
        assert heatmap.size == (224, 224)
        # The map is the explainer's for this image's predicted class, drawn as heatmap_png draws it.
        image = load_image(photo)
        maps = Explainer(predictor)(image[None], torch.tensor([prediction["class_index"]])).maps
        assert np.array_equal(np.asarray(heatmap), np.asarray(Image.open(io.BytesIO(heatmap_png(image, maps[0])))))
    refused = client.post("/predict?explain=yes", files=files)
    assert refused.status_code == 422 and refused.json() == {"error": "explain: expected 0 or 1, got 'yes'"}
    assert client.get("/healthz").json()["in_progress"] == 0


# --- access, CORS, identity, reload ---------------------------------------------------------------------

KEY = "k3y-0123456789abcdef"


def test_keys_guard_predict_and_metrics_with_one_message_for_every_failure(predictor):
    photo = product_photo()
    with TestClient(create_app(predictor, api_keys=(KEY, "other-key-0123456789"))) as http:
        refusals = [
            http.post("/predict", content=photo, headers={**JPEG, **extra})
            for extra in (
                {},
                {"X-API-Key": "wrong"},
                {"Authorization": f"Bearer {KEY}x"},
                {"Authorization": f"Basic {KEY}"},
                {"X-API-Key": KEY[:-1]},
            )
        ]
        assert {r.status_code for r in refusals} == {401} and len({r.json()["error"] for r in refusals}) == 1
        assert http.get("/metrics").status_code == 401
        bearer = {**JPEG, "Authorization": f"Bearer {KEY}"}
        assert http.post("/predict", content=photo, headers=bearer).status_code == 200
        assert http.post("/predict", content=photo, headers={**JPEG, "X-API-Key": KEY}).status_code == 200
        assert http.get("/metrics", headers={"X-API-Key": KEY}).status_code == 200
        assert http.get("/healthz").status_code == 200  # health checks need no key
        # A stranger learns nothing about the other parameters either: the key is checked first.
        assert http.post("/predict?explain=2", content=photo, headers=JPEG).status_code == 401
        assert 'fmnist_rejected_total{status="401"} 7.0' in http.get("/metrics", headers={"X-API-Key": KEY}).text


def test_key_file_is_read_and_checked(tmp_path):
    path = tmp_path / "keys"
    path.write_text(f"# comment\n\n{KEY}\n  other-key-0123456789  \n")
    assert access.read_keys(path) == (KEY, "other-key-0123456789")
    for text, message in (("# nothing\n", "no API keys"), ("short\n", "at least 16 characters")):
        path.write_text(text)
        with pytest.raises(FmnistError, match=message):
            access.read_keys(path)
    with pytest.raises(FmnistError, match="missing: API key file not found"):
        access.read_keys(tmp_path / "missing")
    with pytest.raises(FmnistError, match="is a directory; expected the API key file"):
        access.read_keys(tmp_path)


def test_token_bucket_allows_burst_then_rate_and_says_when_to_retry():
    now = [0.0]
    limiter = access.RateLimiter(rate=2, burst=3, clock=lambda: now[0])
    for _ in range(3):
        limiter.take("a")
    with pytest.raises(access.ApiError) as refused:
        limiter.take("a")
    assert refused.value.status == 429 and refused.value.headers == {"Retry-After": "1"}
    limiter.take("b")  # another client has its own bucket
    now[0] = 0.5  # one token back at 2 per second
    limiter.take("a")
    with pytest.raises(access.ApiError):
        limiter.take("a")


def test_rate_limit_answers_429_with_retry_after(predictor):
    photo = product_photo()
    with TestClient(create_app(predictor, Limits(rate=0.05, burst=2))) as http:  # a token per 20 s
        codes = [http.post("/predict", content=photo, headers=JPEG) for _ in range(3)]
    assert [r.status_code for r in codes] == [200, 200, 429]
    assert 1 <= int(codes[2].headers["retry-after"]) <= 20 and "rate limit" in codes[2].json()["error"]


def test_cors_is_off_by_default_and_allows_only_the_listed_origins(predictor):
    preflight = {
        "Origin": "https://shop.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Content-Type, X-API-Key",
    }
    with TestClient(create_app(predictor)) as http:
        assert (
            "access-control-allow-origin"
            not in http.get("/healthz", headers={"Origin": "https://shop.example"}).headers
        )
        assert "access-control-allow-origin" not in http.options("/predict", headers=preflight).headers
    with TestClient(create_app(predictor, cors_origins=("https://shop.example",))) as http:
        allowed = http.options("/predict", headers=preflight)
        assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "https://shop.example"
        answer = http.post("/predict", content=product_photo(), headers={**JPEG, "Origin": "https://shop.example"})
        assert answer.headers["access-control-allow-origin"] == "https://shop.example"
        assert "X-Request-ID" in answer.headers["access-control-expose-headers"]
        other = http.options("/predict", headers={**preflight, "Origin": "https://evil.example"})
        assert other.status_code == 400 and "access-control-allow-origin" not in other.headers


def test_request_id_is_echoed_when_sane_and_made_up_otherwise(client):
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    made = {
        client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"}).headers["x-request-id"]
        for _ in range(2)
    }
    assert len(made) == 2 and all(len(rid) == 32 for rid in made)
    assert client.get("/nowhere").headers["x-request-id"]  # errors carry one too


def test_reload_swaps_to_a_checked_model_and_keeps_the_old_one_when_loading_fails(model_path, tmp_path):
    other = tiny_checkpoint(tmp_path / "other.pt")
    sources = iter([other, tmp_path / "missing.pt"])
    app = create_app(serve_model.load(model_path), reload=lambda: serve_model.load(next(sources)))
    photo = product_photo()
    with TestClient(app) as http:
        first = http.post("/predict", content=photo, headers=JPEG).json()["model"]
        http.portal.call(app.state.service.reload)
        second = http.post("/predict", content=photo, headers=JPEG)
        http.portal.call(app.state.service.reload)  # fails: the file is missing
        third = http.post("/predict", content=photo, headers=JPEG)
        metrics = http.get("/metrics").text
    assert first["file"] == "tiny.pt" and second.json()["model"]["file"] == "other.pt"
    assert second.headers["x-model"].startswith("other.pt sha256:" + second.json()["model"]["sha256"])
    assert third.status_code == 200 and third.json()["model"] == second.json()["model"]
    assert 'fmnist_model_reloads_total{result="ok"} 1.0' in metrics
    assert 'fmnist_model_reloads_total{result="failed"} 1.0' in metrics


def test_a_model_that_answers_nonsense_is_refused(predictor):
    class Broken(Recorder):
        def logits(self, images):
            return torch.full((len(images), 10), float("nan"))

    with pytest.raises(FmnistError, match="not finite"):
        serve_model.check(serve_model.identify(Broken()))
    assert serve_model.check(serve_model.identify(predictor)).kind == "mlp pytorch"


def test_serve_flags_are_the_limits_fields_with_their_defaults():
    parser = cli.build_parser()
    args = parser.parse_args(["serve", "m.pt"])
    assert Limits(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Limits)}) == Limits()
    args = parser.parse_args(["serve", "m.pt", "--max-body-mb", "2.5", "--rate", "3", "--max-batch", "8"])
    assert (args.max_body_mb, args.rate, args.max_batch) == (2.5, 3.0, 8)
    help_text = parser._subparsers._group_actions[0].choices["serve"].format_help()  # type: ignore[union-attr]
    for f in dataclasses.fields(Limits):
        assert "--" + f.name.replace("_", "-") in help_text


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.5", False),
        ("example.com", False),
    ],
)
def test_a_server_reachable_from_other_machines_without_keys_is_warned_about(host, loopback):
    assert server.is_loopback(host) == loopback
    assert (server.exposure_warning(host, keyed=False) is None) == loopback
    assert server.exposure_warning(host, keyed=True) is None


def test_a_failing_model_is_a_one_line_500_with_the_request_id():
    class Failing(Recorder):
        def logits(self, images):
            raise RuntimeError("out of memory")

    with TestClient(create_app(Failing()), raise_server_exceptions=False) as http:
        response = http.post("/predict", content=product_photo(), headers={**JPEG, "X-Request-ID": "r-1"})
        assert response.status_code == 500 and response.json() == {"error": "internal error (RuntimeError)"}
        assert response.headers["x-request-id"] == "r-1" and response.headers["x-model"]
        assert http.get("/healthz").status_code == 200


def test_identity_names_the_file_its_hash_kind_and_recorded_accuracy(tmp_path):
    run = tmp_path / "run"
    path = tiny_checkpoint(tmp_path / "tiny.pt")
    state = checkpoint.load(path)
    state["history"] = [
        {"epoch": 1, "train_acc": 0.5, "val_acc": 0.4},
        {"epoch": 2, "train_acc": 0.91, "val_acc": 0.88},
    ]
    (run / "checkpoints").mkdir(parents=True)
    checkpoint.save(run / "checkpoints" / "best.pt", state)
    served = serve_model.load(run)  # a run directory stands for its best checkpoint
    digest = hashlib.sha256((run / "checkpoints" / "best.pt").read_bytes()).hexdigest()
    assert served.identity() == {
        "file": "best.pt",
        "sha256": digest[:12],
        "kind": "mlp pytorch",
        "train_accuracy": 0.91,
        "val_accuracy": 0.88,
    }
    assert served.header() == f"best.pt sha256:{digest[:12]} mlp pytorch"


def test_flip_tta_is_served_and_reported(model_path):
    tta = load_predictor(model_path, "cpu", tta="flip")
    with TestClient(create_app(tta, Limits(max_files=3, max_wait_ms=1))) as client:
        photo = product_photo()
        response = client.post("/predict", content=photo, headers={"Content-Type": "image/jpeg"})
        assert response.status_code == 200
        [prediction] = response.json()["predictions"]
        image = load_image(photo)[None]
        plain = load_predictor(model_path, "cpu")
        mean = plain.trust.probabilities((plain.logits(image) + plain.logits(image.flip(-1))) / 2)[0]
        assert prediction["probability"] == pytest.approx(float(mean.max()), abs=1e-6)
        assert client.get("/healthz").json()["tta_views"] == ["identity", "hflip"]


def test_every_prediction_carries_the_verdict_and_healthz_the_temperature(tmp_path):
    from support import mosaic, trusted_checkpoint

    predictor = load_predictor(trusted_checkpoint(tmp_path / "m.pt"), "cpu")
    files = [("file", ("clutter.jpg", mosaic(), "image/jpeg")), ("file", ("shirt.png", product_photo("shirt"), "x"))]
    with TestClient(create_app(predictor)) as fresh:
        clutter, shirt = fresh.post("/predict", files=files).json()["predictions"]
        health = fresh.get("/healthz").json()
    assert clutter["garment"] is False and shirt["garment"] is True
    assert clutter["in_distribution_score"] < clutter["ood_threshold"] == 0.05 <= shirt["in_distribution_score"]
    assert clutter["class_name"] in CLASSES and clutter["calibrated"] is True  # the best guess stays
    assert health["temperature"] == 2.0 and health["calibrated"] is True and health["ood_threshold"] == 0.05
    with TestClient(create_app(predictor, ood_threshold=0.0)) as lenient:
        assert all(p["garment"] for p in lenient.post("/predict", files=files).json()["predictions"])
        assert lenient.get("/healthz").json()["ood_threshold"] == 0.0


def test_a_model_without_trust_says_uncalibrated(client):
    prediction = client.post("/predict", content=product_photo(), headers={"Content-Type": "image/jpeg"}).json()
    assert prediction["predictions"][0]["calibrated"] is False and prediction["predictions"][0]["garment"] is True
    assert client.get("/healthz").json()["calibrated"] is False


def test_forwarded_allow_ips_are_addresses_or_networks():
    assert server.trusted_proxies("127.0.0.1, 10.0.0.0/8,::1,*") == "127.0.0.1, 10.0.0.0/8,::1,*"
    with pytest.raises(FmnistError, match="--forwarded-allow-ips: 'nginx' is not an IP address or network"):
        server.trusted_proxies("127.0.0.1,nginx")
