"""Load test: `fmnist serve` against the per-request baseline, same client, same run, 127.0.0.1 only.

For each model and each server (benchmarks/serve_baseline.py, then `fmnist serve`), starts the
server on a free local port, warms it up, then at each concurrency sends multipart uploads of
Fashion-MNIST test images (28x28 PNG) from that many clients until `--requests` answers or
`--max-seconds` pass, and reports requests/s, p50 and p99 latency and errors. Everything is
bounded by count and time, and only 127.0.0.1 is ever contacted.

    python benchmarks/load.py --model mlp=runs/ref --model cnn=runs/cnn --requests 5000 --json load.json
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
WARMUP_REQUESTS = 200


@dataclass
class Level:
    model: str
    server: str
    clients: int
    requests: int
    errors: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    server_cpu_ms_per_request: float  # user+system CPU of the server's processes: comparable on a busy machine
    first_error: str


def test_pngs(count: int) -> list[bytes]:
    """The first `count` test images as PNG files, as a client would upload them; synthetic without the data."""
    from fmnist import data
    from fmnist.errors import FmnistError

    try:
        images = data.load().test_images[:count].numpy()
    except FmnistError:
        images = np.random.default_rng(0).integers(0, 256, (count, 28, 28), dtype=np.uint8)
    pngs = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    return pngs


def start(command: list[str]) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()  # type: ignore[union-attr]
        found = re.search(r"http://127\.0\.0\.1:\d+", line)
        if found:
            return process, found.group(0)
        if not line and process.poll() is not None:
            break
    process.kill()
    raise SystemExit(f"server did not start: {shlex.join(command)}")


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def run_level(
    url: str, pngs: list[bytes], clients: int, requests: int, max_seconds: float
) -> tuple[list[float], list[str], float]:
    """`clients` concurrent loops, each sending one request at a time, until `requests` are sent or time is up."""
    latencies: list[float] = []
    errors: list[str] = []
    sent = 0
    deadline = time.perf_counter() + max_seconds

    async def client(http: aiohttp.ClientSession) -> None:
        nonlocal sent
        while sent < requests and time.perf_counter() < deadline:
            png = pngs[sent % len(pngs)]
            sent += 1
            form = aiohttp.FormData()
            form.add_field("file", png, filename="image.png", content_type="image/png")
            begin = time.perf_counter()
            try:
                async with http.post(url + "/predict", data=form) as response:
                    body = await response.read()
                    if response.status == 200:
                        latencies.append(time.perf_counter() - begin)
                    else:
                        errors.append(f"{response.status} {body[:200]!r}")
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        begin = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return latencies, errors, time.perf_counter() - begin


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process and its live children (the workers of `fmnist serve --workers N`)."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rpartition(")")[2].split()
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="utf-8").split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") + sum(cpu_seconds(int(c)) for c in children)


def measure(
    model: str,
    server: str,
    process: subprocess.Popen,
    url: str,
    pngs: list[bytes],
    clients: int,
    requests: int,
    max_seconds: float,
) -> Level:
    cpu = cpu_seconds(process.pid)
    latencies, errors, seconds = asyncio.run(run_level(url, pngs, clients, requests, max_seconds))
    cpu = cpu_seconds(process.pid) - cpu
    ms = np.array(latencies) * 1000 if latencies else np.array([float("nan")])
    total = len(latencies) + len(errors)
    return Level(
        model,
        server,
        clients,
        total,
        len(errors),
        round(seconds, 3),
        round(len(latencies) / seconds, 1),
        round(float(np.percentile(ms, 50)), 2),
        round(float(np.percentile(ms, 99)), 2),
        round(cpu * 1000 / max(total, 1), 3),
        errors[0] if errors else "",
    )


def table(levels: list[Level]) -> str:
    rows = [
        "| model | server | clients | requests/s | p50 ms | p99 ms | errors / requests "
        "| server CPU ms/request | vs baseline |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    base = {(lv.model, lv.clients): lv.requests_per_second for lv in levels if lv.server == "baseline"}
    for lv in levels:
        reference = base.get((lv.model, lv.clients)) if lv.server != "baseline" else None
        ratio = lv.requests_per_second / reference if reference else None
        rows.append(
            f"| {lv.model} | {lv.server} | {lv.clients} | {lv.requests_per_second:,.0f} | {lv.p50_ms:.1f} | "
            f"{lv.p99_ms:.1f} | {lv.errors} / {lv.requests:,} | {lv.server_cpu_ms_per_request:.2f} | "
            f"{f'{ratio:.2f}x' if ratio else ''} |"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="NAME=PATH",
        help="a checkpoint or run directory to serve, with a name for the table (repeatable)",
    )
    parser.add_argument("--clients", default="1,8,32,64", help="concurrency levels (default: 1,8,32,64)")
    parser.add_argument("--requests", type=int, default=5000, help="requests per level (default: 5000)")
    parser.add_argument("--max-seconds", type=float, default=60, help="time limit per level (default: 60)")
    parser.add_argument("--no-baseline", action="store_true", help="measure fmnist serve only")
    parser.add_argument(
        "--serve-flags",
        action="append",
        metavar="FLAGS",
        help='flags for one fmnist serve variant, e.g. "--max-wait-ms 1" (repeatable: each variant '
        "is measured in turn, to compare settings in one run; default: one with no flags)",
    )
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args()

    pngs = test_pngs(256)
    levels: list[Level] = []
    for spec in args.model:
        name, _, path = spec.partition("=")
        variants = args.serve_flags or [""]
        for server in ([] if args.no_baseline else ["baseline"]) + [f"fmnist {flags}".strip() for flags in variants]:
            if server == "baseline":
                command = [sys.executable, str(ROOT / "benchmarks" / "serve_baseline.py"), path]
            else:
                command = [
                    sys.executable,
                    "-m",
                    "fmnist",
                    "serve",
                    path,
                    "--port",
                    "0",
                    "--no-access-log",
                    "--device",
                    "cpu",
                    *shlex.split(server.removeprefix("fmnist")),
                ]
            process, url = start(command)
            try:
                measure(name, server, process, url, pngs, 8, WARMUP_REQUESTS, args.max_seconds)
                for clients in map(int, args.clients.split(",")):
                    level = measure(name, server, process, url, pngs, clients, args.requests, args.max_seconds)
                    print(
                        f"{name} {server} clients={clients}: {level.requests_per_second:,.0f} req/s "
                        f"p50 {level.p50_ms:.1f} ms p99 {level.p99_ms:.1f} ms errors {level.errors}/{level.requests} "
                        f"server CPU {level.server_cpu_ms_per_request:.2f} ms/request"
                        + (f" ({level.first_error})" if level.first_error else ""),
                        flush=True,
                    )
                    levels.append(level)
            finally:
                stop(process)
    print()
    print(table(levels))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(lv) for lv in levels], indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
