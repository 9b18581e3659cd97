#!/usr/bin/env bash
# One prepared check of fmnist on an NVIDIA GPU: the CUDA tests, `fmnist bench`, the default
# training run (process wall time, accuracy, peak memory), kill -9 and --resume, eval and
# predict, torchrun with NCCL, the cnn preset, compare with one worker per GPU (on two or more
# GPUs) and the speed options (bf16 autocast, TF32, torch.compile with CUDA graphs). Every step is time-boxed and recorded as pass, fail or
# skipped; the whole check keeps within --budget seconds (default 450: under 8 minutes).
#
#   scripts/gpu-check.sh [--out DIR] [--data-dir DIR] [--wheels DIR] [--budget SECONDS]
#                        [--cpu-accuracy FRACTION] [--dry-run]
#
# Writes DIR/summary.json, DIR/summary.md (the GPU named by nvidia-smi), DIR/bench.json and
# DIR/gpu-check.log. DIR defaults to $OUT when set, else ./gpu-check-out (ignored by git); a --dry-run
# without either writes into a new temporary directory, never into the checkout, and prints its path.
#
# Python: $PYTHON if set; else the first python3 on the PATH whose torch sees a GPU (the lent
# machines' image has torch with CUDA but no network); else scripts/setup.sh installs
# TORCH_SPEC (default: torch from PIP_INDEX_URL, default the PyTorch CUDA 12.8 wheel index)
# into .venv. Packages that python lacks come from --wheels DIR (pip --no-index), e.g. tomli-w,
# fetched beforehand with `pip download --no-deps --only-binary=:all: -d DIR tomli-w`.
# Data: --data-dir (or $FMNIST_DATA_DIR), else fmnist's usual search (which downloads).
# On a machine without network, bring both, e.g. in ignored folders of the checkout:
#   mkdir -p .gpu/data .gpu/whl && cp /usr/share/datasets/fashion-mnist/*.gz .gpu/data/
#   pip download --no-deps --only-binary=:all: -d .gpu/whl tomli-w
#   scripts/gpu-check.sh --data-dir .gpu/data --wheels .gpu/whl --cpu-accuracy ACC
# where ACC is the default run's test accuracy on the CPU (summary.json), for the ±0.3 point check.
#
# --dry-run: the same steps on the CPU at small sizes, so that the suite tests this script
# (tests/test_gpu_check.py); bench and the speed options are skipped there.
set -uo pipefail

dry_run=0
out_dir="${OUT:-}"
data_dir="${FMNIST_DATA_DIR:-}"
wheels=""
budget=450
cpu_accuracy=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --out) out_dir="$2"; shift ;;
    --data-dir) data_dir="$2"; shift ;;
    --wheels) wheels="$2"; shift ;;
    --budget) budget="$2"; shift ;;
    --cpu-accuracy) cpu_accuracy="$2"; shift ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "gpu-check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ -z "$out_dir" ] && [ "$dry_run" = 1 ]; then
  out_dir="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check-dry-run.XXXXXX")"
fi
out_dir="${out_dir:-gpu-check-out}"
mkdir -p "$out_dir"
out_dir="$(cd "$out_dir" && pwd)"
[ -n "$data_dir" ] && data_dir="$(realpath -m "$data_dir")"
[ -n "$wheels" ] && wheels="$(realpath -m "$wheels")"
cd "$(dirname "$0")/.."
work="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")"
log="$out_dir/gpu-check.log"
steps="$work/steps.jsonl"
: >"$log"
rm -f "$out_dir/bench.json" "$out_dir/summary.json" "$out_dir/summary.md"  # never report an earlier check
: >"$steps"
started=$(date +%s)
[ -n "$data_dir" ] && export FMNIST_DATA_DIR="$data_dir"
export PYTHONUNBUFFERED=1

slower=1  # step time limits are sized for the GPU machine
if [ "$dry_run" = 1 ]; then
  device=cpu
  slower=3  # one CPU thread, maybe a busy machine
  export OMP_NUM_THREADS=1
  small=(--train-subset 1000 --hidden 32 --batch-size 100 --eval-batch-size 2000 --val-size 0)
  default_run=("${small[@]}" --epochs 4)  # long enough to be killed after its first epoch
  cnn_run=(--preset cnn --train-subset 300 --epochs 1 --hidden 8 --head 16 --val-size 0)
  short_run=("${small[@]}" --epochs 1)
