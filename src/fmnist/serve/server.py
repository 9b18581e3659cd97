"""Run `fmnist serve` under uvicorn: our own listening socket, one process or several, a graceful stop on SIGTERM.

One process (`workers == 1`): the app runs here. Several (`--workers N`): uvicorn's process model,
every worker a spawned process serving the one listening socket that this process bound, each with
its own model copy and micro-batcher; this process only supervises them (restarts a worker that
dies, passes SIGHUP on so that each reloads its model, and on SIGTERM stops them all, each finishing
its requests in flight). The workers learn what to serve from the environment (`SPEC_ENV`, a JSON
`Spec`), and share a temporary PROMETHEUS_MULTIPROC_DIR so that /metrics counts all of them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import shutil
import signal
import socket
import tempfile
from dataclasses import dataclass, field

import torch
import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors.multiprocess import Multiprocess

from fmnist.errors import FmnistError

DRAIN_SECONDS = 30  # after SIGTERM, how long requests in flight may take to finish
SPEC_ENV = "FMNIST_SERVE_SPEC"


@dataclass(frozen=True)
class Spec:
    """What a server process needs to build its app: plain values, so that workers get it as JSON."""

    model: str  # checkpoint, run directory or .onnx
    device: str = "cpu"
    limits: dict = field(default_factory=dict)  # Limits fields; missing ones take their defaults
    api_key_file: str = ""
    cors_origins: tuple[str, ...] = ()
    threads: int = 1  # torch intra-op threads per model call
    tta: str = "none"  # test-time augmentation of every prediction (tta.py)
    ood_threshold: float | None = None  # overrides the model's in-distribution threshold (fmnist.trust)


def build_app(spec: Spec) -> FastAPI:
    """Load and check the model, read the keys, build the app; FmnistError if any of it fails."""
    from fmnist.serve import access, model
    from fmnist.serve.app import create_app
    from fmnist.serve.limits import Limits

    limits = Limits(**spec.limits)
    torch.set_num_threads(spec.threads)
    keys = access.read_keys(spec.api_key_file) if spec.api_key_file else ()

    def reload() -> model.ServedModel:
        return model.load(spec.model, spec.device, spec.tta)

    return create_app(
        reload(), limits, api_keys=keys, cors_origins=spec.cors_origins, reload=reload, ood_threshold=spec.ood_threshold
    )


def worker_app() -> FastAPI:
    """uvicorn's app factory in each worker process: the app described by SPEC_ENV."""
    values = json.loads(os.environ[SPEC_ENV])
    return build_app(Spec(**{**values, "cors_origins": tuple(values["cors_origins"])}))


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach `host` (localhost, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, keyed: bool) -> str | None:
    """The warning to print when a server without API keys listens where other machines can reach it."""
    if keyed or is_loopback(host):
        return None
    return (
        f"fmnist serve: warning: listening on {host}, reachable from other machines, with no --api-key-file: "
        "anyone who can reach it can use it"
    )


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free port), or a one-line FmnistError."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise FmnistError(f"cannot listen on {host}:{port}: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except (OSError, OverflowError) as exc:  # OverflowError: a port beyond 0-65535
        sock.close()
        raise FmnistError(f"cannot listen on {host}:{port}: {getattr(exc, 'strerror', None) or exc}") from None
    return sock


def run(app: FastAPI, sock: socket.socket, access_log: bool = True) -> None:
    """Serve until SIGTERM or SIGINT, then finish the requests in flight and return."""
    config = uvicorn.Config(app, access_log=access_log, timeout_graceful_shutdown=DRAIN_SECONDS, log_level="info")
    server = uvicorn.Server(config)
    # uvicorn drains on the signal, then raises it again under the handler it found, to "exit as the
    # signal asked". A drained server has done what the signal asked: ignore that second delivery so
    # that the command returns (exit 0) instead of dying by the signal or by fmnist's SIGTERM handler.
    previous = {sig: signal.signal(sig, lambda signum, frame: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    if not server.started:
        raise FmnistError("the server did not start (see the messages above)")


class _Workers(Multiprocess):
    """uvicorn's supervisor, except that SIGHUP reaches each worker (which reloads its model in place,
    keeping the old one if the new fails) instead of replacing the worker processes."""

    def handle_hup(self) -> None:
        for process in self.processes:
            if process.pid is not None and process.exitcode is None:
                os.kill(process.pid, signal.SIGHUP)


def run_workers(spec: Spec, sock: socket.socket, workers: int, access_log: bool = True) -> None:
    """Serve with `workers` processes on `sock` until SIGTERM or SIGINT, then stop them all gracefully."""
    metrics_dir = tempfile.mkdtemp(prefix="fmnist-metrics-")
    os.environ[SPEC_ENV] = json.dumps(dataclasses.asdict(spec))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    config = uvicorn.Config(
        "fmnist.serve.server:worker_app",
        factory=True,
        workers=workers,
        access_log=access_log,
        timeout_graceful_shutdown=DRAIN_SECONDS,
        log_level="info",
    )
    try:
        _Workers(config, sockets=[sock]).run()
    finally:
        sock.close()
        del os.environ[SPEC_ENV], os.environ["PROMETHEUS_MULTIPROC_DIR"]
        shutil.rmtree(metrics_dir, ignore_errors=True)
