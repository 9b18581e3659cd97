"""distributed.py and fit() under several processes: gloo process groups on the CPU, in
spawned processes; what only a GPU can run is in test_cuda.py."""

from __future__ import annotations

import json
import os
import shutil
import socket
from contextlib import AbstractContextManager

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from fmnist import data, distributed, training
from fmnist.config import Config
from fmnist.errors import FmnistError

TIMINGS = ("epoch_seconds", "ms_per_batch", "images_per_second")


def test_world_comes_from_torchrun_variables(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.world() == distributed.World()
    monkeypatch.setenv("WORLD_SIZE", "1")
    one = distributed.world()
    assert one.launched and not one.active  # torchrun --nproc_per_node=1: a group of one
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.world() == distributed.World(rank=3, size=4, local_rank=1, launched=True)


def test_a_restartable_torchrun_sharing_its_store_is_warned_about():
    shared = {"TORCHELASTIC_MAX_RESTARTS": "3", "TORCHELASTIC_USE_AGENT_STORE": "True"}
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" in distributed.restart_hazard(shared)
    assert distributed.restart_hazard({**shared, "TORCHELASTIC_USE_AGENT_STORE": "False"}) is None
    assert distributed.restart_hazard({**shared, "TORCHELASTIC_MAX_RESTARTS": "0"}) is None
    assert distributed.restart_hazard({}) is None


def test_backend_and_the_device_its_collectives_need():
    w = distributed.World(rank=3, size=4, local_rank=1, launched=True)
    assert distributed.backend_for(torch.device("cuda", 1)) == "nccl"
    assert distributed.backend_for(torch.device("cpu")) == "gloo"
    # NCCL sends from this process's own GPU, never cuda:0 for every rank
    assert distributed.collective_device("nccl", w) == torch.device("cuda", 1)
    assert distributed.collective_device("gloo", w) == torch.device("cpu")


def test_a_rank_without_a_gpu_is_an_error():
    w = distributed.World(rank=0, size=2, local_rank=torch.cuda.device_count(), launched=True)
    with pytest.raises(FmnistError, match="has no GPU"):
        distributed.device_for(torch.device("cuda"), w)
    assert distributed.device_for(torch.device("cpu"), w) == torch.device("cpu")


def test_mps_cannot_join_a_process_group(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(FmnistError, match="no collectives for mps"):
        distributed.init(torch.device("mps"))


def bn_net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


def test_batch_norm_is_synchronised_on_gpus_and_per_process_on_cpus():
    on_gpu = distributed.sync_batch_norm(bn_net(), torch.device("cuda", 0))
    assert [type(m) for m in on_gpu.modules()].count(nn.SyncBatchNorm) == 1
    assert not any(isinstance(m, nn.BatchNorm1d) for m in on_gpu.modules())
    # SyncBatchNorm refuses CPU tensors in training, so CPU processes keep their own statistics
    on_cpu = distributed.sync_batch_norm(bn_net(), torch.device("cpu"))
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in on_cpu.modules())
    # same parameter and buffer names: checkpoints load either way
    assert on_gpu.state_dict().keys() == on_cpu.state_dict().keys()


def test_collectives_without_a_process_group_are_the_identity():
    w = distributed.World()
    values = torch.tensor([1.0, 2.0])
    assert distributed.all_reduce_sum(values, w) is values
    assert distributed.gather({"a": 1}, w) == [{"a": 1}]
    assert distributed.broadcast("x", w) == "x"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def join(rank: int, size: int, port: int) -> AbstractContextManager[distributed.World]:
    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(size), LOCAL_RANK=str(rank)
    )
    return distributed.group(torch.device("cpu"))


def worker(rank: int, size: int, port: int, dataset, cfg: Config, root: str) -> None:
    """One process group for both tests (each start costs seconds): first the collectives, written
    to root/RANK.json; then train `cfg` straight through in root/straight, where rank 0 copies the
    run directory as it stands after epoch 1 (what kill -9 during epoch 2 leaves), and both ranks
    resume the copy."""
    with join(rank, size, port) as w:
        total = distributed.all_reduce_sum(torch.tensor([rank + 1.0, 10.0]), w)
        with open(os.path.join(root, f"{rank}.json"), "w") as f:
            json.dump(
                {
                    "total": total.tolist(),
                    "device": str(total.device),
                    "gathered": distributed.gather(rank, w),
                    "shared": distributed.broadcast(f"from {rank}", w),
                    "backend": dist.get_backend(),
                },
                f,
            )

        def keep_epoch_one(row: dict) -> None:
            if row["epoch"] == 1:
                shutil.copytree(
                    os.path.join(root, "straight"),
                    os.path.join(root, "cut"),
                    ignore=shutil.ignore_patterns("tensorboard"),
                )

        training.fit(
            cfg, os.path.join(root, "straight"), dataset, log=lambda _: None, progress=False, on_epoch=keep_epoch_one
        )
        dist.barrier()
        training.fit(cfg, os.path.join(root, "cut"), dataset, resume=True, log=lambda _: None, progress=False)


def metrics(run_dir) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMINGS} for row in rows]


@pytest.mark.slow
def test_two_gloo_processes_collectives_and_exact_resume_with_each_ranks_random_states(synthetic_data, tmp_path):
    cfg = Config(
        hidden=(32,),
        val_size=0,
        epochs=3,
        batch_size=32,
        eval_batch_size=300,
        dropout=0.3,
        augment=("flip", "crop"),
        device="cpu",
    )
    mp.spawn(worker, args=(2, free_port(), data.load(), cfg, str(tmp_path)), nprocs=2)
    first, second = (json.loads((tmp_path / f"{r}.json").read_text()) for r in (0, 1))
    for result in (first, second):
        assert result["backend"] == "gloo" and result["device"] == "cpu"
        assert result["total"] == [3.0, 20.0] and result["shared"] == "from 0"
    assert first["gathered"] == [0, 1] and second["gathered"] is None

    straight = metrics(tmp_path / "straight")
    assert len(straight) == 3
    summary = json.loads((tmp_path / "straight" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["process_group"] == "gloo"
    assert metrics(tmp_path / "cut") == straight
    rng = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)["rng"]
    assert len(rng) == 2  # one entry per rank
    # each rank drew its own augmentations and dropout masks: seeded seed + rank
    assert not torch.equal(rng[0]["augment"], rng[1]["augment"])
    assert not torch.equal(rng[0]["torch"], rng[1]["torch"])
    assert torch.equal(rng[0]["data"], rng[1]["data"])  # one data order, sharded


def train_one_rank(rank: int, size: int, port: int, dataset, cfg: Config, root: str) -> None:
    with join(rank, size, port):
        training.fit(cfg, os.path.join(root, "run"), dataset, log=lambda _: None, progress=False)


@pytest.mark.slow
def test_batch_norm_trains_on_two_processes_whose_shards_end_in_a_one_image_batch(synthetic_data, tmp_path):
    # 34 images over 2 processes: shards of 17, local batches of 8, so each shard's last batch holds one image
    cfg = Config(
        hidden=(16,),
        val_size=0,
        batch_norm=True,
        train_subset=34,
        batch_size=16,
        epochs=1,
        eval_batch_size=300,
        device="cpu",
    )
    mp.spawn(train_one_rank, args=(2, free_port(), data.load(), cfg, str(tmp_path)), nprocs=2)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["epochs"] == 1
