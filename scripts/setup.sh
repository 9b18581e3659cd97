#!/usr/bin/env bash
# Everything fmnist needs on a fresh Debian/Ubuntu machine: the real dataset from Debian's
# package (fmnist downloads it instead where apt cannot), headless Chromium for the browser
# test of the `fmnist serve` page, the PostgreSQL server that the shared-storage tune test
# starts a throwaway cluster of, a virtual environment in .venv, PyTorch and this package
# with its test tools. Safe to run again: apt runs only for what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || missing+=(dataset-fashion-mnist)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null; } \
    || echo "setup: could not install ${missing[*]}: without the data fmnist downloads it on first use;" \
            "without chromium or postgresql their tests skip" >&2
fi

python3 -m venv .venv
# Pinned first so that pip does not pick a newer, multi-GB build for the unpinned
# dependency; set TORCH_SPEC to choose another (e.g. a CUDA wheel index on a GPU machine).
.venv/bin/pip install -q --disable-pip-version-check "${TORCH_SPEC:-torch==2.13.0}"
.venv/bin/pip install -q --disable-pip-version-check -e ".[test]"
