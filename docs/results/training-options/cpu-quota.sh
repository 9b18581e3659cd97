#!/bin/bash
# Three epochs of `fmnist train` in a control group allowed one CPU's time (cgroup v1's cpu controller:
# cfs_quota_us 100000 of a 100000 period), taking turns between a checkout of an earlier revision and this one,
# twice. Run as root on Linux with cgroup v1 mounted at /sys/fs/cgroup/cpu:
#   bash docs/results/training-options/cpu-quota.sh OLD_CHECKOUT_SRC
set -euo pipefail
group=/sys/fs/cgroup/cpu/fmnist-quota
mkdir -p "$group"
echo 100000 > "$group/cpu.cfs_quota_us"
trap 'rmdir "$group" 2>/dev/null || true' EXIT
echo "== $(date -u) $(lscpu | grep 'Model name' | sed 's/  */ /g'), $(nproc) vCPUs, quota 1 CPU"
for round in 1 2; do
  for side in before after; do
    src=$PWD/src; [ "$side" = before ] && src=$1
    out=$(mktemp -d)
    echo "== $side"
    (echo $BASHPID > "$group/cgroup.procs"; PYTHONPATH=$src python -m fmnist train --epochs 3 --out "$out/run" 2>&1) \
      | grep -E "^threads|^epoch|^training "
    rm -rf "$out"
  done
done
