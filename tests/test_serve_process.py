"""fmnist serve as users run it: a real uvicorn process on a free 127.0.0.1 port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from support import png_claiming, product_photo, real_bomb, running_server, tiny_checkpoint

from fmnist.data import CLASSES


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


@pytest.mark.slow
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
        return await asyncio.gather(
            *(http.post("/predict", content=body, headers={"Content-Type": "image/jpeg"}) for _ in range(count))
        )


@pytest.mark.slow
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


def answer_to(sock) -> str:
    """What the server sends on a raw socket, read until its JSON body has ended or the connection closes."""
    got = b""
    while not got.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got.decode("latin-1")


def test_stalled_uploads_get_408_and_give_their_place_back(model_path):
    # Two clients that send headers and a piece of a body, then nothing: with --max-queue 2 they held every place
    # for as long as they kept the connection, and every other client got 503.
    import socket
    from urllib.parse import urlsplit

    with running_server(model_path, "--max-queue", "2", "--body-timeout", "0.5") as server:
        where = urlsplit(server.url)
        head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n"
        stalled = [socket.create_connection((where.hostname, where.port), timeout=10) for _ in range(2)]
        for sock in stalled:
            sock.sendall(head + b"\x89PNG")
        answers = [answer_to(sock) for sock in stalled]  # within the timeout, not never
        for sock in stalled:
            sock.close()
        for answer in answers:
            assert answer.startswith("HTTP/1.1 408") and "request body timed out" in answer, answer[:200]
            assert "connection: close" in answer.lower(), answer[:200]
        response = httpx.post(server.url + "/predict", content=product_photo(), headers={"Content-Type": "image/jpeg"})
        assert response.status_code == 200
        assert httpx.get(server.url + "/healthz").json()["in_progress"] == 0


@pytest.mark.slow
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
                pending = [
                    asyncio.ensure_future(
                        http.post("/predict", content=slow_body(), headers={"Content-Type": "image/jpeg"})
                    )
                    for _ in range(4)
                ]
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


# --- HTTP as ordinary clients and monitors speak it, each client against the same real server ------------


def via_urllib(method: str, url: str, body: bytes | None, headers: dict) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def via_requests(method: str, url: str, body: bytes | None, headers: dict) -> tuple[int, dict, bytes]:
    response = requests.request(method, url, data=body, headers=headers, timeout=30)
    return response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content


def via_httpx(method: str, url: str, body: bytes | None, headers: dict) -> tuple[int, dict, bytes]:
    response = httpx.request(method, url, content=body, headers=headers, timeout=30)
    return response.status_code, dict(response.headers), response.content


def via_curl(method: str, url: str, body: bytes | None, headers: dict, tmp: Path) -> tuple[int, dict, bytes]:
    # -I for HEAD: with -X HEAD curl would wait for the body that Content-Length announces. It writes the
    # headers as the "body", so for HEAD the body is what the other clients check.
    command = [
        "curl",
        "-sS",
        "--max-time",
        "30",
        "-D",
        str(tmp / "head"),
        "-o",
        str(tmp / "body") if method != "HEAD" else "/dev/null",
    ]
    command += ["-I"] if method == "HEAD" else ["-X", method]
    if body is not None:
        (tmp / "upload").write_bytes(body)
        command += ["--data-binary", f"@{tmp / 'upload'}"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    subprocess.run([*command, url], check=True, capture_output=True, timeout=60)
    blocks = (tmp / "head").read_text().strip().split("\r\n\r\n")  # "100 Continue" comes first when sent
    status_line, *lines = blocks[-1].splitlines()
    fields = dict(line.split(": ", 1) for line in lines if ": " in line)
    body = (tmp / "body").read_bytes() if method != "HEAD" and (tmp / "body").exists() else b""
    return int(status_line.split()[1]), {k.lower(): v for k, v in fields.items()}, body


CLIENTS = ["urllib", "requests", "httpx"] + (["curl"] if shutil.which("curl") else [])


@pytest.fixture
def call(request, tmp_path):
    """call(method, url, body=None, headers=None) through the client named by the test's `client` parameter."""
    name = request.node.callspec.params["client"]

    def send(method: str, url: str, body: bytes | None = None, headers: dict | None = None):
        if name == "curl":
            return via_curl(method, url, body, headers or {}, tmp_path)
        return {"urllib": via_urllib, "requests": via_requests, "httpx": via_httpx}[name](
            method, url, body, headers or {}
        )

    return send