else
  device=cuda
  # All 60,000 training images, as the CPU figures the summary compares with (docs/RESULTS.md) were
  # measured, and no CPU-bound fitting of the temperature and detector inside the timed run.
  default_run=(--val-size 0)
  cnn_run=(--preset cnn --val-size 0)
  short_run=(--epochs 2 --val-size 0)
fi

# record NAME STATUS SECONDS NOTE: one line of steps.jsonl. The script exits 1 when any step
# failed or ran out of time.
record() {
  printf '{"name": "%s", "status": "%s", "seconds": %s, "note": "%s"}\n' "$1" "$2" "$3" "${4//\"/\'}" >>"$steps"
}

elapsed() { awk "BEGIN { printf \"%.2f\", $(date +%s.%N) - $1 }"; }

# Each background job in its own process group, so that a step that runs out of time is
# ended with all its children (torchrun's workers too).
set -m

# step NAME LIMIT COMMAND...: run a command or function time-boxed within the budget, log it,
# record its outcome
step() {
  local name="$1" limit=$(($2 * slower))
  shift 2
  local left=$((budget - ($(date +%s) - started)))
  if [ "$left" -lt 15 ]; then
    record "$name" fail 0 "not run: no time left in the ${budget}s budget"
    return 1
  fi
  [ "$limit" -gt "$left" ] && limit="$left"
  echo "=== $name (up to ${limit}s): $*" >>"$log"
  local t0 pid watchdog rc seconds
  t0=$(date +%s.%N)
  ("$@") >>"$log" 2>&1 </dev/null &
  pid=$!
  (sleep "$limit"; kill -TERM -- "-$pid"; sleep 5; kill -KILL -- "-$pid") >/dev/null 2>&1 &
  watchdog=$!
  wait "$pid"
  rc=$?
  kill -- "-$watchdog" 2>/dev/null
  wait "$watchdog" 2>/dev/null
  seconds=$(elapsed "$t0")
  echo "=== $name: exit $rc after ${seconds}s" >>"$log"
  if [ "$rc" = 0 ]; then
    record "$name" pass "$seconds" ""
  elif awk "BEGIN { exit !($seconds >= $limit) }"; then
    record "$name" fail "$seconds" "timed out after ${limit}s"
  else
    record "$name" fail "$seconds" "exit $rc (see gpu-check.log)"
  fi
  return "$rc"
}

skip() { record "$1" skipped 0 "$2"; }

