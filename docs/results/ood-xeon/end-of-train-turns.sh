#!/bin/bash
# The end of `fmnist train` (test set, plots, the temperature and detector fit) with an empty reference cache:
# `fmnist train --epochs 1`, this checkout's code and git revision REV's taking turns, three each; prints each run's
# fit line and its whole-run line:
#   bash docs/results/ood-xeon/end-of-train-turns.sh REV
set -euo pipefail
here=$(git rev-parse --show-toplevel)
other=$(mktemp -d)
git -C "$here" worktree add -q -f "$other" "$1"
trap 'git -C "$here" worktree remove --force "$other"' EXIT
echo "== $(date -u) $(lscpu | grep 'Model name' | sed 's/  */ /g'), $(nproc) vCPUs"
for i in 1 2 3; do
  for src in "$here/src" "$other/src"; do
    out=$(mktemp -d)
    cache=$(mktemp -d)
    if [ "$src" = "$here/src" ]; then echo "this checkout:"; else echo "$1:"; fi
    XDG_CACHE_HOME=$cache PYTHONPATH=$src python -m fmnist train --epochs 1 --out "$out/run" 2>&1 | grep -E "fitted|whole run"
    rm -rf "$out" "$cache"
  done
done
