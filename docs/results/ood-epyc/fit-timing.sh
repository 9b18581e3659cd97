#!/bin/bash
# The detector's fit as `fmnist train` does it at its end, timed by `fmnist calibrate` on a copy of a run:
# three fits, the first with an empty reference cache, the next two reading it back.
#   bash docs/results/ood-epyc/fit-timing.sh RUN_DIR
set -euo pipefail
run=$(mktemp -d)
cp -r "$1"/. "$run"
export XDG_CACHE_HOME=$(mktemp -d)
echo "== $(date -u) $(lscpu | grep 'Model name' | sed 's/  */ /g'), $(nproc) vCPUs"
for i in 1 2 3; do fmnist calibrate "$run" 2>&1 | grep "fitted"; done
rm -rf "$run" "$XDG_CACHE_HOME"
