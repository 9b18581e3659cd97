#!/bin/bash
# Scoring cost, main before this work (009fc87's trust, checked out at /tmp/det/before) against the landed code, alternating;
# then the fit (fmnist calibrate) three times, cache cold then warm.
cd /tmp/det/snap3
echo "== $(date -u) $(lscpu | grep 'Model name' | sed 's/  */ /g'), $(nproc) vCPUs"
for i in 1 2; do for tree in /tmp/det/before /tmp/det/snap3; do PYTHONPATH=$tree/src .venv/bin/python /tmp/det/cost.py /tmp/det/run; done; done
export PYTHONPATH=/tmp/det/snap3/src XDG_CACHE_HOME=/tmp/det/coldcache2
rm -rf /tmp/det/coldcache2
for i in 1 2 3; do .venv/bin/python -m fmnist calibrate /tmp/det/run 2>&1 | grep "fitted"; done
cd /tmp/det/snap3 && timeout 300 .venv/bin/python -m pytest -q -p no:cacheprovider -m slow tests/test_trust.py tests/test_export.py -x 2>&1 | tail -2