# ---- Python with torch, and fmnist's dependencies ----------------------------------------
sees_gpu() { "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; }
py="${PYTHON:-}"
if [ -z "$py" ]; then
  if [ "$dry_run" = 1 ]; then
    py=python3
  elif sees_gpu python3; then
    py=python3
  fi
fi
if [ -n "$py" ]; then
  skip install "using $(command -v "$py" || echo "$py"): its torch is already there"
else
  export PIP_INDEX_URL="${PIP_INDEX_URL:-https://download.pytorch.org/whl/cu128}"
  export PIP_EXTRA_INDEX_URL="${PIP_EXTRA_INDEX_URL:-https://pypi.org/simple}"
  TORCH_SPEC="${TORCH_SPEC:-torch}" step install 300 scripts/setup.sh
  py=.venv/bin/python
fi
if [ -n "$wheels" ]; then
  step wheels 120 "$py" -m pip install -q --no-index --no-deps --no-compile --target "$work/site" "$wheels"/*.whl
  export PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
# fmnist's imports, and three test images for `predict`, named by their labels
prepare() {
  "$py" - "$work/images" <<'PY'
import sys
from pathlib import Path

import matplotlib, tomli_w, tqdm, torch.utils.tensorboard  # noqa: F401  what fmnist needs
from PIL import Image

from fmnist import cli, data  # noqa: F401

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
test = data.load()
for i in range(3):
    Image.fromarray(test.test_images[i].numpy(), mode="L").save(out / f"test{i}-label{int(test.test_labels[i])}.png")
PY
}
step prepare 60 prepare

fm() { "$py" -m fmnist "$@"; }

# process wall time of a training run, beside its run directory
timed_train() {
  local run="$1"
  shift
  local t0
  t0=$(date +%s.%N)
  fm train --device "$device" --out "$run" --no-progress "$@" || return $?
  elapsed "$t0" >"$run.wall"
}

# ---- the checks ----------------------------------------------------------------------------
# The tests in this process, without pyproject's pytest-xdist workers (that plugin may not be installed here).
if [ "$dry_run" = 1 ]; then
  step cuda-tests 120 "$py" -m pytest -q -o addopts=--strict-markers -p no:cacheprovider tests/test_cuda.py
  skip bench "dry run: fmnist bench has its own tests"
else
  CUBLAS_WORKSPACE_CONFIG=:4096:8 step cuda-tests 150 "$py" -m pytest -q -o addopts=--strict-markers -p no:cacheprovider tests/test_cuda.py tests/test_distributed.py
  step bench 200 fm bench --device "$device" --json "$out_dir/bench.json"
fi

# Deterministic cuBLAS reductions, so that kill -9 and --resume can reproduce this run exactly.
CUBLAS_WORKSPACE_CONFIG=:4096:8 step train-default 120 timed_train "$work/default" "${default_run[@]}"

kill_and_resume() {
  local run="$work/killed"
  fm train --device "$device" --out "$run" --no-progress "${default_run[@]}" &
  local pid=$!
  until [ -s "$run/metrics.jsonl" ] || ! kill -0 "$pid" 2>/dev/null; do sleep 0.02; done
  if ! kill -9 "$pid" 2>/dev/null; then
    echo "the run ended before it could be killed"
    return 1
  fi
  wait "$pid" 2>/dev/null
  wc -l <"$run/metrics.jsonl" >"$work/killed.epochs"
  echo "killed after $(cat "$work/killed.epochs") epoch(s); resuming"
  fm train --resume "$run" --device "$device" --no-progress
}
CUBLAS_WORKSPACE_CONFIG=:4096:8 step kill-resume 150 kill_and_resume

evaluate() { fm eval "$work/default" --device "$device" --json >"$work/eval.json"; }
classify() { fm predict "$work/default" "$work"/images/*.png --device "$device" --json >"$work/predict.jsonl"; }
step eval 60 evaluate
step predict 60 classify

step torchrun 120 "$py" -m torch.distributed.run --standalone --nproc_per_node=1 -m fmnist train \
  --device "$device" --out "$work/torchrun" --no-progress "${short_run[@]}"

step cnn 150 timed_train "$work/cnn" "${cnn_run[@]}"

# compare with one worker per GPU (CUDA_VISIBLE_DEVICES per worker): the GPUs that nvidia-smi saw
# running its workers' processes must be two or more.
multi_gpu() {
  fm compare --out "$work/multi-gpu" --grid lr=0.01,0.03 --seeds 0,1 --set epochs=2 --set val_size=5000 \
    --set device=cuda --workers-per-device 1 &
  local pid=$!
  : >"$work/gpu-apps"
  while kill -0 "$pid" 2>/dev/null; do
    nvidia-smi --query-compute-apps=gpu_uuid --format=csv,noheader >>"$work/gpu-apps" 2>/dev/null
    sleep 0.5
  done
  wait "$pid" || return $?
  local used
  used=$(sort -u "$work/gpu-apps" | grep -c .)
  echo "compare's workers ran on $used of $gpus GPUs"
  [ "$used" -ge 2 ]
}
gpus=0
[ "$dry_run" = 0 ] && gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
if [ "$dry_run" = 1 ]; then
  skip multi-gpu "dry run: tests/test_workers.py covers the placement of workers on GPUs"
elif [ "$gpus" -lt 2 ]; then
  skip multi-gpu "$gpus GPU(s): one worker per GPU needs two or more"
else
  step multi-gpu 150 multi_gpu
fi

if [ "$dry_run" = 1 ]; then
  skip amp-bf16 "dry run: tests/test_train.py covers bf16 autocast on the CPU"
  skip tf32 "dry run: TF32 is a CUDA setting"
  skip compile "dry run: inductor on a CPU takes minutes"
else
  step amp-bf16 90 timed_train "$work/amp-bf16" "${default_run[@]}" --amp bf16
  step tf32 90 timed_train "$work/tf32" "${default_run[@]}" --tf32
  step compile 180 timed_train "$work/compile" "${default_run[@]}" --compile reduce-overhead
fi

# ---- the summary ---------------------------------------------------------------------------
gpu="none (dry run on the CPU)"
if [ "$dry_run" = 0 ]; then
  gpu="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
  [ -n "$gpu" ] || gpu="unknown (nvidia-smi failed)"
fi
"$py" scripts/gpu_check_summary.py --work "$work" --out "$out_dir" --gpu "$gpu" --device "$device" \
  --dry-run "$dry_run" --cpu-accuracy "$cpu_accuracy" --python "$py" --seconds "$(($(date +%s) - started))"
status=$?
rm -rf "$work"
echo "gpu-check: results in $out_dir" >&2
exit "$status"
