#!/usr/bin/env bash
# Everything fmnist needs on a fresh Debian/Ubuntu machine: the real dataset from Debian's
# package (fmnist downloads it instead where apt cannot), the PostgreSQL server that the
# shared-storage tune test starts a throwaway cluster of, a virtual environment in .venv,
# PyTorch and this package with its test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  { $sudo apt-get update -qq && $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null; } \
    || echo "setup: could not install dataset-fashion-mnist; fmnist will download the data on first use" >&2
fi

if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
    && command -v apt-get >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  { $sudo apt-get update -qq && $sudo apt-get install -y -qq postgresql >/dev/null; } \
    || echo "setup: could not install postgresql; the PostgreSQL tune test will skip" >&2
fi

python3 -m venv .venv
# Pinned first so that pip does not pick a newer, multi-GB build for the unpinned
# dependency; set TORCH_SPEC to choose another (e.g. a CUDA wheel index on a GPU machine).
.venv/bin/pip install -q --disable-pip-version-check "${TORCH_SPEC:-torch==2.13.0}"
.venv/bin/pip install -q --disable-pip-version-check -e ".[test]"
