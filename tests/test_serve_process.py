"""fmnist serve as users run it: a real uvicorn process on a free 127.0.0.1 port."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import pytest
from serve_support import png_claiming, product_photo, real_bomb, running_server, tiny_checkpoint


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("serve-process") / "tiny.pt")


def bad_requests() -> list[tuple[dict, int]]:
    jpeg = {"Content-Type": "image/jpeg"}
    return [
        ({"content": b"not an image", "headers": jpeg}, 400),
        ({"content": product_photo()[:400], "headers": jpeg}, 400),
        ({"content": b"", "headers": jpeg}, 400),
        ({"content": b"\0" * (10 * 2**20 + 1), "headers": jpeg}, 413),
        ({"content": png_claiming(100_000, 100_000), "headers": {"Content-Type": "image/png"}}, 400),
        ({"content": real_bomb(), "headers": {"Content-Type": "image/png"}}, 400),
        ({"content": product_photo(), "headers": {"Content-Type": "application/json"}}, 415),
        ({"files": [("file", ("a.jpg", b"x"))] * 17}, 400),
        ({"files": [("upload", ("a.jpg", product_photo()))]}, 400),
    ]


def test_bad_inputs_get_json_errors_the_server_stays_up_and_memory_bounded(model_path):
    bad = bad_requests()
    with running_server(model_path) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        for kwargs, status in bad:  # once each, so that every lazy import and pool is warm
            response = http.post("/predict", **kwargs)
            assert response.status_code == status and response.json()["error"], response.text
        before = server.rss_kib()
        for _ in range(8):
            for kwargs, status in bad:
                assert http.post("/predict", **kwargs).status_code == status
        after = server.rss_kib()
        ok = http.post("/predict", content=product_photo(), headers={"Content-Type": "image/jpeg"})
        assert ok.status_code == 200 and http.get("/healthz").json()["status"] == "ok"
    # 72 bad requests, 10 MB bodies among them: the server keeps none of it.
    assert after - before < 30 * 1024, f"RSS grew from {before} to {after} KiB"


async def flood(url: str, body: bytes, count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=count)) as http:
        return await asyncio.gather(*(http.post("/predict", content=body, headers={"Content-Type": "image/jpeg"})
                                      for _ in range(count)))


def test_flood_beyond_the_queue_gets_503_and_the_server_survives(model_path):
    big = product_photo(size=(1500, 2000))  # a few ms to decode: requests pile up behind one decoder
    with running_server(model_path, "--max-queue", "4", "--decoders", "1") as server:
        responses = asyncio.run(flood(server.url, big, 48))
        codes = [r.status_code for r in responses]
        assert set(codes) == {200, 503}, codes
        assert all("server busy" in r.json()["error"] for r in responses if r.status_code == 503)
        again = asyncio.run(flood(server.url, product_photo(), 2))
        assert [r.status_code for r in again] == [200, 200]
        assert server.process.poll() is None


def test_sigterm_lets_requests_in_flight_finish_then_exits_0(model_path):
    photo = product_photo()
    release = asyncio.Event()

    async def slow_body():  # half the photo now, the rest after the signal: the request is surely in flight
        yield photo[: len(photo) // 2]
        await release.wait()
        yield photo[len(photo) // 2 :]

    with running_server(model_path) as server:

        async def main():
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                pending = [asyncio.ensure_future(http.post("/predict", content=slow_body(),
                                                           headers={"Content-Type": "image/jpeg"})) for _ in range(4)]
                deadline = time.monotonic() + 10
                while (await http.get("/healthz")).json()["in_progress"] < 4 and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                server.process.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.5)
                assert server.process.poll() is None  # still draining
                release.set()
                return await asyncio.gather(*pending)

        responses = asyncio.run(main())
        assert [r.status_code for r in responses] == [200] * 4
        assert all(r.json()["predictions"][0]["class_name"] for r in responses)
        assert server.process.wait(30) == 0, "".join(server.output)
