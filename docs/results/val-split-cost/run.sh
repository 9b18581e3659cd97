cd "$(dirname "$0")/../../.."  # the repository root
mkdir -p "${OUT:-/tmp/val-split-cost}"
for s in 0 1 2; do
  rm -rf ${OUT:-/tmp/val-split-cost}/full$s ${OUT:-/tmp/val-split-cost}/val$s
  .venv/bin/fmnist train --seed $s --val-size 0 --no-progress --out ${OUT:-/tmp/val-split-cost}/full$s > ${OUT:-/tmp/val-split-cost}_full$s.log 2>&1
  .venv/bin/fmnist train --seed $s --val-size 5000 --no-progress --out ${OUT:-/tmp/val-split-cost}/val$s > ${OUT:-/tmp/val-split-cost}_val$s.log 2>&1
done
for s in 0 1 2; do for k in full val; do .venv/bin/python -c "
import json; s=json.load(open('${OUT:-/tmp/val-split-cost}/$k$s/summary.json')); print('$k', $s, round(100*s['test_accuracy'],2), s['chosen_by'], s['chosen_epoch'], round(s['wall_seconds'],1))"; done; done
