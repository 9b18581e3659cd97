"""Flush-to-zero must hold on every thread of torch's pool, not only the caller's.

Each check runs in a child process with 2 intra-op threads whose pool is started (by a parallel
op) before the flag is set: the case torch.set_flush_denormal alone gets wrong.
"""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from fmnist import cpu
from fmnist.device import resolve_amp

PROBE = textwrap.dedent(
    """
    import sys
    import torch
    from fmnist import cpu

    torch.set_num_threads(2)
    torch.ones(1 << 21).mul_(2)  # starts the OpenMP pool before the flag is set
    tiny = torch.full((1 << 21,), 1e-30)  # times 1e-10: 1e-40, a float32 denormal

    def denormal_chunks():
        out = tiny * 1e-10  # big enough for torch to split it across both threads
        return [int((chunk != 0).sum()) for chunk in out.view(16, -1)]

    def check():
        assert torch.get_num_threads() == 2
        counts = denormal_chunks()
        print(counts)
        sys.exit(0 if not any(counts) else 1)
    """
)


def run_probe(body: str) -> subprocess.CompletedProcess:
    code = PROBE + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(cpu._openmp_parallel() is None, reason="torch here has no OpenMP runtime to reach")
@pytest.mark.slow
def test_set_flush_denormal_alone_misses_the_pool_threads():
    """The probe can fail: the calling thread's flag alone leaves the other thread's chunks denormal."""
    result = run_probe("torch.set_flush_denormal(True)\ncheck()\n")
    assert result.returncode == 1, result.stdout + result.stderr


