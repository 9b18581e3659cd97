"""Run an app under uvicorn the way `fmnist serve` does: our own listening socket, a graceful stop on SIGTERM."""

from __future__ import annotations

import signal
import socket

import uvicorn
from fastapi import FastAPI

from fmnist.errors import FmnistError

DRAIN_SECONDS = 30  # after SIGTERM, how long requests in flight may take to finish


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
    except OSError as exc:
        sock.close()
        raise FmnistError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
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
