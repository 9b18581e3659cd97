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
