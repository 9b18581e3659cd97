"""A/B: training-step throughput of a cnn config with contiguous vs channels-last weights,
fp32 and bf16 autocast, interleaved rounds, medians. Behind the layout choice in models.cnn.

    python benchmarks/conv_layout.py [--preset cnn] [--rounds 5]
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from fmnist import config, presets, training


def images_per_second(cfg, layout: str, amp: str, steps: int = 20) -> float:
    st = training.build_step_state(cfg, torch.device("cpu"), steps + 3)
    model, optimizer = st.model, st.optimizer
    if layout == "contiguous":
        model.to(memory_format=torch.contiguous_format)  # in place: the optimizer keeps its parameters
    x, y = torch.rand(cfg.batch_size, 1, 28, 28), torch.randint(0, 10, (cfg.batch_size,))
    times = []
    for i in range(steps + 3):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp == "bf16"):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= 3:  # warm-up steps let oneDNN pick and cache its kernels
            times.append(time.perf_counter() - t)
    return cfg.batch_size / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cnn")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    cfg = config.from_dict(presets.load(args.preset))
    rates: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for layout in ("contiguous", "channels_last"):
            for amp in ("none", "bf16"):
                rates.setdefault((layout, amp), []).append(images_per_second(cfg, layout, amp))
    print(
        f"{args.preset}: hidden {cfg.hidden}, convs {cfg.convs}, head {cfg.head}, batch {cfg.batch_size}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}; median of {args.rounds} rounds"
    )
    for amp in ("none", "bf16"):
        a, b = (statistics.median(rates[(layout, amp)]) for layout in ("contiguous", "channels_last"))
        print(
            f"{'fp32' if amp == 'none' else 'bf16':>4}: contiguous {a:7,.0f} img/s   channels_last {b:7,.0f} img/s   "
            f"x{b / a:.2f}"
        )


if __name__ == "__main__":
    main()
