"""How a fmnist command meets SIGINT, SIGTERM and SIGHUP: a clean stop with one line and the shell's status
(128 + the signal number), or for `fmnist serve` the documented effect (SIGHUP reloads the model).

Python's defaults are a KeyboardInterrupt for SIGINT and a silent death for SIGTERM and SIGHUP. Here
SIGTERM and SIGHUP raise `Stopped` in the main thread instead, so that `finally` blocks run (a
checkpoint being written is finished, worker processes are stopped) and the command says why it
ended. SIGHUP means a closed terminal to most commands but "reload" to a server, and it may arrive
before the command is known: `install`, run first, holds it; the command then either stops on it
(`handled(hold_hangup=False)`) or leaves it held for the server, which takes it with `take_hangup`.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

WHAT: dict[int, str] = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated", signal.SIGHUP: "hangup"}
_held: set[int] = set()  # signals received while held, not yet taken


class Stopped(BaseException):
    """SIGTERM or SIGHUP, raised where the main thread was, as Ctrl-C raises KeyboardInterrupt."""

    def __init__(self, signum: int):
        super().__init__(WHAT.get(signum, f"signal {signum}"))
        self.signum = signum

    @property
    def status(self) -> int:
        """The exit status a shell shows for a process ended by this signal: 128 + its number."""
        return 128 + self.signum


def _stop(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signum)


def _hold(signum: int, frame: FrameType | None) -> None:
    _held.add(signum)


def install() -> None:
    """At the process's start, before the slow imports: SIGTERM stops, SIGHUP is held until the command
    says what it means."""
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _hold)


def hold_hangups() -> None:
    """Hold SIGHUP again (after an event loop that handled it gave it back to the system default)."""
    signal.signal(signal.SIGHUP, _hold)


def take_hangup() -> bool:
    """Whether a SIGHUP was held since the last call."""
    held = signal.SIGHUP in _held
    _held.discard(signal.SIGHUP)
    return held


@contextlib.contextmanager
def handled(hold_hangup: bool = False) -> Iterator[None]:
    """Within the block SIGTERM raises Stopped, and so does SIGHUP (one held before included) unless
    `hold_hangup`; the handlers found are restored afterwards. Main thread only."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _hold if hold_hangup else _stop)
    try:
        if not hold_hangup and take_hangup():
            raise Stopped(signal.SIGHUP)
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Within the block SIGINT, SIGTERM and SIGHUP are noted, not acted on; at its end the handlers found are
    restored and the first signal noted is raised again for them (Stopped, KeyboardInterrupt, held or ignored, as
    they say). For code that an exception raised between two of its bytecodes leaves broken: a signal raised while
    TensorBoard's event queue held its lock left the lock taken, and the writer's close() waited for it for ever.
    Outside the main thread, where no handler runs, the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in WHAT}
    for sig in WHAT:
        signal.signal(sig, lambda signum, frame: noted.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if noted:
        signal.raise_signal(noted[0])


def report(stop: KeyboardInterrupt | Stopped) -> int:
    """Say on stderr why the command ended ("fmnist: interrupted", "terminated", "hangup"); its exit status."""
    signum = stop.signum if isinstance(stop, Stopped) else signal.SIGINT
    with contextlib.suppress(OSError):  # after a hang-up the terminal may be gone
        print(f"fmnist: {WHAT[signum]}", file=sys.stderr)
    return 128 + signum
