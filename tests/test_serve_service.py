"""The request path of `fmnist serve` without HTTP: a Service classifies bodies, refuses, reports and reloads."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request
from support import product_photo, tiny_checkpoint

from fmnist.errors import FmnistError
from fmnist.images import load_image
from fmnist.inference import load_predictor, probabilities
from fmnist.serve import model as serve_model
from fmnist.serve.http import ApiError, Body
from fmnist.serve.limits import Limits
from fmnist.serve.service import Service

KEY = "k" * 16


def body_of(data: bytes, content_type: str = "image/jpeg", **headers: str) -> Body:
    """A request body as an ASGI server would hand it over, in one chunk."""
    messages = [{"type": "http.request", "body": data, "more_body": False}]

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    raw = [(b"content-type", content_type.encode())] + [
        (name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()
    ]
    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": raw, "query_string": b""}
    return Body(Request(scope, receive), Limits().body_timeout)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("service") / "tiny.pt")


def run(service: Service, *steps):
    """Run each coroutine function step(service) in turn inside the service's lifetime; their results."""

    async def main():
        async with service:
            return [await step(service) for step in steps]

    return asyncio.run(main())


def test_predict_answers_as_the_model_and_names_it(model_path):
    photo = product_photo()
    service = Service(serve_model.load(model_path), Limits(max_wait_ms=0, top_k=3))
    [(content, header)] = run(service, lambda s: s.predict(body_of(photo), client="10.0.0.1", view=True))
    prediction = content["predictions"][0]
    probs = probabilities(load_predictor(model_path), load_image(photo)[None])[0]
    assert prediction["class_index"] == int(probs.argmax()) and len(prediction["top"]) == 3
    assert prediction["probability"] == pytest.approx(float(probs.max()), abs=1e-6)
    assert prediction["input"].startswith("data:image/png;base64,")
    assert header == service.model.header() and content["model"]["file"] == "tiny.pt"


def test_health_counts_what_was_classified(model_path):
    service = Service(serve_model.load(model_path), Limits(max_wait_ms=0))

    async def two_images(s: Service):
        boundary = "b0undary"
        part = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'.encode()
        data = part + product_photo() + b"\r\n" + part + product_photo("dress") + f"\r\n--{boundary}--\r\n".encode()
        return await s.classify(body_of(data, f"multipart/form-data; boundary={boundary}"))

    async def health(s: Service):
        return s.health()

    classified, facts = run(service, two_images, health)
    assert classified.answer.logits.shape == (2, 10) and len(classified.pictures) == 2
    assert facts["images_classified"] == 2 and facts["in_progress"] == 0 and facts["buffered_bytes"] == 0


def test_refusals_are_api_errors_in_order_key_then_explain_then_rate(model_path):
    service = Service(serve_model.load(model_path), Limits(rate=0.01, burst=1), api_keys=(KEY,))
    with pytest.raises(ApiError) as no_key:
        service.admit({}, "10.0.0.1", explain="2")
    with pytest.raises(ApiError) as bad_explain:
        service.admit({"x-api-key": KEY}, "10.0.0.1", explain="2")
    service.admit({"x-api-key": KEY}, "10.0.0.1")
    with pytest.raises(ApiError) as limited:
        service.admit({"x-api-key": KEY}, "10.0.0.2")  # the key is the client when keys are in use
    assert (no_key.value.status, bad_explain.value.status, limited.value.status) == (401, 422, 429)
    with pytest.raises(ApiError):
        service.exposition({})
    assert b"fmnist_requests_total" in service.exposition({"authorization": f"Bearer {KEY}"})


def test_a_bad_file_is_a_400_and_gives_back_its_memory(model_path):
    service = Service(serve_model.load(model_path))

    async def bad(s: Service):
        with pytest.raises(ApiError) as refused:
            await s.predict(body_of(b"not an image"), client="")
        return refused.value.status, s.health()

    [(status, facts)] = run(service, bad)
    assert status == 400 and facts["buffered_bytes"] == 0 and facts["in_progress"] == 0 and service.preparing == 0


def test_reload_swaps_the_model_and_keeps_it_when_the_new_one_fails(model_path, tmp_path):
    other = tiny_checkpoint(tmp_path / "other.pt")
    sources = iter([other, tmp_path / "missing.pt"])
    service = Service(serve_model.load(model_path), reload=lambda: serve_model.load(next(sources)))

    async def reload(s: Service):
        await s.reload()
        return s.model.file

    assert run(service, reload, reload) == ["other.pt", "other.pt"]
    text = service.metrics.exposition().decode()
    assert 'fmnist_model_reloads_total{result="ok"} 1.0' in text
    assert 'fmnist_model_reloads_total{result="failed"} 1.0' in text


def test_limits_are_checked_when_made():
    with pytest.raises(FmnistError, match="max-files .* cannot exceed max-batch"):
        Limits(max_files=8, max_batch=4)
    with pytest.raises(FmnistError, match="max-wait-ms must be >= 0"):
        Limits(max_wait_ms=-1)
    assert Limits().max_body == 10 * 2**20 and Limits(max_body_mb=1e-9).max_body == 1
