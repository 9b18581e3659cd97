"""SIGHUP, SIGTERM and SIGINT at each phase of a command's life: the documented effect or a clean stop with one
line and the shell's status (128 + the signal), never a silent death. Real processes on 127.0.0.1."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from support import default_sigint, handles, product_photo, running_server, tiny_checkpoint, wait_until

from fmnist import signals

SRC = str(Path(__file__).parents[1] / "src")
STOPS = [(signal.SIGHUP, 129, "hangup"), (signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")]


def fmnist(*argv: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "fmnist", *argv],
        env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )


@pytest.mark.parametrize("sig, status, word", STOPS)
def test_a_signal_while_a_command_starts_stops_it_with_one_line(tmp_path, sig, status, word):
    model = tiny_checkpoint(tmp_path / "tiny.pt")
    proc = fmnist("predict", str(model), str(tmp_path / "none.jpg"))
    wait_until(lambda: handles(proc.pid, signal.SIGHUP))  # fmnist's own handlers: its imports are starting
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (status, f"fmnist: {word}\n")


def test_a_hangup_held_before_the_command_was_known_stops_any_command_but_serve():
    signals.install()
    try:
        signal.raise_signal(signal.SIGHUP)
        with pytest.raises(signals.Stopped) as stop, signals.handled():
            pass
        assert stop.value.status == 129
        signal.raise_signal(signal.SIGHUP)
        with signals.handled(hold_hangup=True):
            signal.raise_signal(signal.SIGHUP)
        assert signals.take_hangup() and not signals.take_hangup()
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)


@pytest.mark.slow
def test_serve_reloads_on_a_sighup_during_start_up_and_stops_cleanly_on_the_others(tmp_path):
    model = tiny_checkpoint(tmp_path / "tiny.pt")
    for sig, status, word in STOPS[1:]:
        starting = fmnist("serve", str(model), "--port", "0")
        wait_until(lambda p=starting: handles(p.pid, signal.SIGHUP))
        starting.send_signal(sig)
        out, err = starting.communicate(timeout=60)
        assert (starting.returncode, err) == (status, f"fmnist: {word}\n")
    proc = fmnist("serve", str(model), "--port", "0", "--no-access-log")
    wait_until(lambda: handles(proc.pid, signal.SIGHUP))
    proc.send_signal(signal.SIGHUP)  # while torch is imported: held, and the server reloads once it serves
    line = proc.stdout.readline()  # type: ignore[union-attr]
    url = line.split(" on ")[1].split("/ ")[0].rstrip("/,")
    wait_until(lambda: httpx.get(url + "/healthz").status_code == 200)
    wait_until(lambda: 'fmnist_model_reloads_total{result="ok"} 1.0' in httpx.get(url + "/metrics").text)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0


@pytest.mark.slow
def test_serve_ignores_a_sighup_while_it_drains_and_still_exits_0(tmp_path):
    photo = product_photo()
    with running_server(tiny_checkpoint(tmp_path / "tiny.pt")) as server:

        def slow_body():
            yield photo[: len(photo) // 2]
            time.sleep(1.5)
            yield photo[len(photo) // 2 :]

        answers: list[int] = []
        request = threading.Thread(
            target=lambda: answers.append(
                httpx.post(
                    server.url + "/predict", content=slow_body(), headers={"Content-Type": "image/jpeg"}
                ).status_code
            )
        )
        request.start()
        wait_until(lambda: httpx.get(server.url + "/healthz").json()["in_progress"] == 1)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        server.process.send_signal(signal.SIGHUP)
        request.join(30)
        assert server.process.wait(30) == 0 and answers == [200], "".join(server.output)


@pytest.mark.slow
def test_workers_survive_a_sighup_while_they_start_and_each_reloads_once_it_serves(tmp_path):
    model = tiny_checkpoint(tmp_path / "tiny.pt")
    with running_server(model, "--workers", "2") as server:
        wait_until(lambda: "Started parent process" in "".join(server.output))
        server.process.send_signal(signal.SIGHUP)  # to the supervisor, while the workers it spawned import torch
        wait_until(lambda: "".join(server.output).count("model reloaded") == 2, timeout=60)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(60) == 0
    assert "died" not in "".join(server.output)


@pytest.mark.parametrize(("sig", "raised"), [(signal.SIGTERM, signals.Stopped), (signal.SIGINT, KeyboardInterrupt)])
def test_a_signal_inside_a_deferred_block_is_raised_at_its_end(sig, raised):
    """TensorBoard's event queue, stopped while it held its lock, kept the lock, and the writer's close() waited
    for it for ever: the training loop writes its scalars in such a block."""
    steps = []
    found = signal.signal(signal.SIGINT, signal.default_int_handler)  # pytest-xdist's workers ignore SIGINT
    try:
        with signals.handled(), pytest.raises(raised):
            with signals.deferred():
                signal.raise_signal(sig)
                steps.append("after the signal")  # the block runs to its end
            steps.append("after the block")
    finally:
        signal.signal(signal.SIGINT, found)
    assert steps == ["after the signal"]
    assert signal.getsignal(signal.SIGTERM) is not signals._stop  # handled() restored what it found


def test_a_deferred_block_in_another_thread_runs_as_it_is():
    ran = []
    worker = threading.Thread(target=lambda: ran.append(signals.deferred().__enter__() is None))
    worker.start()
    worker.join()
    assert ran == [True]
