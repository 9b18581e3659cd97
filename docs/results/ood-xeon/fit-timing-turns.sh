#!/bin/bash
# Cold fits of a run's detector as `fmnist train` does it at its end (`fmnist calibrate` on a copy of the run, an
# empty reference cache each time), this checkout's code and git revision REV's taking turns, three each:
#   bash docs/results/ood-xeon/fit-timing-turns.sh RUN_DIR REV
# With `train` (RUN_DIR unused): the whole end of `fmnist train --epochs 1` instead (test set, plots, fit), its fit line
# and its whole-run line:
#   bash docs/results/ood-xeon/fit-timing-turns.sh - REV train
set -euo pipefail
here=$(git rev-parse --show-toplevel)
other=$(mktemp -d)
git -C "$here" worktree add -q -f "$other" "$2"
trap 'git -C "$here" worktree remove --force "$other"' EXIT
echo "== $(date -u) $(lscpu | grep 'Model name' | sed 's/  */ /g'), $(nproc) vCPUs"
for i in 1 2 3; do
  for src in "$here/src" "$other/src"; do
    run=$(mktemp -d)
    cache=$(mktemp -d)
    if [ "$src" = "$here/src" ]; then echo -n "this checkout: "; else echo -n "$2: "; fi
    if [ "${3:-}" = "train" ]; then
      echo
      XDG_CACHE_HOME=$cache PYTHONPATH=$src python -m fmnist train --epochs 1 --out "$run/run" 2>&1 |
        grep -E "fitted|whole run"
    else
      cp -r "$1"/. "$run"
      XDG_CACHE_HOME=$cache PYTHONPATH=$src python -m fmnist calibrate "$run" 2>&1 | grep "fitted"
    fi
    rm -rf "$run" "$cache"
  done
done
