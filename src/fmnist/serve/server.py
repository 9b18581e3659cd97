"""Run `fmnist serve` under uvicorn: our own listening socket, one process or several, a graceful stop on SIGTERM.

One process (`workers == 1`): the app runs here. Several (`--workers N`): uvicorn's process model,
every worker a spawned process serving the one listening socket that this process bound, each with
its own model copy and micro-batcher; this process only supervises them (restarts a worker that
dies, passes SIGHUP on so that each reloads its model, and on SIGTERM stops them all, each finishing
its requests in flight). The workers learn what to serve from the environment (`SPEC_ENV`, a JSON
`Spec`).

Metrics count what this server did, whatever the environment holds: an inherited
PROMETHEUS_MULTIPROC_DIR is taken out of the environment before prometheus-client is imported
(`claim_metrics_dir`), one process keeps its metrics in memory, and several share a new directory of
their own (inside the inherited one, if any), where the supervisor marks each dead worker dead
(prometheus-client's `mark_process_dead`: its in-progress gauges go) and which it removes at exit.

Client addresses: uvicorn believes X-Forwarded-For only from the proxies named by
`--forwarded-allow-ips`; by default from none, so a client cannot choose the address that rate limits
and the access log see.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors.multiprocess import Multiprocess

from fmnist import signals
from fmnist.errors import FmnistError

DRAIN_SECONDS = 30  # after SIGTERM, how long requests in flight may take to finish
SPEC_ENV = "FMNIST_SERVE_SPEC"
METRICS_ENV = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")  # prometheus-client's names, new and old


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


def claim_metrics_dir() -> Path | None:
    """Take PROMETHEUS_MULTIPROC_DIR out of this process's environment, before prometheus-client is imported
    (it would otherwise add up whatever earlier processes left there); the directory it named, where
    `run_workers` makes its own. FmnistError if the variable names no directory."""
    named = [os.environ.pop(name) for name in METRICS_ENV if name in os.environ]
    if "prometheus_client.values" in sys.modules:  # too late: its value store was chosen at import
        from prometheus_client import values

        if values.ValueClass is not values.MutexValue:
            raise FmnistError("prometheus-client was imported with PROMETHEUS_MULTIPROC_DIR set; unset it first")
    if not named:
        return None
    if not Path(named[0]).is_dir():
        raise FmnistError(f"PROMETHEUS_MULTIPROC_DIR={named[0]}: no such directory (create it, or unset the variable)")
    return Path(named[0])


def trusted_proxies(text: str) -> str:
    """`--forwarded-allow-ips` checked: comma-separated IP addresses or networks, or "*"; FmnistError if not."""
    for item in (part.strip() for part in text.split(",")):
        try:
            if item != "*":
                ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise FmnistError(f"--forwarded-allow-ips: {item!r} is not an IP address or network") from None
    return text


def uvicorn_config(app: FastAPI | str, access_log: bool, forwarded_allow_ips: str, **more: object) -> uvicorn.Config:
    """The uvicorn settings every fmnist server runs with: proxy headers believed only from the named proxies."""
    return uvicorn.Config(
        app,
        access_log=access_log,
        proxy_headers=bool(forwarded_allow_ips),
        forwarded_allow_ips=forwarded_allow_ips or None,  # None: unused while proxy_headers is off
        timeout_graceful_shutdown=DRAIN_SECONDS,
        log_level="info",
        **more,  # type: ignore[arg-type]
    )


def run(app: FastAPI, sock: socket.socket, access_log: bool = True, forwarded_allow_ips: str = "") -> None:
    """Serve until SIGTERM or SIGINT, then finish the requests in flight and return."""
    server = uvicorn.Server(uvicorn_config(app, access_log, forwarded_allow_ips))
    # uvicorn drains on the signal, then raises it again under the handler it found, to "exit as the
    # signal asked". Its own handler stands in for that one: a signal before uvicorn takes over (or after
    # it let go) stops it the same way, and the second delivery finds a drained server, so the command
    # returns (exit 0) instead of dying by the signal.
    previous = {sig: signal.signal(sig, server.handle_exit) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    if not server.started:
        raise FmnistError("the server did not start (see the messages above)")


class _Workers(Multiprocess):
    """uvicorn's supervisor, except that SIGHUP reaches each worker once it serves (it then reloads its
    model in place, keeping the old one if the new fails; a worker still starting gets it when ready)
    instead of replacing the worker processes, and that a dead worker is marked dead in the metrics."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket], metrics_dir: str):
        super().__init__(config, sockets)
        self.metrics_dir = metrics_dir
        self.hup_owed: set[int] = set()  # workers that have a SIGHUP coming

    def handle_hup(self) -> None:
        self.hup_owed |= {p.pid for p in self.processes if p.pid is not None and p.exitcode is None}
        self.pass_hups()

    def pass_hups(self) -> None:
        for process in self.processes:
            if process.pid in self.hup_owed and process.exitcode is None and process.is_ready(timeout=1):
                os.kill(process.pid, signal.SIGHUP)
                self.hup_owed.discard(process.pid)

    def keep_subprocess_alive(self) -> None:
        from prometheus_client import multiprocess

        before = {p.pid for p in self.processes}
        super().keep_subprocess_alive()
        for pid in before - {p.pid for p in self.processes}:  # replaced: it died
            multiprocess.mark_process_dead(pid, self.metrics_dir)
            self.hup_owed.discard(pid)  # its replacement loads the model as it is now
        self.pass_hups()


def run_workers(
    spec: Spec,
    sock: socket.socket,
    workers: int,
    access_log: bool = True,
    forwarded_allow_ips: str = "",
    metrics_parent: Path | None = None,
) -> None:
    """Serve with `workers` processes on `sock` until SIGTERM or SIGINT, then stop them all gracefully.
    Their metrics directory is made inside `metrics_parent` (default: the system's temporary directory)."""
    metrics_dir = tempfile.mkdtemp(prefix="fmnist-metrics-", dir=metrics_parent)
    os.environ[SPEC_ENV] = json.dumps(dataclasses.asdict(spec))
    os.environ[METRICS_ENV[0]] = metrics_dir  # what the spawned workers inherit
    config = uvicorn_config(
        "fmnist.serve.server:worker_app", access_log, forwarded_allow_ips, factory=True, workers=workers
    )
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        supervisor = _Workers(config, [sock], metrics_dir)  # takes the signals over
        signals.take_hangup()  # one before now: the workers load the model as it is now anyway
        supervisor.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
        del os.environ[SPEC_ENV], os.environ[METRICS_ENV[0]]
        shutil.rmtree(metrics_dir, ignore_errors=True)
