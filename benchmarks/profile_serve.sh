#!/usr/bin/env bash
# Profile fmnist serve under benchmarks/load.py at 32 clients: py-spy (pip install py-spy) samples the
# server for 15 s and writes collapsed stacks to OUT_DIR/serve.collapsed. 127.0.0.1 only.
cd "$(dirname "$0")/.."
export PATH=$PWD/.venv/bin:$PATH
RUN=${1:?usage: benchmarks/profile_serve.sh RUN_DIR_OR_CHECKPOINT [OUT_DIR]}; OUT=${2:-.}
python benchmarks/load.py --model mlp="$RUN" --clients 32 --requests 12000 --max-seconds 40 --no-baseline > $OUT/profile-load.txt 2>&1 &
LOAD=$!
for i in $(seq 1 40); do PID=$(pgrep -f "fmnist serve|fmnist.cli serve|-m fmnist serve" | head -1); [ -n "$PID" ] && break; sleep 0.5; done
echo "server pid $PID"; sleep 6
py-spy record -p "$PID" -d 15 -r 250 --format raw -o $OUT/serve.collapsed --nonblocking --gil > $OUT/pyspy.log 2>&1
wait $LOAD
