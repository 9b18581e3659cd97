"""A/B of training-step variants at the reference config's batch size, interleaved round by
round in one process in a new random order each round (so a busy machine, and whichever
variant ran just before, slow every variant alike), each from the same trained state (the
steady state a real run lives in). Prints each variant's median images/s and the median of
its per-round ratios to `fmnist`, the step fit() runs.

    python benchmarks/step_ab.py [--preset NAME] [--rounds 7] [--steps 50] [--threads N]
                                 [--variants fmnist,fresh,bare,foreach,no-schedule,compiled]

Variants: fmnist (training.train_one_epoch with fused Adam: the default); fresh (the same step
from a newly built, untrained model and optimizer every round: whether a trained state computes
slower); bare (the same model, optimizer and batches through only gather, forward, loss,
backward and optimizer step: no schedule, augmentation, loss/prediction buffers or non-finite
checks, so fmnist / bare is what fit()'s bookkeeping costs); foreach (Adam's multi-tensor
kernels instead of fused); no-schedule (a constant lr: what LambdaLR's per-step Python costs);
compiled (torch.compile of the model, forward and backward; its compile time is reported apart
and excluded); compiled-optimizer (compiled model and a compiled optimizer step).
"""

import argparse
import random
import statistics
import time
from typing import cast

import torch
import torch.nn.functional as F

from fmnist import config, cpu, data, presets, training
from fmnist.bench import speed
from fmnist.data import as_input
from fmnist.device import resolve_amp

VARIANTS = ("fmnist", "fresh", "bare", "foreach", "no-schedule", "compiled", "compiled-optimizer")


def build(
    name: str, cfg: config.Config, images: torch.Tensor, labels: torch.Tensor, trained: speed.Trained
) -> tuple[training.StepState, float]:
    """The variant's step state, loaded from `trained` (fresh: untrained), and the seconds its
    compilation took."""
    st = speed.step_state(cfg, images, None if name == "fresh" else trained)
    steps = len(images) // cfg.batch_size
    if name == "foreach":
        opt = type(st.optimizer)(st.model.parameters(), **{**st.optimizer.defaults, "fused": None, "foreach": True})
        opt.load_state_dict(trained.optimizer)
        st.optimizer, st.scheduler = opt, training.build_scheduler(opt, cfg, steps)
    if name == "no-schedule":
        st.scheduler = torch.optim.lr_scheduler.LambdaLR(st.optimizer, lambda _: 1.0)
        st.scheduler.step = lambda *_: None
    seconds = 0.0
    if name.startswith("compiled"):
        begin = time.perf_counter()
        st.model = cast(torch.nn.Module, torch.compile(st.model))
        if name == "compiled-optimizer":
            # A tensor lr: the schedule then updates it in place instead of changing a Python float,
            # which would recompile the step whenever the lr changes (PyTorch's compiled-optimizer recipe).
            for group in st.optimizer.param_groups:
                group["lr"] = torch.tensor(group["lr"])
            st.optimizer.step = torch.compile(st.optimizer.step)
        run(name, st, cfg, images, labels, 3)  # compiles
        seconds = time.perf_counter() - begin
    return st, seconds


def run(
    name: str, st: training.StepState, cfg: config.Config, images: torch.Tensor, labels: torch.Tensor, steps: int
) -> float:
    order = torch.randperm(len(images), generator=st.data_generator)[: steps * cfg.batch_size]
    start = time.perf_counter()
    if name == "bare":
        bf16 = resolve_amp(cfg.amp, torch.device("cpu"))[0] == "bf16"
        for idx in order.split(cfg.batch_size):
            x, y = as_input(images.index_select(0, idx)), labels.index_select(0, idx)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = st.model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            st.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            st.optimizer.step()
    else:
        training.train_one_epoch(st.model, st.optimizer, st.scheduler, images, labels, order, cfg, st.aug_generator)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=50, help="training steps per variant per round")
    parser.add_argument("--steady-epochs", type=int, default=2)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--variants", default="fmnist,fresh,bare,foreach,no-schedule,compiled")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu.flush_denormals()
    cfg = config.from_dict(presets.load(args.preset) if args.preset else {}).replace(device="cpu")
    names = args.variants.split(",")
    if "fmnist" not in names:
        parser.error("--variants must include fmnist: every ratio is to it")
    unknown = set(names) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    dataset = data.load()
    images, labels = dataset.train_images, dataset.train_labels
    trained = speed.train_steady_state(cfg, images, labels, args.steady_epochs)
    states = {name: build(name, cfg, images, labels, trained) for name in names}
    rates: dict[str, list[float]] = {name: [] for name in names}
    order = random.Random(0)
    for _ in range(args.rounds):
        for name in order.sample(names, len(names)):
            if name == "fresh":  # a new untrained model and optimizer every round
                states[name] = build(name, cfg, images, labels, trained)
            seconds = run(name, states[name][0], cfg, images, labels, args.steps)
            rates[name].append(args.steps * cfg.batch_size / seconds)
    base = rates["fmnist"]
    amp = resolve_amp(cfg.amp, torch.device("cpu"))[0]
    print(
        f"{cfg.model} hidden {cfg.hidden} batch {cfg.batch_size} amp {amp}"
        f" | {torch.get_num_threads()} threads | torch {torch.__version__}"
        f" | {args.rounds} rounds x {args.steps} steps"
        f" from {trained.source}"
    )
    for name in names:
        ratio = statistics.median(r / b for r, b in zip(rates[name], base, strict=True))
        compile_s = states[name][1]
        extra = f"  (compile {compile_s:.1f} s, excluded)" if compile_s else ""
        print(f"{name:>20}: {statistics.median(rates[name]):9,.0f} img/s  x{ratio:.2f} vs fmnist{extra}")


if __name__ == "__main__":
    main()
