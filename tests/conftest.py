"""The fixtures every test module may ask for: the synthetic dataset, the real data, one torch thread.
Helpers that tests import live in support.py."""

from __future__ import annotations

import collections
import os
from pathlib import Path

import pytest
from support import PlotRecorder, write_synthetic

from fmnist import data
from fmnist.errors import FmnistError


def pytest_configure(config):
    """Under pytest-xdist (pyproject's addopts: two workers on a 2-CPU machine) each worker's torch, and the
    processes its tests start, use one thread: two workers of two threads each would fight over the cores."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist, the modules with the most tests marked slow run first (each module's tests in their
    order; pyproject's --no-loadscope-reorder keeps this order): the modules handed out last are the quick ones,
    so that neither worker is left alone at the end with a long module."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        slow = collections.Counter(item.path for item in items if item.get_closest_marker("slow"))
        items.sort(key=lambda item: (-slow[item.path], str(item.path)))


@pytest.fixture
def synthetic_data(tmp_path, monkeypatch) -> Path:
    """Directory of the synthetic dataset; data.FILES pins its digests, FMNIST_DATA_DIR points
    at it and the cache lives under tmp_path."""
    directory = tmp_path / "synthetic"
    monkeypatch.setattr(data, "FILES", write_synthetic(directory))
    monkeypatch.setenv("FMNIST_DATA_DIR", str(directory))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return directory


@pytest.fixture
def record_plots(monkeypatch) -> PlotRecorder:
    """fit()'s run plots recorded, not drawn (support.PlotRecorder), in this test."""
    from fmnist import plots

    recorder = PlotRecorder()
    monkeypatch.setattr(plots, "write_run_plots", recorder)
    return recorder


@pytest.fixture
def real_data_dir() -> Path:
    """Directory of the real Fashion-MNIST files; skips the test when there is none."""
    try:
        found = data.locate()
    except FmnistError as e:
        pytest.skip(f"real Fashion-MNIST unavailable: {e}")
    if found is None:
        pytest.skip("real Fashion-MNIST not found (apt-get install dataset-fashion-mnist)")
    return found[0]


@pytest.fixture(autouse=True)
def steady_threads(monkeypatch):
    """fit()'s default threads = "auto" leaves an OMP_NUM_THREADS in the environment as it is: without
    this, each fit would pick its thread count from the machine's load of the moment, and two runs
    meant to be identical could differ in the last bits of a reduction."""
    import torch

    monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))


@pytest.fixture
def one_thread():
    """Tiny models: one torch thread is several times faster than two fighting a busy CPU."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def trust_cache(tmp_path_factory, monkeypatch):
    """The detector's framed reference photos (fmnist.trust.cache) are kept in one folder of this session, never
    in the user's cache; fits of the same images in several tests render them once."""
    folder = tmp_path_factory.getbasetemp() / "cache"
    monkeypatch.setattr("fmnist.trust.cache.cache_dir", lambda: folder)
