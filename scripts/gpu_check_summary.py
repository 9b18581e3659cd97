"""The summary of scripts/gpu-check.sh: reads its steps and run directories, writes summary.json
and summary.md (steps, figures, the issue's GPU targets). Called by that script only."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fmnist.atomic import atomic_write  # noqa: E402

TIMINGS = ("epoch_seconds", "ms_per_batch", "images_per_second")
RUNS = ("default", "cnn", "amp-bf16", "tf32", "compile", "torchrun")
GB = 1e9


def read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_lines(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def run_figures(work: Path, name: str) -> dict | None:
    summary = read_json(work / name / "summary.json")
    if summary is None:
        return None
    wall = work / f"{name}.wall"
    epochs = read_lines(work / name / "metrics.jsonl")
    return {
        "process_wall_seconds": float(wall.read_text()) if wall.exists() else None,
        "fit_wall_seconds": summary["wall_seconds"],
        "median_epoch_seconds": statistics.median(r["epoch_seconds"] for r in epochs) if epochs else None,
        "test_accuracy": summary["test_accuracy"],
        "peak_memory_bytes": summary["peak_memory_bytes"],
        "epochs": summary["epochs"],
        "train_ms_per_batch": summary["train_ms_per_batch"],
        "processes": summary.get("processes"),
        "process_group": summary.get("process_group"),
        "device": summary["device"],
        "torch_version": summary["torch_version"],
        "cuda_version": summary["hardware"].get("cuda_version"),
    }


def bench_figures(path: Path) -> dict | None:
    bench = read_json(path)
    if bench is None:
        return None
    best = max(bench["inference"], key=lambda r: r["images_per_second"])
    at64 = {kind: next((r for r in bench[kind] if r["batch_size"] == 64), None) for kind in ("inference", "training")}
    return {
        "inference_best_images_per_second": best["images_per_second"],
        "inference_best_batch": best["batch_size"],
        "inference_ms_per_batch_64": at64["inference"] and at64["inference"]["latency_ms_median"],
        "inference_images_per_second_64": at64["inference"] and at64["inference"]["images_per_second"],
        "training_ms_per_step_64": at64["training"] and at64["training"]["latency_ms_median"],
        "training_images_per_second_64": at64["training"] and at64["training"]["images_per_second"],
        "peak_memory_bytes": bench["peak_memory_bytes"],
        "textbook_epoch_seconds": bench["pipeline"]["textbook_epoch_seconds"],
        "fmnist_epoch_seconds": bench["pipeline"]["fmnist_epoch_seconds"],
    }


def resume_figures(work: Path) -> dict | None:
    """The killed-and-resumed run against the uninterrupted default run, epoch by epoch."""
    straight, resumed = read_lines(work / "default" / "metrics.jsonl"), read_lines(work / "killed" / "metrics.jsonl")
    if not straight or not resumed:
        return None
    strip = [[{k: v for k, v in r.items() if k not in TIMINGS} for r in rows] for rows in (straight, resumed)]
    killed_at = work / "killed.epochs"
    return {
        "epochs_before_kill": int(killed_at.read_text()) if killed_at.exists() else None,
        "identical": strip[0] == strip[1],
        "max_train_acc_difference": max(  # every epoch row has it (test_acc only with --test-curve)
            (abs(a["train_acc"] - b["train_acc"]) for a, b in zip(straight, resumed, strict=True)), default=None
        )
        if len(straight) == len(resumed)
        else None,
    }


def predict_figures(work: Path) -> dict | None:
    rows = read_lines(work / "predict.jsonl")
    if not rows:
        return None
    correct = sum(r.get("class_index") == int(Path(r["path"]).stem.split("label")[-1]) for r in rows)
    return {"images": len(rows), "correct": correct}


def targets(figures: dict, cpu_accuracy: float | None) -> list[dict]:
    """The issue's targets on the GPU; `met` is None where the figure is missing."""
    bench, default, cnn = figures.get("bench") or {}, figures.get("default") or {}, figures.get("cnn") or {}

    def check(text: str, value, ok) -> dict:
        return {"target": text, "value": value, "met": None if value is None else bool(ok(value))}

    rows = [
        check(
            "inference >= 2,000,000 images/s at the best batch size",
            bench.get("inference_best_images_per_second"),
            lambda v: v >= 2e6,
        ),
        check("inference <= 0.1 ms per batch of 64", bench.get("inference_ms_per_batch_64"), lambda v: v <= 0.1),
        check("default 15-epoch run <= 10 s process wall time", default.get("process_wall_seconds"), lambda v: v <= 10),
        check(
            "peak GPU memory of the default run <= 0.1 GB", default.get("peak_memory_bytes"), lambda v: v <= 0.1 * GB
        ),
        check("cnn preset >= 94 % test accuracy", cnn.get("test_accuracy"), lambda v: v >= 0.94),
        check("cnn preset <= 60 s process wall time", cnn.get("process_wall_seconds"), lambda v: v <= 60),
    ]
    difference = None
    if cpu_accuracy is not None and default.get("test_accuracy") is not None:
        difference = default["test_accuracy"] - cpu_accuracy
    rows.append(
        check(
            "default run accuracy within 0.3 point of the CPU's (--cpu-accuracy)", difference, lambda v: abs(v) <= 0.003
        )
    )
    return rows


