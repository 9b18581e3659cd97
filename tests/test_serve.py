"""fmnist serve in-process: the micro-batcher, every route and every bad input through FastAPI's TestClient."""

from __future__ import annotations

import asyncio
import base64
import builtins
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
from serve_support import png_claiming, product_photo, real_bomb, tiny_checkpoint

from fmnist import cli
from fmnist import trust as trust_lib
from fmnist.data import CLASSES
from fmnist.images import load_image
from fmnist.inference import load_predictor
from fmnist.serve.app import Limits, create_app
from fmnist.serve.batching import MicroBatcher, QueueFull


class Recorder:
    """A predictor whose answer encodes its input (class = mean pixel mod 10), recording each batch size."""

    def __init__(self, delay: float = 0.0):
        self.batch_sizes: list[int] = []
        self.delay = delay

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(len(images))
        time.sleep(self.delay)
        classes = images.float().mean((1, 2)).round().long() % 10
        return torch.nn.functional.one_hot(classes, 10).float() * 0.91 + 0.01

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.probabilities(images).log()  # the same probabilities again after a softmax

    trust = trust_lib.UNFITTED

    def describe(self) -> dict:
        return {"format": "test", "model": "recorder"}


def images_of(value: int, n: int = 1) -> torch.Tensor:
    return torch.full((n, 28, 28), value, dtype=torch.uint8)


# --- the micro-batcher -----------------------------------------------------------------------------


def test_concurrent_requests_share_one_model_call_and_get_their_own_rows():
    recorder = Recorder()

    async def main():
        async with MicroBatcher(recorder.probabilities, max_batch=64, max_wait=0.2) as batcher:
            return await asyncio.gather(*(batcher.submit(images_of(v, n=1 + v % 2)) for v in range(10)))

    results = asyncio.run(main())
    assert recorder.batch_sizes == [15]  # 10 requests, 15 images, one call
    for value, probs in enumerate(results):
        assert probs.shape == (1 + value % 2, 10) and probs.argmax(1).tolist() == [value] * (1 + value % 2)


def test_batches_never_exceed_max_batch_nor_split_a_request():
    recorder = Recorder()

    async def main():
        async with MicroBatcher(recorder.probabilities, max_batch=4, max_wait=0.05) as batcher:
            return await asyncio.gather(*(batcher.submit(images_of(v, n=3)) for v in range(5)))

    results = asyncio.run(main())
    assert recorder.batch_sizes == [3] * 5  # two requests of 3 would exceed 4
    assert [r.argmax(1).tolist() for r in results] == [[v] * 3 for v in range(5)]


def test_a_lone_request_waits_at_most_max_wait():
    recorder = Recorder()

    async def main():
        async with MicroBatcher(recorder.probabilities, max_batch=64, max_wait=0.05) as batcher:
            start = time.perf_counter()
            await batcher.submit(images_of(1))
            return time.perf_counter() - start

    assert 0.04 <= asyncio.run(main()) < 1.0


def test_a_batch_waits_only_for_requests_on_their_way():
    async def lone(expected: int, max_wait: float) -> float:
        async with MicroBatcher(Recorder().probabilities, max_batch=64, max_wait=max_wait,
                                expected=lambda: expected) as batcher:
            start = time.perf_counter()
            await batcher.submit(images_of(1))
            return time.perf_counter() - start

    assert asyncio.run(lone(expected=0, max_wait=5.0)) < 2.0  # nobody else coming: no 5 s wait
    assert asyncio.run(lone(expected=1, max_wait=0.2)) >= 0.19  # another request is being decoded: wait for it


def test_full_queue_refuses_at_once():
    recorder = Recorder(delay=0.3)

    async def main():
        async with MicroBatcher(recorder.probabilities, max_batch=2, max_wait=0, max_queue=3) as batcher:
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

    def flaky(images):
        calls.append(len(images))
        if len(calls) == 1:
            raise RuntimeError("model broke")
        return Recorder().probabilities(images)

    async def main():
        async with MicroBatcher(flaky, max_batch=8, max_wait=0.1) as batcher:
            failed = await asyncio.gather(*(batcher.submit(images_of(v)) for v in range(3)), return_exceptions=True)
            after = await batcher.submit(images_of(4))
            return failed, after

    failed, after = asyncio.run(main())
    assert [str(e) for e in failed] == ["model broke"] * 3 and after.argmax(1).tolist() == [4]


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
    with TestClient(create_app(predictor, Limits(max_body=2**20, max_files=3, max_wait_ms=1))) as client:
        yield client


def expected(predictor, data: bytes) -> torch.Tensor:
    return predictor.probabilities(load_image(data)[None])[0]


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
    response = client.post("/predict", content=photo, headers={"Content-Type": "image/png"})
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
    assert body["status"] == "ok" and body["model"] == "mlp" and body["format"] == "pytorch"
    assert body["classes"] == list(CLASSES) and body["limits"]["max_files"] == 3


def test_page_and_its_assets_come_from_fmnist(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assets = [src for src in ("/static/style.css", "/static/app.js", "/static/logo.svg") if src in page.text]
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
    "bad file among good": ({"files": [("file", ("a.jpg", product_photo())), ("file", ("b.png", b"nope"))]}, 400,
                            "b.png"),
    "no boundary": ({"content": b"x", "headers": {"Content-Type": "multipart/form-data"}}, 400, "boundary"),
    "cut multipart": ({"content": b"--xx\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc",
                       "headers": {"Content-Type": "multipart/form-data; boundary=xx"}}, 400, "malformed multipart"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_gets_a_json_error(client, case):
    kwargs, status, message = BAD_INPUTS[case]
    response = client.post("/predict", **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json" and message in response.json()["error"]
    assert client.get("/healthz").json()["in_progress"] == 0  # the failed request let go of its slot


@pytest.mark.parametrize("method, path, status", [("get", "/predict", 405), ("get", "/nowhere", 404),
                                                  ("get", "/static/app.py", 404), ("get", "/static/..%2fapp.py", 404)])
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
    limits = Limits(max_body=len(photo), max_buffered=3 * len(photo), max_wait_ms=0)
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
    with pytest.raises(Exception, match="max-body .* cannot exceed max-buffered"):
        create_app(Recorder(), Limits(max_body=2**20, max_buffered=2**10))


def test_cli_errors_are_one_line(model_path, tmp_path, capsys):
    assert cli.main(["serve", str(tmp_path / "missing.pt"), "--port", "0"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert cli.main(["serve", str(model_path), "--max-batch", "0"]) == 2
    assert "max-batch must be >= 1" in capsys.readouterr().err
    assert cli.main(["serve", str(model_path), "--max-body-mb", "0"]) == 2
    assert "--max-body-mb must be > 0" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert cli.main(["serve", str(model_path), "--port", str(taken.getsockname()[1])]) == 2
    err = capsys.readouterr().err
    assert "cannot listen on 127.0.0.1" in err and len(err.strip().splitlines()) == 1



def test_every_prediction_carries_the_verdict_and_healthz_the_temperature(tmp_path):
    from serve_support import mosaic, trusted_checkpoint

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
