"""The exported page (fmnist export --web) in headless Chromium: its size, the time to its first answer, and its
answers against `fmnist predict` on the same pictures.

    python benchmarks/web_page.py RUN_OR_CHECKPOINT [--int8] [--runs 5] [--tests 1000] [--photos 200]
        [--outliers-per-kind 10] [--out docs/results/web-page]

Exports the run into a temporary folder (fp32, or --int8) and serves it with `python -m http.server` on
127.0.0.1. Time to the first answer: in --runs fresh Chromium profiles (nothing cached), from the start of
the page's navigation to the first `fmnist.classify()` of a rendered photo resolved: the page, onnxruntime-web
and the model downloaded from this machine, the WebAssembly compiled, the model loaded, the photo fetched,
framed and classified; then a second photo in the same page. Answers: the class and the garment verdict of the
page against `fmnist predict RUN` (the Python API it calls) on the first --tests test images, --photos photos
rendered from the next test images, and --outliers-per-kind held-out non-garment pictures of each kind
(fmnist.testing.outliers). Prints Markdown tables and writes results.json under --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np

import fmnist
from fmnist import data, export, web
from fmnist.testing.browser import chromium, classify_in_page, picture_sets, static_server

FIRST_ANSWER = """
const [path, done] = arguments;
window.fmnist.classify(path).then(
  () => done(performance.now()),  // milliseconds since the navigation started
  (err) => done(String(err)));
"""
SECOND_ANSWER = """
const [path, done] = arguments;
const start = performance.now();
window.fmnist.classify(path).then(() => done(performance.now() - start), (err) => done(String(err)));
"""


def timings(site: Path, photos: list[str], runs: int, work: Path) -> dict[str, list[float]]:
    """Milliseconds to the first answer and to a second one, per fresh browser."""
    first, second = [], []
    with static_server(site) as url:
        for run in range(runs):
            browser = chromium(work / f"profile-{run}")
            try:
                browser.get(url)
                first.append(float(browser.execute_async_script(FIRST_ANSWER, photos[0])))
                second.append(float(browser.execute_async_script(SECOND_ANSWER, photos[1])))
            finally:
                browser.quit()
    return {"first_answer_ms": first, "second_answer_ms": second}


def agreement(site: Path, model: str, pictures: dict[str, list[str]], work: Path) -> dict[str, dict[str, float]]:
    """Per set: pictures, and the share with the class and the verdict of `fmnist predict MODEL`."""
    expected = fmnist.load(model)
    found = {}
    with static_server(site) as url:
        browser = chromium(work / "profile-answers")
        try:
            browser.get(url)
            for kind, paths in pictures.items():
                ours = classify_in_page(browser, paths)
                theirs = expected.predict([site / p for p in paths], top_k=1)
                found[kind] = {
                    "pictures": len(paths),
                    "same_class": float(np.mean([o[0] == t.class_index for o, t in zip(ours, theirs, strict=True)])),
                    "same_verdict": float(np.mean([o[1] == t.garment for o, t in zip(ours, theirs, strict=True)])),
                    "garments_python": int(sum(t.garment for t in theirs)),
                }
        finally:
            browser.quit()
    return found


def sizes(site: Path) -> dict[str, int]:
    """Bytes of the folder by part: the runtime, the model and its sidecar, the page and its scripts."""
    runtime = sum(p.stat().st_size for p in (site / "static" / "ort").iterdir())
    model = (site / web.MODEL_FILE).stat().st_size
    sidecar = (site / "model.json").stat().st_size
    total = web.bundle_bytes(site)
    return {"runtime": runtime, "model": model, "sidecar": sidecar, "page": total - runtime - model - sidecar}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a run directory or checkpoint")
    parser.add_argument("--int8", action="store_true")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tests", type=int, default=1000)
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--outliers-per-kind", type=int, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    dataset = data.load()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        facts = web.export_web(export.load_source(args.model), work / "site", dataset, int8=args.int8)
        site = work / "site"
        bundle = sizes(site)
        # Materials go beside the page after its size is taken.
        pictures = picture_sets(site, dataset.test_images, args.tests, args.photos, args.outliers_per_kind)
        times = timings(site, pictures["photos"], args.runs, work)
        answers = agreement(site, args.model, pictures, work)
    results = {"precision": facts["precision"], "bytes": bundle, **times, "answers": answers, "test": facts["test"]}
    print(f"{facts['precision']} page: {sum(bundle.values()) / 2**20:.1f} MiB " + str(bundle))
    median_first, median_second = (
        statistics.median(times["first_answer_ms"]),
        statistics.median(times["second_answer_ms"]),
    )
    print(
        f"first answer {median_first:.0f} ms (median of {args.runs}, {min(times['first_answer_ms']):.0f}-"
        f"{max(times['first_answer_ms']):.0f}); a second answer {median_second:.0f} ms"
    )
    print("| pictures | same class | same verdict |\n|---|---|---|")
    for kind, row in answers.items():
        print(f"| {row['pictures']:,} {kind} | {row['same_class']:.2%} | {row['same_verdict']:.2%} |")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"results-{facts['precision']}.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
