"""The results of `fmnist bench` for people: a plain-text table, a throughput and latency plot, JSON."""

from __future__ import annotations

import json
import os

from fmnist import plots
from fmnist.atomic import atomic_write
from fmnist.records import BENCH_SERIES, BenchResult, TimingRow


def format_table(result: BenchResult) -> str:
    """The results as a plain-text table, hardware first."""
    hw, model, pipe = result["hardware"], result["model"], result["pipeline"]
    lines = [
        f"device {result['device']} | {hw['cpu']} | {hw['torch_threads']} threads | torch {hw['torch_version']}"
        + (f" | {hw['gpu']}" if "gpu" in hw else ""),
        f"model {model['name']} hidden={','.join(map(str, model['hidden']))} | {model['parameters']:,} parameters | "
        f"{model['forward_flops_per_image'] / 1e6:.2f} MFLOP forward, {model['training_flops_per_image'] / 1e6:.2f} "
        "MFLOP training step per image",
        f"matmul fp32 {_rates(hw['matmul_gflops_by_size'])} GFLOP/s (at the end {_rates(hw['matmul_gflops_at_end'])}); "
        f"the best ({hw['matmul_gflops']:.0f}) sets the limits: "
        f"{hw['inference_limit_images_per_second']:,.0f} img/s inference, "
        f"{hw['training_limit_images_per_second']:,.0f} img/s training",
        "",
        f"{'':<12} {'batch':>6} {'median ms':>10} {'p95 ms':>9} {'images/s':>11} {'of limit':>9} {'other CPUs':>10}",
    ]
    for kind, name, _, _ in BENCH_SERIES:
        for row in result[kind]:  # type: ignore[literal-required]
            lines.append(
                f"{name:<12} {row['batch_size']:>6} {row['latency_ms_median']:>10.3f} {row['latency_ms_p95']:>9.3f} "
                f"{row['images_per_second']:>11,.0f} {row['fraction_of_limit']:>9.1%} {_cpus(row['other_cpus']):>10}"
            )
    if result["inference_onnxruntime_int8"]:
        pairs = zip(result["inference"], result["inference_onnxruntime_int8"], strict=True)
        ratios = ", ".join(
            f"{int8['images_per_second'] / fp32['images_per_second']:.2f}x at batch {fp32['batch_size']}"
            for fp32, int8 in pairs
        )
        lines.append(f"onnxruntime int8 against PyTorch fp32 (images/s): {ratios}")
    steady = result["steady_state"]
    lines.append(
        f"steady: training from {steady['source']} "
        f"({steady['optimizer_denormal_fraction']:.2%} of the optimizer's state values denormal)"
    )
    scaled = f" (measured on {pipe['images_measured']:,} images, scaled)" if pipe["scaled"] else ""
    lines += [
        "",
        f"epoch of {pipe['scaled_to_images']:,} images at batch {pipe['batch_size']}{scaled}: "
        f"textbook {pipe['textbook_epoch_seconds']:.2f}s ({pipe['textbook_images_per_second']:,.0f} img/s), "
        f"fmnist {pipe['fmnist_epoch_seconds']:.2f}s ({pipe['fmnist_images_per_second']:,.0f} img/s): "
        f"{pipe['speedup']:.2f}x (other CPUs {_cpus(pipe['other_cpus']['textbook'])}, "
        f"{_cpus(pipe['other_cpus']['fmnist'])})",
        f"peak memory {result['peak_memory_bytes'] / 2**20:,.0f} MiB ({result['peak_memory_kind']})",
        f"other processes kept {_cpus(result['other_cpus'])} CPUs busy on average during the run "
        f"(of {result['hardware']['cpu_count']}; load average {result['load_average']['before']} -> "
        f"{result['load_average']['after']})",
    ]
    return "\n".join(lines)


def _rates(by_size: dict[str, float]) -> str:
    return ", ".join(f"{n}: {r:.0f}" for n, r in by_size.items())


def _cpus(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def write_json(result: BenchResult, path: str | os.PathLike) -> None:
    atomic_write(path, json.dumps(result, indent=2) + "\n")


def plot(result: BenchResult, path: str | os.PathLike) -> None:
    """Throughput and latency against batch size, inference and training, as a PNG."""
    fig = plots.new_figure((10, 4))
    rate_ax, latency_ax = fig.subplots(1, 2)
    for kind, _, name, marker in BENCH_SERIES:
        rows: list[TimingRow] = result[kind]  # type: ignore[literal-required]
        if not rows:
            continue
        batches = [r["batch_size"] for r in rows]
        (line,) = rate_ax.plot(batches, [r["images_per_second"] for r in rows], marker=marker, label=name)
        colour = line.get_color()
        latency_ax.plot(
            batches, [r["latency_ms_median"] for r in rows], marker=marker, color=colour, label=f"{name} median"
        )
        latency_ax.plot(
            batches,
            [r["latency_ms_p95"] for r in rows],
            marker=marker,
            color=colour,
            linestyle=":",
            alpha=0.6,
            label=f"{name} p95",
        )
    hw = result["hardware"]
    for key, label in (
        ("inference_limit_images_per_second", "fp32 inference limit"),
        ("training_limit_images_per_second", "fp32 training limit"),
    ):
        rate_ax.axhline(hw[key], color="gray", linestyle="--" if "inference" in key else ":", linewidth=1)
        rate_ax.annotate(label, (0.02, hw[key]), xycoords=("axes fraction", "data"), fontsize=7, va="bottom")
    rate_ax.set(title="Throughput", xlabel="batch size", ylabel="images/s", xscale="log", yscale="log")
    latency_ax.set(title="Latency per batch", xlabel="batch size", ylabel="ms", xscale="log", yscale="log")
    for ax in (rate_ax, latency_ax):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(
        f"{result['model']['name']} on {result['device']} ({hw['cpu']}, {hw['torch_threads']} threads, "
        f"torch {hw['torch_version']})",
        fontsize=9,
    )
    plots.save_png(fig, path)
