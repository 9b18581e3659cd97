from pathlib import Path

import pytest
import torch

from fmnist import measure

CPU = torch.device("cpu")
MiB = 2**20


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="the peak RSS reset needs Linux /proc")
def test_cpu_peak_memory_is_per_run_after_a_reset():
    measure.reset_peak_memory(CPU)
    before = measure.peak_memory_bytes(CPU)
    block = torch.ones(2**25)  # 128 MiB, touched
    during = measure.peak_memory_bytes(CPU)
    del block
    measure.reset_peak_memory(CPU)  # as fit() does at the start of each run
    after = measure.peak_memory_bytes(CPU)
    assert during - before > 100 * MiB
    assert after < during - 100 * MiB  # the earlier run's peak is not inherited


def test_code_version_marks_a_tree_with_changes_dirty(tmp_path, monkeypatch):
    import subprocess
    from pathlib import Path

    repo = tmp_path / "repo"
    (repo / "fmnist").mkdir(parents=True)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "fmnist" / "measure.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    monkeypatch.setattr(measure, "__file__", str(repo / "fmnist" / "measure.py"))
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert measure.code_version() == commit
    (repo / "fmnist" / "measure.py").write_text("x = 2\n")
    assert measure.code_version() == f"{commit}-dirty"
    monkeypatch.setattr(measure, "__file__", str(Path(tmp_path) / "elsewhere" / "measure.py"))
    (tmp_path / "elsewhere").mkdir()
    assert measure.code_version() is None