def fmt(value, kind: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if kind == "pct":
        return f"{100 * value:.2f} %"
    if kind == "bytes":
        return f"{value / 2**20:,.1f} MiB"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def markdown(summary: dict) -> str:
    fig = summary["figures"]
    lines = [
        f"# fmnist GPU check: {summary['gpu']}",
        "",
        f"{summary['date']}, device {summary['device']}, torch {summary['torch_version']} "
        f"(CUDA {summary['cuda_version']}), python {summary['python']}, {summary['seconds']} s in all; "
        f"{summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped.",
    ]
    if summary["dry_run"]:
        lines += [
            "",
            "**Dry run on the CPU at small sizes: it tests this script; no figure here is a GPU figure "
            "and the targets do not apply.**",
        ]
    lines += ["", "| step | status | seconds | note |", "| --- | --- | --- | --- |"]
    lines += [f"| {s['name']} | {s['status']} | {s['seconds']:.1f} | {s['note']} |" for s in summary["steps"]]
    bench = fig.get("bench")
    if bench:
        lines += ["", "## fmnist bench", "", "| figure | value |", "| --- | --- |"]
        for key in (
            "inference_best_images_per_second",
            "inference_best_batch",
            "inference_ms_per_batch_64",
            "inference_images_per_second_64",
            "training_ms_per_step_64",
            "training_images_per_second_64",
            "textbook_epoch_seconds",
            "fmnist_epoch_seconds",
        ):
            lines.append(f"| {key} | {fmt(bench[key])} |")
        lines.append(f"| peak_memory_bytes | {fmt(bench['peak_memory_bytes'], 'bytes')} |")
    runs = [name for name in RUNS if fig.get(name)]
    if runs:
        lines += [
            "",
            "## Training runs",
            "",
            "| run | process wall s | fit wall s | median epoch s | ms/batch | test accuracy | peak memory | "
            "processes (group) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name in runs:
            r = fig[name]
            lines.append(
                f"| {name} | {fmt(r['process_wall_seconds'])} | {fmt(r['fit_wall_seconds'])} | "
                f"{fmt(r['median_epoch_seconds'])} | {fmt(r['train_ms_per_batch'])} | "
                f"{fmt(r['test_accuracy'], 'pct')} | "
                f"{fmt(r['peak_memory_bytes'], 'bytes')} | {r['processes']} ({r['process_group'] or 'none'}) |"
            )
    if fig.get("resume"):
        r = fig["resume"]
        lines += [
            "",
            f"kill -9 after {fmt(r['epochs_before_kill'])} epoch(s), then --resume: metrics identical to "
            f"the uninterrupted default run: {fmt(r['identical'])} (largest training accuracy difference "
            f"{fmt(r['max_train_acc_difference'])}).",
        ]
    if fig.get("eval"):
        lines += [
            "",
            f"eval on {summary['device']}: test accuracy {fmt(fig['eval']['test_accuracy'], 'pct')}, "
            f"same as the run's summary: {fmt(fig['eval']['matches_run'])}.",
        ]
    if fig.get("predict"):
        lines += ["", f"predict: {fig['predict']['correct']} of {fig['predict']['images']} test images right."]
    lines += ["", "## Targets", "", "| target | value | met |", "| --- | --- | --- |"]
    for t in summary["targets"]:
        value = t["value"]
        kind = "bytes" if "memory" in t["target"] else "pct" if "94 %" in t["target"] else ""
        lines.append(f"| {t['target']} | {fmt(value, kind)} | {fmt(t['met'])} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--gpu", required=True)
    p.add_argument("--device", required=True)
    p.add_argument("--dry-run", type=int, default=0)
    p.add_argument("--cpu-accuracy", default="")
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--seconds", type=int, default=0)
    args = p.parse_args()

    steps = read_lines(args.work / "steps.jsonl")
    figures: dict = {name: run_figures(args.work, name) for name in RUNS}
    figures["bench"] = bench_figures(args.out / "bench.json")
    figures["resume"] = resume_figures(args.work)
    figures["predict"] = predict_figures(args.work)
    evaluation = read_json(args.work / "eval.json")
    if evaluation and figures["default"]:
        figures["eval"] = {
            "test_accuracy": evaluation["test_accuracy"],
            "matches_run": abs(evaluation["test_accuracy"] - figures["default"]["test_accuracy"]) < 1e-9,
        }
    any_run = next((r for r in figures.values() if r and "torch_version" in r), {})
    summary = {
        "gpu": args.gpu,
        "device": args.device,
        "dry_run": bool(args.dry_run),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "python": args.python,
        "torch_version": any_run.get("torch_version"),
        "cuda_version": any_run.get("cuda_version"),
        "seconds": args.seconds,
        "passed": sum(s["status"] == "pass" for s in steps),
        "failed": sum(s["status"] == "fail" for s in steps),
        "skipped": sum(s["status"] == "skipped" for s in steps),
        "steps": steps,
        "figures": figures,
        "targets": targets(figures, float(args.cpu_accuracy) if args.cpu_accuracy else None),
    }
    atomic_write(args.out / "summary.json", json.dumps(summary, indent=2) + "\n")
    text = markdown(summary)
    atomic_write(args.out / "summary.md", text)
    print(text, end="")
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
