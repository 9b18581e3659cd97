"""--max-time: what the budget covers, said in the help and the summary, and the whole wall time recorded."""

import json
import time

import pytest

from fmnist import cli, trust


def test_the_help_says_what_the_budget_covers(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "budget of training in seconds" in help_text and "comes on top" in help_text
    assert "total_seconds (the whole run)" in help_text


@pytest.mark.slow
def test_the_summary_records_the_whole_wall_time_beside_the_budgeted_training(
    synthetic_data, tmp_path, capsys, monkeypatch
):
    after_training = 1.5  # seconds of work after the budget: here a stand-in for the temperature and detector fit

    def slow_fit(*args, **kwargs):
        time.sleep(after_training)

    monkeypatch.setattr(trust, "fit_and_store", slow_fit)
    run_dir = tmp_path / "run"
    args = ["train", "--hidden", "16", "--epochs", "200", "--max-time", "1", "--val-size", "100", "--no-progress"]
    began = time.perf_counter()
    assert cli.main([*args, "--out", str(run_dir)]) == 0
    whole = time.perf_counter() - began
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs"] < 200 and summary["stopped"].startswith("time budget")
    assert summary["wall_seconds"] < 1 + summary["wall_seconds"] / summary["epochs"] + 0.5  # training kept the budget
    assert summary["total_seconds"] >= summary["wall_seconds"] + after_training
    assert whole - 0.5 <= summary["total_seconds"] <= whole  # the command's whole time, to summary.json
    out = capsys.readouterr().out
    assert "(what --max-time counts), whole run" in out
