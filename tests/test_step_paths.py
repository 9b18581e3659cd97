"""Every code path that runs training steps, on the awkward sizes and options the config accepts.

fit() (and so `train`, tune's trials and compare's runs) cuts each epoch with training.batch_plan; the
callers that run a number of steps instead of epochs (lr-find, `train --profile`, the bench's training
rows and its pipeline epoch) cut theirs through training.StepStream, the same cut. Each case below is a
size where a careless cut leaves a 1-image batch under batch norm (a remainder of one, with or
without --accumulate), or has no full batch at all (a batch larger than the data)."""

import pytest
import torch

from fmnist import data, lr_find, training
from fmnist.bench import profiler, speed, textbook
from fmnist.config import Config
from fmnist.errors import FmnistError

# (values, why the size is awkward); val_size 0 so that train_subset is the training set's size.
CASES = {
    "remainder of one": dict(train_subset=129, batch_size=64),  # 2 x 64 + 1 (lr-find's 961 at 64, in small)
    "accumulate, remainder of one": dict(train_subset=257, batch_size=64, accumulate=2),  # 2 x 128 + 1
    "accumulate 3, odd batches": dict(train_subset=193, batch_size=32, accumulate=3),  # 6 x 32 + 1
    "batch larger than the data": dict(train_subset=40, batch_size=64),
    "two images": dict(train_subset=2, batch_size=64, accumulate=2),
}


def config(values: dict, model: str = "mlp") -> Config:
    return Config(
        model=model, hidden=(8,), head=4, batch_norm=True, val_size=0, epochs=1, eval_batch_size=500, **values
    )


def train_images(cfg: Config) -> tuple[torch.Tensor, torch.Tensor]:
    split = training.split_data(cfg, data.load(), torch.device("cpu"))
    return split.train_x, split.train_y


def run_lr_find(cfg, tmp_path):
    result = lr_find.lr_find(cfg, data.load(), start_lr=1e-4, end_lr=1.0, steps=12)
    assert len(result.lrs) >= 5


def run_profile(cfg, tmp_path):
    lines: list[str] = []
    path = profiler.profile_training(cfg, data.load(), tmp_path, warmup_steps=3, steps=5, log=lines.append)
    assert path.exists() and "training steps" in lines[0]


def run_bench_training_row(cfg, tmp_path):
    images, labels = train_images(cfg)
    plan = speed.Plan(warmup=1, min_repeats=3, min_seconds=0, training_chunk=256)
    seconds = speed._time_training(speed.step_state(cfg, images, None), images, labels, cfg, plan)
    assert len(seconds) >= 3 and all(s > 0 for s in seconds)


def run_bench_pipelines(cfg, tmp_path):
    small = data.load()
    n = cfg.train_subset
    subset = data.FashionMNIST(
        small.train_images[:n], small.train_labels[:n], small.test_images, small.test_labels, small.directory, "test"
    )
    result = textbook.compare_pipelines(cfg, subset, torch.device("cpu"), 60_000, cfg.batch_size)
    assert 0 < result["images_measured"] <= n


def run_fit(cfg, tmp_path):
    result = training.fit(cfg, tmp_path / "run", data.load(), log=lambda _: None, progress=False)
    assert result.summary is not None and result.summary["epochs"] == 1


PATHS = {
    "lr-find": run_lr_find,
    "train --profile": run_profile,
    "bench training row": run_bench_training_row,
    "bench pipelines": run_bench_pipelines,
    "train (and tune, compare)": run_fit,
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(
    "path", [pytest.param(p, marks=pytest.mark.slow) if p.startswith("train (") else p for p in PATHS]
)
def test_every_step_path_trains_batch_norm_on_awkward_sizes(synthetic_data, tmp_path, one_thread, path, case):
    PATHS[path](config(CASES[case]), tmp_path)


@pytest.mark.parametrize("path", ["lr-find", "train --profile", "bench training row", "train (and tune, compare)"])
def test_every_step_path_refuses_a_single_training_image_under_batch_norm(synthetic_data, tmp_path, path):
    with pytest.raises(FmnistError, match="batch norm needs at least 2 images per batch"):
        PATHS[path](config(dict(train_subset=1, batch_size=64)), tmp_path)


@pytest.mark.parametrize(("n", "batch", "accumulate"), [(961, 64, 1), (897, 64, 2), (5, 64, 3), (130, 8, 4)])
def test_step_stream_cuts_the_steps_fit_cuts_and_covers_every_image_each_epoch(n, batch, accumulate):
    cfg = Config(batch_size=batch, accumulate=accumulate, batch_norm=True)
    plan = training.step_plan(n, batch, accumulate)
    stream = training.StepStream(n, cfg, torch.Generator().manual_seed(0), torch.device("cpu"))
    for _ in range(2):  # two epochs, one step at a time
        seen = []
        for start, stop in plan:
            idx, taken = stream.take(1)
            assert taken == 1 and len(idx) == stop - start >= min(n, batch)
            seen.append(idx)
        assert sorted(torch.cat(seen).tolist()) == list(range(n))
    idx, taken = stream.take(10**6)  # never past the end of an epoch
    assert taken == len(plan) and len(idx) == n


def test_lr_find_through_the_cli_is_one_line_for_an_untrainable_config(synthetic_data, capsys):
    from fmnist import cli

    args = ["lr-find", "--batch-norm", "--train-subset", "1", "--val-size", "0", "--no-progress"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "batch norm needs at least 2 images" in err
