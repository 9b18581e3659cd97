"""fmnist serve beside its peers, one model, one run: LitServe (its batching), the per-request FastAPI
baseline and `fmnist serve`, each server pinned to CPU 0 and this load generator to CPU 1 (`taskset`),
127.0.0.1 only; then start-up: `fmnist serve MODEL` from its start to the first 200 on /healthz,
against `python -c "import torch"`, best of 3.

    python benchmarks/serve_peers.py runs/ref --clients 1,32 --requests 3000 --json peers.json

Needs 2 CPUs, `taskset` (util-linux) and `pip install litserve`. The load (requests/s, p50, p99, errors,
server CPU per request) is measured as benchmarks/load.py does, with the same multipart PNG uploads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from load import ROOT, WARMUP_REQUESTS, Level, measure, start, stop, table, test_pngs  # noqa: E402

SERVER_CPU, CLIENT_CPU = "0", 1


def commands(model: str) -> dict[str, list[str]]:
    """The servers, each as its command line."""
    bench = ROOT / "benchmarks"
    return {
        "baseline": [sys.executable, str(bench / "serve_baseline.py"), model],
        "litserve": [sys.executable, str(bench / "serve_litserve.py"), model],
        "fmnist": [sys.executable, "-m", "fmnist", "serve", model, "--port", "0", "--no-access-log"],
    }


async def first_answer(url: str, png: bytes, timeout: float = 120) -> None:
    """Until POST /predict answers 200: a server may print its address before it accepts requests."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        while time.monotonic() < deadline:
            form = aiohttp.FormData()
            form.add_field("file", png, filename="image.png", content_type="image/png")
            try:
                async with http.post(url + "/predict", data=form) as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(0.1)
    raise Silent(f"{url} never answered 200 within {timeout:.0f} s")


class Silent(Exception):
    """A server that never answered its first request: left out of the table, said so."""


def descendants(pid: int) -> list[int]:
    """Process ids of every process under `pid` (LitServe's inference workers, uvicorn's)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="utf-8").split()
    except OSError:
        return []
    return [int(c) for c in children] + [d for c in children for d in descendants(int(c))]


def stop_all(process: subprocess.Popen) -> None:
    """Stop the server, then kill whatever of its process tree outlived it."""
    tree = descendants(process.pid)
    stop(process)
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def profile(process: subprocess.Popen, url: str, pngs: list[bytes], out: str, seconds: float = 12) -> None:
    """py-spy samples the server (all its threads, the GIL holder marked) while 32 clients load it, after
    the measured levels so that the sampling does not change their figures; collapsed stacks to `out`."""
    spy = subprocess.Popen(
        [
            "taskset",
            "-c",
            str(CLIENT_CPU),
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "-p",
            str(process.pid),
            "-d",
            str(seconds),
        ]
        + ["-r", "200", "--gil", "--nonblocking", "--format", "raw", "-o", out],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while spy.poll() is None:
        measure("", "", process, url, pngs, 32, 1000, seconds)


def serve_load(
    model: str, name: str, levels: list[int], requests: int, max_seconds: float, profile_to: str = ""
) -> list[Level]:
    pngs = test_pngs(256)
    rows = []
    for server, command in commands(model).items():
        process, url = start(["taskset", "-c", SERVER_CPU, *command])
        try:
            try:
                asyncio.run(first_answer(url, pngs[0]))
            except Silent as e:
                print(f"{server}: {e}; left out", flush=True)
                continue
            measure(name, server, process, url, pngs, 8, WARMUP_REQUESTS, max_seconds)
            for clients in levels:
                row = measure(name, server, process, url, pngs, clients, requests, max_seconds)
                print(
                    f"{server} clients={clients}: {row.requests_per_second:,.0f} req/s p50 {row.p50_ms:.1f} ms "
                    f"p99 {row.p99_ms:.1f} ms errors {row.errors}/{row.requests} "
                    f"server CPU {row.server_cpu_ms_per_request:.3f} ms/request",
                    flush=True,
                )
                rows.append(row)
            if profile_to and server == "fmnist":
                profile(process, url, pngs, profile_to)
        finally:
            stop_all(process)
    return rows


def seconds_to_healthz(model: str) -> float:
    """Wall seconds from starting `fmnist serve MODEL` to its first 200 on GET /healthz."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    begin = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "fmnist", "serve", model, "--port", "0", "--no-access-log"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        line = process.stdout.readline()  # type: ignore[union-attr]  # printed once the port is bound
        url = line.split(" on ")[1].split()[0].rstrip(",")
        while True:
            try:
                with urllib.request.urlopen(url + "healthz", timeout=10) as response:
                    if response.status == 200:
                        return time.perf_counter() - begin
            except OSError:
                time.sleep(0.005)
    finally:
        stop(process)


def seconds_to_import_torch() -> float:
    begin = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    return time.perf_counter() - begin


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a checkpoint or run directory")
    parser.add_argument("--name", default="mlp", help="the model's name in the table (default: mlp)")
    parser.add_argument("--clients", default="1,32", help="concurrency levels (default: 1,32)")
    parser.add_argument("--requests", type=int, default=3000, help="requests per level (default: 3000)")
    parser.add_argument("--max-seconds", type=float, default=60, help="time limit per level (default: 60)")
    parser.add_argument("--json", help="also write every figure as JSON here")
    parser.add_argument("--profile", metavar="FILE", help="also profile fmnist serve at 32 clients (py-spy, collapsed)")
    args = parser.parse_args()
    report(
        args.model,
        args.name,
        [int(c) for c in args.clients.split(",")],
        args.requests,
        args.max_seconds,
        args.json,
        args.profile or "",
    )
    return 0


def report(
    model: str, name: str, levels: list[int], requests: int, max_seconds: float, json_to: str | None, profile_to: str
) -> None:
    """Print each server's figures at each level of clients, their table, and the start-up ratio."""
    os.sched_setaffinity(0, {CLIENT_CPU})
    rows = serve_load(model, name, levels, requests, max_seconds, profile_to)
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    torch_s = min(seconds_to_import_torch() for _ in range(3))
    serve_s = min(seconds_to_healthz(model) for _ in range(3))
    print()
    print(table(rows))
    print(
        f"\nstart-up, best of 3: fmnist serve to first 200 on /healthz {serve_s:.2f} s; "
        f'python -c "import torch" {torch_s:.2f} s; ratio {serve_s / torch_s:.2f}x',
        flush=True,
    )
    if json_to:
        figures = {"load": [asdict(r) for r in rows], "serve_to_healthz_s": serve_s, "import_torch_s": torch_s}
        Path(json_to).write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