@pytest.fixture(scope="module")
def server(model_path):
    with running_server(model_path, "--max-body-mb", "1") as server:
        yield server


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("path", ["/", "/healthz", "/metrics", "/static/app.js", "/openapi.json"])
@pytest.mark.slow
def test_head_answers_every_get_route_like_get_without_a_body(server, call, client, path):
    status, get_headers, get_body = call("GET", server.url + path)
    head_status, headers, body = call("HEAD", server.url + path)
    assert (status, head_status, body) == (200, 200, b"")
    assert headers["content-type"] == get_headers["content-type"]
    if path not in ("/healthz", "/metrics"):  # those two change between the calls
        assert int(headers["content-length"]) == len(get_body)


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("content_type, status", [("image/jpeg", 413), ("text/plain", 415)])
def test_a_refused_large_upload_gets_its_json_answer_not_a_reset(server, call, client, content_type, status):
    # 12 MiB against a 1 MiB limit: more than the socket buffers hold, so answering and closing without
    # reading it would make the kernel reset the connection under a client still sending.
    got, headers, body = call("POST", server.url + "/predict", b"\0" * (12 * 2**20), {"Content-Type": content_type})
    assert got == status and headers["content-type"] == "application/json" and json.loads(body)["error"]
    assert headers["x-request-id"] and headers["x-model"].startswith("tiny.pt sha256:")


@pytest.mark.parametrize("client", CLIENTS)
def test_raw_octet_stream_is_read_by_content_and_every_answer_names_model_and_request(server, call, client):
    status, headers, body = call(
        "POST",
        server.url + "/predict",
        product_photo(),
        {"Content-Type": "application/octet-stream", "X-Request-ID": f"{client}-42"},
    )
    answer = json.loads(body)
    assert status == 200 and answer["predictions"][0]["class_name"] in CLASSES
    assert headers["x-request-id"] == f"{client}-42"
    model = answer["model"]
    assert model["file"] == "tiny.pt" and model["kind"] == "mlp pytorch" and len(model["sha256"]) == 12
    assert headers["x-model"] == f"tiny.pt sha256:{model['sha256']} mlp pytorch"
    health = json.loads(call("GET", server.url + "/healthz")[2])
    assert health["model"] == model


# --- operating it: metrics, reload, workers ---------------------------------------------------------------