@pytest.mark.slow
def test_flush_denormals_reaches_every_pool_thread():
    result = run_probe("cpu.flush_denormals()\ncheck()\n")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_flush_denormals_false_turns_it_off_everywhere():
    result = run_probe(
        "cpu.flush_denormals()\ncpu.flush_denormals(False)\n"
        "counts = denormal_chunks()\nprint(counts)\nsys.exit(0 if all(counts) else 1)\n"
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_fit_leaves_flush_to_zero_on_every_thread(tmp_path):
    result = run_probe(
        f"""
        from pathlib import Path
        from fmnist import data, training
        from fmnist.config import Config

        g = torch.Generator().manual_seed(0)
        images = lambda n: torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=g)
        labels = lambda n: torch.arange(n) % 10
        dataset = data.FashionMNIST(images(256), labels(256), images(64), labels(64), Path("."), "test")
        cfg = Config(hidden=(16,), epochs=1, batch_size=64, val_size=0, device="cpu")
        training.fit(cfg, {str(tmp_path)!r}, dataset,
                  log=lambda _: None, progress=False)
        check()
        """
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "features, expected",
    [
        (("AVX2",), "none"),
        (("AVX-512", "AVX2"), "none"),
        (("AVX512-BF16", "AVX-512", "AVX2"), "bf16"),
        (("AMX-BF16", "AVX512-BF16", "AVX512-VNNI", "AVX-512", "AVX2"), "bf16"),
    ],
)
def test_auto_amp_is_bf16_only_where_the_cpu_has_native_bf16(monkeypatch, features, expected):
    monkeypatch.setattr(cpu, "features", lambda: features)
    amp, why = resolve_amp("auto", torch.device("cpu"))
    assert amp == expected and why.startswith("auto: ")
    assert resolve_amp("bf16", torch.device("cpu"))[0] == "bf16"  # asked for: kept
    assert resolve_amp("none", torch.device("cpu"))[0] == "none"


def test_features_are_read_from_cpuinfo_flags(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni amx_tile amx_bf16\n")
    real_path = cpu.Path
    monkeypatch.setattr(cpu, "Path", lambda p: cpuinfo if p == "/proc/cpuinfo" else real_path(p))
    cpu.features.cache_clear()
    try:
        assert cpu.features() == ("AMX-BF16", "AVX512-VNNI", "AVX-512", "AVX2")
    finally:
        cpu.features.cache_clear()


@pytest.mark.slow
def test_an_auto_amp_run_reports_what_it_used_and_keeps_auto_in_its_config(synthetic_data, monkeypatch, tmp_path):
    from fmnist import config, data, training
    from fmnist.config import Config

    monkeypatch.setattr(cpu, "features", lambda: ("AVX2",))
    cfg = Config(hidden=(16,), epochs=1, batch_size=50, val_size=0, amp="auto", device="cpu")
    result = training.fit(cfg, tmp_path, data.load(), log=lambda _: None, progress=False)
    assert result.summary["amp"] == "none" and result.summary["hardware"]["cpu_features"]
    assert config.resolve(tmp_path / "config.toml").amp == "auto"  # a resume asks for auto again


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_threads_as_given(restore_threads):
    assert cpu.AutoThreads("1").start() == "threads: 1 (--threads)"
    assert torch.get_num_threads() == 1


def test_auto_threads_leave_an_omp_num_threads_setting_alone(restore_threads, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert "OMP_NUM_THREADS=1" in cpu.AutoThreads("auto").start() and torch.get_num_threads() == 1


def test_auto_threads_take_the_cores_other_processes_leave_and_follow_the_load(restore_threads, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS")
    auto = cpu.AutoThreads("auto")
    auto.cores = [0, 1]
    # (busy ticks, all ticks, own CPU seconds, wall seconds) of the two cores, as /proc/stat would give them
    readings = iter(
        [
            (0, 0, 0.0, 0.0),
            (150, 200, 0.5, 1.0),  # 1.5 CPUs busy, 0.5 of them ours: another process holds 1 core
            (250, 400, 1.5, 2.0),  # then 1 CPU busy, all ours: nobody else
            (350, 600, 2.5, 3.0),  # the same
        ]
    )
    monkeypatch.setattr(auto, "_snapshot", lambda: next(readings))
    monkeypatch.setattr(cpu.time, "sleep", lambda _: None)
    assert auto.start() == "threads: 1 (auto: other processes kept 1.0 of 2 cores busy)"
    assert torch.get_num_threads() == 1
    assert auto.retune() == "threads: 2 (auto: other processes kept 0.0 of 2 cores busy)"
    assert torch.get_num_threads() == 2
    assert auto.retune() is None  # no change, nothing to say


def test_auto_threads_are_shared_among_local_processes(restore_threads, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS")
    auto = cpu.AutoThreads("auto", processes=2)
    auto.cores = [0, 1, 2, 3]
    readings = iter([(0, 0, 0.0, 0.0), (0, 400, 0.0, 1.0)])
    monkeypatch.setattr(auto, "_snapshot", lambda: next(readings))
    monkeypatch.setattr(cpu.time, "sleep", lambda _: None)
    auto.start()
    assert torch.get_num_threads() == 2


def _group(root, relative, **files):
    group = root.joinpath(*relative.split("/")) if relative else root
    group.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (group / name.replace("__", ".")).write_text(text)


def test_cpu_quota_is_the_smallest_cgroup_v2_limit_along_the_path(tmp_path):
    root, membership = tmp_path / "cgroup", tmp_path / "membership"
    membership.write_text("0::/kubepods/pod1/ctr\n")
    _group(root, "kubepods", cpu__max="400000 100000\n")
    _group(root, "kubepods/pod1/ctr", cpu__max="250000 100000\n")  # 2.5 CPUs: 2 whole ones
    assert cpu.cpu_quota(root, membership) == 2
    _group(root, "kubepods/pod1/ctr", cpu__max="max 100000\n")
    assert cpu.cpu_quota(root, membership) == 4  # the parent's limit holds
    _group(root, "kubepods", cpu__max="max 100000\n")
    assert cpu.cpu_quota(root, membership) is None
    _group(root, "kubepods/pod1/ctr", cpu__max="50000 100000\n")
    assert cpu.cpu_quota(root, membership) == 1  # half a CPU: one thread


def test_cpu_quota_reads_cgroup_v1_and_a_group_mounted_at_the_root(tmp_path):
    root, membership = tmp_path / "cgroup", tmp_path / "membership"
    # A container's view: its group, named by the host's path, is mounted at the controller's root.
    membership.write_text("5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n")
    _group(root, "cpu,cpuacct", cpu__cfs_quota_us="300000\n", cpu__cfs_period_us="100000\n")
    assert cpu.cpu_quota(root, membership) == 3
    _group(root, "cpu,cpuacct", cpu__cfs_quota_us="-1\n")
    assert cpu.cpu_quota(root, membership) is None
    membership.write_text("garbage\n")
    assert cpu.cpu_quota(root, membership) is None
    assert cpu.cpu_quota(root, tmp_path / "absent") is None


@pytest.mark.parametrize(
    ("line", "cpu_max"),
    [
        (b"0::relative\n", "200000 100000"),  # not a path under the mount
        (b"0::/..\n", "200000 100000"),  # outside the process's cgroup namespace
        (b"0::/g\n", "100000 0"),  # a zero period
        (b"0::/g\n", "-5 100000"),  # a negative quota
        (b"0::/g\n", "garbage"),
        (b"0::/g\n", ""),
        (b"0::/\xff\xfe\n", "200000 100000"),  # a group's name that is not UTF-8
    ],
)
def test_cpu_quota_of_odd_cgroup_files_is_none_never_an_error(tmp_path, line, cpu_max):
    root, membership = tmp_path / "cgroup", tmp_path / "membership"
    membership.write_bytes(line)
    _group(root, "g", cpu__max=cpu_max)
    assert cpu.cpu_quota(root, membership) is None


def test_auto_threads_stay_within_the_cpu_quota(restore_threads, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cpu, "cpu_quota", lambda: 2)
    monkeypatch.setattr(cpu.time, "sleep", lambda _: None)
    auto = cpu.AutoThreads("auto")
    auto.cores = list(range(8))
    readings = iter([(0, 0, 0.0, 0.0), (0, 800, 0.0, 1.0)])  # eight idle cores
    monkeypatch.setattr(auto, "_snapshot", lambda: next(readings))
    assert auto.start() == "threads: 2 (auto: other processes kept 0.0 of 8 cores busy, a CPU quota of 2)"
    assert torch.get_num_threads() == 2
    torch.set_num_threads(4)
    blind = cpu.AutoThreads("auto")
    monkeypatch.setattr(blind, "_snapshot", lambda: None)  # no /proc/stat
    assert blind.start() == "threads: 2 (auto: the control group's CPU quota of 2; no load figures here)"
    assert torch.get_num_threads() == 2


def test_usable_cpus_are_the_affinity_within_the_quota(monkeypatch):
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    monkeypatch.setattr(cpu, "cpu_quota", lambda: None)
    assert cpu.usable_cpus() == cores
    monkeypatch.setattr(cpu, "cpu_quota", lambda: 1)
    assert cpu.usable_cpus() == 1


def test_every_command_keeps_within_the_cpu_quota(restore_threads, monkeypatch):
    from fmnist.cli.entry import run_command

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cpu, "cpu_quota", lambda: 1)
    torch.set_num_threads(2)
    assert run_command(["predict", "no-such-run", "no-such-photo.png"]) != 0  # uses torch; stopped by its own error
    assert torch.get_num_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    torch.set_num_threads(2)
    cpu.within_quota()
    assert torch.get_num_threads() == 2  # the environment's setting stands
