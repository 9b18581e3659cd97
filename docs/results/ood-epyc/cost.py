"""Median microseconds of Trust.scores per picture (batch 64, and one alone), for whichever fmnist is on PYTHONPATH.
main's detector (energy + framing cues) is timed on the same run with its references cut to those cues."""
import dataclasses, inspect, sys, time
import numpy as np, torch
import fmnist
from fmnist import data
from fmnist.images import Cues, load_picture
from fmnist.inference import TorchPredictor
from fmnist.trust.references import render_set
pred = TorchPredictor(sys.argv[1]); t = pred.trust
loaded = [load_picture(p.data) for p in render_set(data.load().test_images, 64, 7)]
views, cues = torch.stack([f.image for f in loaded]), [f.cues for f in loaded]
logits = pred.logits(views)
new = "images" in inspect.signature(t.scores).parameters
if not new:
    t = dataclasses.replace(t, references={k: v for k, v in t.references.items() if k in ("energy", *Cues.NAMES)})
call = (lambda n: t.scores(logits[:n], views[:n], cues[:n])) if new else (lambda n: t.scores(logits[:n], cues[:n]))
def med(n, reps=300):
    ts = []
    for _ in range(reps):
        s = time.perf_counter(); call(n); ts.append(time.perf_counter() - s)
    return 1e6 * float(np.median(ts))
print(f"{fmnist.__file__}: batch 64 {med(64) / 64:.1f} us/picture, batch 1 {med(1):.1f} us")