def scrape(url: str, **headers: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of GET /metrics, keyed by (name, labels)."""
    text = httpx.get(url + "/metrics", headers=headers, timeout=30).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(metrics: dict, name: str, **labels: str) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


@pytest.mark.slow
def test_metrics_count_every_request_image_and_stage_under_load(model_path):
    photo = product_photo(size=(120, 160))
    jpeg = {"Content-Type": "image/jpeg"}
    with running_server(model_path) as server:

        async def load():
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                one = [http.post("/predict", content=photo, headers=jpeg) for _ in range(40)]
                two = [http.post("/predict", files=[("file", ("a.jpg", photo))] * 2) for _ in range(10)]
                bad = [http.post("/predict", content=photo, headers={"Content-Type": "text/plain"}) for _ in range(5)]
                during = [http.get("/metrics")]
                return await asyncio.gather(*one, *two, *bad, *during)

        responses = asyncio.run(load())
        assert [r.status_code for r in responses] == [200] * 50 + [415] * 5 + [200]
        assert "fmnist_requests_total" in responses[-1].text  # scraped while the load ran
        metrics = scrape(server.url)
    assert sample(metrics, "fmnist_requests_total", route="/predict", method="POST", status="200") == 50
    assert sample(metrics, "fmnist_requests_total", route="/predict", method="POST", status="415") == 5
    assert sample(metrics, "fmnist_rejected_total", status="415") == 5
    assert sample(metrics, "fmnist_request_seconds_count", route="/predict") == 55
    for stage in ("body", "decode", "batch_wait", "encode"):
        assert sample(metrics, "fmnist_stage_seconds_count", stage=stage) == 50, stage
    model_calls = sample(metrics, "fmnist_batch_images_count")
    assert sample(metrics, "fmnist_batch_images_sum") == 40 + 2 * 10  # every image, in some model call
    assert 1 <= model_calls < 50 and sample(metrics, "fmnist_stage_seconds_count", stage="model") == model_calls
    assert sample(metrics, "fmnist_queued_images") == 0 and sample(metrics, "fmnist_requests_in_progress") == 0


@pytest.mark.slow
def test_sighup_swaps_the_model_under_load_with_no_errors_and_a_bad_file_keeps_it(tmp_path):
    path = tiny_checkpoint(tmp_path / "model.pt")
    photo = product_photo(size=(120, 160))
    with running_server(path) as server:
        first = httpx.get(server.url + "/healthz").json()["model"]["sha256"]

        async def main():
            responses: list[httpx.Response] = []
            running = True

            async def client(http: httpx.AsyncClient) -> None:
                while running:
                    responses.append(await http.post("/predict", content=photo, headers={"Content-Type": "image/jpeg"}))

            async def serving(http: httpx.AsyncClient, condition, what: str) -> None:
                deadline = time.monotonic() + 30
                while not condition((await http.get("/healthz")).json()["model"]["sha256"]):
                    assert time.monotonic() < deadline, f"no {what}: {''.join(server.output)}"
                    await asyncio.sleep(0.05)

            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                clients = [asyncio.ensure_future(client(http)) for _ in range(4)]
                await asyncio.sleep(0.5)
                tiny_checkpoint(path)  # new weights, written atomically over the served file
                server.process.send_signal(signal.SIGHUP)
                await serving(http, lambda sha: sha != first, "swap")
                second = (await http.get("/healthz")).json()["model"]["sha256"]
                await asyncio.sleep(0.3)
                path.write_bytes(b"not a checkpoint")
                server.process.send_signal(signal.SIGHUP)
                deadline = time.monotonic() + 30
                while not any("model reload failed" in line for line in server.output):
                    assert time.monotonic() < deadline, "".join(server.output)
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.3)
                running = False
                await asyncio.gather(*clients)
                after = (await http.get("/healthz")).json()["model"]["sha256"]
            return responses, second, after

        responses, second, after = asyncio.run(main())
    assert len(responses) >= 8 and {r.status_code for r in responses} == {200}
    answered_by = [r.json()["model"]["sha256"] for r in responses]
    assert set(answered_by) == {first, second} and after == second == answered_by[-1]
    assert answered_by.index(second) == answered_by.count(first)  # once swapped, never the old model again
    failure = next(line for line in server.output if "model reload failed" in line)
    assert f"still serving model.pt sha256:{second}" in failure and "model.pt" in failure


@pytest.mark.slow
def test_workers_share_one_port_add_up_their_metrics_reload_and_all_stop_on_sigterm(tmp_path):
    photo = product_photo()
    model_path = tiny_checkpoint(tmp_path / "model.pt")
    with running_server(model_path, "--workers", "2") as server:

        async def spread(count: int) -> list[httpx.Response]:  # a new connection per request
            async def one() -> httpx.Response:
                async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                    return await http.post("/predict", content=photo, headers={"Content-Type": "image/jpeg"})

            return await asyncio.gather(*(one() for _ in range(count)))

        pids: set[int] = set()
        deadline = time.monotonic() + 60
        while len(pids) < 2 and time.monotonic() < deadline:  # until both workers have answered
            pids |= {httpx.get(server.url + "/healthz", timeout=30).json()["pid"] for _ in range(8)}
        answers = asyncio.run(spread(24))
        assert len(pids) == 2 and {r.status_code for r in answers} == {200}
        metrics = scrape(server.url)
        assert sample(metrics, "fmnist_requests_total", route="/predict", method="POST", status="200") == 24
        assert sample(metrics, "fmnist_batch_images_sum") == 24
        rss = {pid: server.rss_kib(pid) for pid in pids}
        print(f"resident memory, KiB: supervisor {server.rss_kib()}, workers {rss}")
        assert all(kib < 1024 * 1024 for kib in rss.values())  # each worker well under 1 GiB
        first = httpx.get(server.url + "/healthz").json()["model"]["sha256"]
        tiny_checkpoint(model_path)  # new weights
        server.process.send_signal(signal.SIGHUP)  # to the supervisor, which passes it on to each worker
        reloaded: dict[int, str] = {}
        deadline = time.monotonic() + 60
        while (len(reloaded) < 2 or first in reloaded.values()) and time.monotonic() < deadline:
            health = httpx.get(server.url + "/healthz", timeout=30).json()
            reloaded[health["pid"]] = health["model"]["sha256"]
        assert set(reloaded) == pids and first not in reloaded.values(), "".join(server.output)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(60) == 0, "".join(server.output)
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)


# --- who the client is, and metrics that outlive processes -------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("trusted", [False, True])
def test_forwarded_for_names_the_client_only_from_a_trusted_proxy(model_path, trusted):
    flags = ("--rate", "0.01", "--burst", "2") + (("--forwarded-allow-ips", "127.0.0.1") if trusted else ())
    with running_server(model_path, *flags, access_log=True) as server, httpx.Client(base_url=server.url) as http:
        codes = [
            http.post(
                "/predict",
                content=product_photo(),
                headers={"Content-Type": "image/jpeg", "X-Forwarded-For": f"203.0.113.{n}"},
            ).status_code
            for n in range(8)
        ]
        time.sleep(0.2)  # the access log's last lines
    logged = "".join(server.output)
    if trusted:  # each forwarded address is its own client, and the log names it
        assert codes == [200] * 8 and "203.0.113.7:0 - " in logged
    else:  # one client, whatever it claims: two answers, then the rate limit
        assert codes == [200, 200] + [429] * 6 and "203.0.113." not in logged


def test_a_missing_metrics_directory_is_named_in_one_line(model_path, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src"), "PROMETHEUS_MULTIPROC_DIR": "/no/such"}
    done = subprocess.run(
        [sys.executable, "-m", "fmnist", "serve", str(model_path), "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "PROMETHEUS_MULTIPROC_DIR=/no/such: no such directory" in done.stderr


EARLIER_RUN = """
from prometheus_client import Counter
Counter("fmnist_requests", "", ["route", "method", "status"]).labels("/predict", "POST", "200").inc(5)
"""


@pytest.mark.slow
def test_an_inherited_metrics_directory_adds_nothing_and_gets_nothing(model_path, tmp_path):
    shared = tmp_path / "metrics"
    shared.mkdir()
    subprocess.run([sys.executable, "-c", EARLIER_RUN], env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(shared)})
    earlier = sorted(shared.iterdir())
    assert earlier  # an earlier process's counts are there
    with running_server(model_path, env={"PROMETHEUS_MULTIPROC_DIR": str(shared)}) as server:
        assert httpx.post(server.url + "/predict", content=product_photo(), headers={"Content-Type": "image/jpeg"})
        metrics = scrape(server.url)
        assert sample(metrics, "fmnist_requests_total", route="/predict", method="POST", status="200") == 1
        assert sorted(shared.iterdir()) == earlier
    assert "PROMETHEUS_MULTIPROC_DIR" in "".join(server.output)


@pytest.mark.slow
def test_a_killed_worker_leaves_no_request_in_progress_and_the_supervisor_no_files(model_path, tmp_path):
    shared = tmp_path / "metrics"
    shared.mkdir()
    photo = product_photo()
    jpeg = {"Content-Type": "image/jpeg"}
    with running_server(model_path, "--workers", "2", env={"PROMETHEUS_MULTIPROC_DIR": str(shared)}) as server:

        async def stuck() -> None:  # half a body, never the rest: in progress until its worker dies
            async def half():
                yield photo[: len(photo) // 2]
                await asyncio.sleep(3600)

            async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
                request = asyncio.ensure_future(http.post("/predict", content=half(), headers=jpeg))
                deadline = time.monotonic() + 60
                while sample(scrape(server.url), "fmnist_requests_in_progress") < 1 and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                pids = set()
                while len(pids) < 2 and time.monotonic() < deadline:  # a new connection each: any worker
                    pids.add((await asyncio.to_thread(httpx.get, server.url + "/healthz", timeout=30)).json()["pid"])
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                request.cancel()  # its body would wait an hour to learn that the worker is gone

        asyncio.run(stuck())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the replacements answer
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(server.url + "/healthz", timeout=5).status_code == 200:
                    break
            time.sleep(0.2)
        assert sample(scrape(server.url), "fmnist_requests_in_progress") == 0
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(60) == 0, "".join(server.output)
    assert list(shared.iterdir()) == []
