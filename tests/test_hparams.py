"""TensorBoard's HParams view of a study (fmnist.studies.hparams), read back with TensorBoard's reader."""

import pytest
from support import hparams_sessions

from fmnist.studies import hparams


def test_sessions_show_their_options_and_metrics_and_a_rewrite_replaces_them(tmp_path):
    first = [
        ("lr=0.1,seed=0", {"lr": 0.1, "hidden": (256, 128), "nesterov": True, "seed": 0}, {"val_acc": 0.8}),
        ("lr=0.3,seed=0", {"lr": 0.3, "hidden": (256,), "nesterov": False, "seed": 0}, {"val_acc": 0.7}),
    ]
    hparams.write(tmp_path / "hp", first)
    shown = hparams_sessions(tmp_path / "hp")
    assert set(shown) == {"lr=0.1,seed=0", "lr=0.3,seed=0"}
    options, metrics = shown["lr=0.1,seed=0"]
    assert options == {"lr": pytest.approx(0.1), "hidden": "256,128", "nesterov": True, "seed": 0}
    assert metrics == {"hparam/val_acc": pytest.approx(0.8)}
    hparams.write(tmp_path / "hp", first[1:])  # a study rewrites its view whole: no session twice, none stale
    assert set(hparams_sessions(tmp_path / "hp")) == {"lr=0.3,seed=0"}


def test_two_tasks_writing_one_view_at_once_both_finish_and_leave_it_whole(tmp_path):
    # The tasks of a sharded compare (or a tune's workers) each write the study's view when they end; one's
    # rmtree used to pull the event files from under the other's writer (FileNotFoundError).
    import threading

    sessions = [(f"seed={s}", {"seed": s}, {"val_acc": 0.5}) for s in range(8)]
    errors: list[BaseException] = []

    def task() -> None:
        try:
            for _ in range(6):
                hparams.write(tmp_path / "hp", sessions)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=task) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert set(hparams_sessions(tmp_path / "hp")) == {f"seed={s}" for s in range(8)}
