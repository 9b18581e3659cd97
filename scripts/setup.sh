#!/usr/bin/env bash
# Everything fmnist needs on a fresh Debian/Ubuntu machine: the real dataset from Debian's
# package (fmnist downloads it instead where apt cannot), headless Chromium for the browser
# tests of the `fmnist serve` page and of `fmnist export --web`, Node.js and npm for
# onnxruntime-web (the web export's runtime) and the framing parity test, the PostgreSQL server
# that the shared-storage tune test starts a throwaway cluster of, a virtual environment in .venv,
# PyTorch and this package with its test tools. Safe to run again: apt and npm run only for what
# is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || missing+=(dataset-fashion-mnist)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null; } \
    || echo "setup: could not install ${missing[*]}: without the data fmnist downloads it on first use;" \
            "without chromium, node or postgresql their tests skip" >&2
fi

python3 -m venv .venv
# Pinned first so that pip does not pick a newer, multi-GB build for the unpinned
# dependency; set TORCH_SPEC to choose another (e.g. a CUDA wheel index on a GPU machine).
.venv/bin/pip install -q --disable-pip-version-check "${TORCH_SPEC:-torch==2.13.0}"
.venv/bin/pip install -q --disable-pip-version-check -e ".[test]"

# onnxruntime-web, pinned (fmnist.web.ORT_WEB_VERSION), from npm into the folder `fmnist export --web` copies
# it from (fmnist.web.runtime_dir): the files the page loads and the licence. npm's package carries none, so
# the licence is the one of the same project's Python package (microsoft/onnxruntime, MIT), already installed.
read -r ort_web_version ort_web_dir < <(.venv/bin/python -c \
  "from fmnist import web; print(web.ORT_WEB_VERSION, web.runtime_dir())")
if [ ! -f "$ort_web_dir/ort-wasm-simd-threaded.wasm" ] && command -v npm >/dev/null; then
  npm_tmp=$(mktemp -d)
  if npm install --prefix "$npm_tmp" --no-save --no-audit --no-fund --ignore-scripts --loglevel=error \
       "onnxruntime-web@$ort_web_version" >/dev/null; then
    mkdir -p "$ort_web_dir"
    for f in ort.wasm.min.js ort-wasm-simd-threaded.mjs ort-wasm-simd-threaded.wasm; do
      cp "$npm_tmp/node_modules/onnxruntime-web/dist/$f" "$ort_web_dir/"
    done
    cp "$(.venv/bin/python -c 'import onnxruntime, pathlib; print(pathlib.Path(onnxruntime.__file__).parent)')/LICENSE" \
       "$ort_web_dir/LICENSE"
  else
    echo "setup: could not install onnxruntime-web $ort_web_version with npm: fmnist export --web needs it" >&2
  fi
  rm -rf "$npm_tmp"
fi
