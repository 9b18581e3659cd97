#!/usr/bin/env bash
# Everything fmnist needs on a fresh Debian/Ubuntu machine: the real dataset from Debian's
# package (fmnist downloads it instead where apt cannot), a virtual environment in .venv,
# PyTorch and this package with its test tools, and headless Chromium for the browser test
# of the `fmnist serve` page. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null; then
  { $sudo apt-get update -qq && $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null; } \
    || echo "setup: could not install dataset-fashion-mnist; fmnist will download the data on first use" >&2
fi

# Headless Chromium and its driver, for the browser test of the `fmnist serve` page.
if { ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; } && command -v apt-get >/dev/null; then
  { $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium chromium-driver >/dev/null; } \
    || echo "setup: could not install chromium and chromium-driver; the browser test will skip" >&2
fi

python3 -m venv .venv
# Pinned first so that pip does not pick a newer, multi-GB build for the unpinned
# dependency; set TORCH_SPEC to choose another (e.g. a CUDA wheel index on a GPU machine).
.venv/bin/pip install -q --disable-pip-version-check "${TORCH_SPEC:-torch==2.13.0}"
.venv/bin/pip install -q --disable-pip-version-check -e ".[test]"
