"""Headless Chromium for the pages' tests and benchmarks: Debian's `chromium` and `chromium-driver` driven by
Selenium (the `test` extra), a folder served by `python -m http.server` on 127.0.0.1, and pictures classified
in batches inside an exported page (`fmnist export --web`, window.fmnist.classifyMany)."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PNG = b"\x89PNG"  # a PNG file's first bytes
CHROMEDRIVER = shutil.which("chromedriver")
MISSING = "Chromium or its driver not found (bash scripts/setup.sh installs chromium and chromium-driver)"

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,900",
    # a test-pattern camera, allowed without asking
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
)


def chromium(profile: Path) -> Any:
    """A headless Chromium (selenium.webdriver.Chrome) with a fresh profile in `profile`; the caller quits it.
    Raises RuntimeError when Chromium or its driver is not installed."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (CHROMIUM and CHROMEDRIVER):
        raise RuntimeError(MISSING)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager never looks for (or downloads) one.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(300)
    return driver


@contextlib.contextmanager
def static_server(folder: Path) -> Iterator[str]:
    """`python -m http.server` serving `folder` on 127.0.0.1 at a free port: yields its URL ("http://.../")."""
    command = [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "-d", str(folder)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = server.stdout.readline() if server.stdout else ""
        found = re.search(r"port (\d+)", line)
        if not found:
            raise RuntimeError(f"python -m http.server did not start: {line!r}")
        yield f"http://127.0.0.1:{found.group(1)}/"
    finally:
        server.kill()
        server.wait(10)


# In the page: classify `paths` (URLs relative to it) 100 at a time; per picture [class_index, garment, probability].
_CLASSIFY_IN_BATCHES = """
const [paths, done] = arguments;
(async () => {
  const found = [];
  for (let i = 0; i < paths.length; i += 100) {
    const answers = await window.fmnist.classifyMany(paths.slice(i, i + 100));
    found.push(...answers.map((a) => [a.class_index, a.garment, a.probability]));
  }
  return found;
})().then(done, (err) => done(String(err)));
"""


def classify_in_page(driver: Any, paths: list[str]) -> list[tuple[int, bool, float]]:
    """(class_index, garment, probability) of each picture, classified by the exported page `driver` shows.
    Raises RuntimeError with the page's message when it fails."""
    found = driver.execute_async_script(_CLASSIFY_IN_BATCHES, paths)
    if not isinstance(found, list):
        raise RuntimeError(f"the page could not classify: {found}")
    return [(int(c), bool(g), float(p)) for c, g, p in found]


def picture_sets(
    folder: Path,
    test_images: Any,
    tests: int,
    photos: int,
    outliers_per_kind: int,
    seed: int = 1,
    photo_side: tuple[int, int] | None = None,
    per_surface: int = 0,
) -> dict[str, list[str]]:
    """Pictures written under `folder`/pictures for an exported page to classify, their paths relative to `folder`
    per set: "test", the first `tests` of `test_images` (uint8 [N, 28, 28]) as PNG; "photos", `photos` product
    photos rendered from the next ones (trust.references; their longer side drawn from `photo_side`, pixels,
    default references.LONGER_SIDE); "outliers", `outliers_per_kind` held-out non-garment pictures of each kind
    (fmnist.testing.outliers: needs scikit-image and scikit-learn); "surfaces", `per_surface` garments turned on each
    surface of fmnist.testing.surfaces, rendered from the images after the photos'."""
    import numpy as np
    from PIL import Image

    from fmnist.testing import outliers, surfaces
    from fmnist.trust.references import LONGER_SIDE, render_set

    (folder / "pictures").mkdir()
    sets: dict[str, list[str]] = {"test": [], "photos": [], "outliers": [], "surfaces": []}

    def write(kind: str, name: str, data: bytes | None = None) -> Path:
        sets[kind].append(f"pictures/{name}")
        path = folder / "pictures" / name
        if data is not None:
            path.write_bytes(data)
        return path

    for i, image in enumerate(test_images[:tests]):  # plain PNG files: test material needs no atomic writes
        Image.fromarray(np.asarray(image, dtype=np.uint8), "L").save(write("test", f"test-{i}.png"), format="PNG")
    for i, photo in enumerate(render_set(test_images[tests:], photos, seed, photo_side or LONGER_SIDE)):
        write("photos", f"photo-{i}{photo.suffix}", photo.data)
    for i, outlier in enumerate(outliers.build(outliers_per_kind, "holdout", seed)):
        write("outliers", f"outlier-{i}{outlier.suffix}", outlier.data)
    garments = np.asarray(test_images[tests + photos :], dtype=np.uint8)
    for k, kind in enumerate(surfaces.KINDS):
        chosen = garments[k * per_surface : (k + 1) * per_surface]
        for i, data in enumerate(surfaces.render_many(chosen, kind, seed)):
            write("surfaces", f"surface-{kind}-{i}{'.png' if data.startswith(PNG) else '.jpg'}", data)
    return sets
