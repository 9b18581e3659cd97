"""How many of a user's held-out photos the not-a-garment detector needs before they join its references
(trust.refit's MIN_DETECTOR_PHOTOS): for each shifted domain (fmnist.testing.domains) and each count, the
detector refitted with that many of the domain's photos, drawn --draws times, judged on fresh photos of the
domain (kept as garments) and on non-garment pictures (rejected).

    python benchmarks/refit_minimum.py RUN [--domains wood,cloth,dim,covered,opaque] [--counts 0,10,20,30,60,100]

The model is RUN's own (the parent of an adaptation; its logits give the energy cue, the pictures the
framing cues). The photos that may join are rendered from RUN's validation images, the fresh ones from test
images; the non-garments are fmnist.testing.outliers' "tune" part, so the count chosen here is never judged
on benchmarks/adapt.py's "holdout" non-garments. Count 0 is the detector of Fashion-MNIST photos alone.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch

from fmnist import data, trust
from fmnist.data import split_seed, validation_split
from fmnist.images import Framed, load_picture
from fmnist.inference import TorchPredictor
from fmnist.testing import domains, outliers
from fmnist.trust.cache import reference_photos


def rendered(domain: str, images: torch.Tensor, seed: int) -> list[Framed]:
    return [load_picture(p, f"{domain}-{i}") for i, p in enumerate(domains.render_many(images.numpy(), domain, seed))]


def share_garment(detector: trust.Trust, logits_of, pictures: list[Framed]) -> float:
    views = torch.stack([p.image for p in pictures])
    return float(np.mean(trust.judge(detector, logits_of(views), views, [p.cues for p in pictures]).garment))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--domains", default=",".join(domains.DOMAINS))
    parser.add_argument("--counts", default="0,10,20,30,60,100")
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--pool", type=int, default=200, help="domain photos rendered from validation images")
    parser.add_argument("--fresh", type=int, default=300, help="domain photos rendered from test images")
    parser.add_argument("--others-per-kind", type=int, default=20)
    args = parser.parse_args()
    dataset = data.load()
    predictor = TorchPredictor(args.run)
    logits_of = predictor.logits
    cfg = predictor.config
    _, val_idx = validation_split(dataset.train_labels, cfg)
    val_x = dataset.train_images[val_idx]
    gaussians = trust.gaussians_of(data.trained_on(dataset, cfg))
    references = reference_photos(val_x, trust.REFERENCE_PHOTOS, split_seed(cfg))
    others = [load_picture(o.data, o.kind) for o in outliers.build(args.others_per_kind, "tune")]
    counts = [int(c) for c in args.counts.split(",")]
    print(
        f"{args.draws} draws a count\n| domain | own photos | kept fresh: median | worst | "
        "non-garments rejected: median | worst |"
    )
    print("|---|---|---|---|---|---|")
    for domain in args.domains.split(","):
        pool = rendered(domain, val_x[-args.pool :], 3)
        fresh = rendered(domain, dataset.test_images[: args.fresh], 4)
        for count in counts:
            kept, rejected = [], []
            for draw in range(args.draws if count else 1):
                pick = torch.randperm(len(pool), generator=torch.Generator().manual_seed(draw))[:count].tolist()
                pictures = references + [pool[i] for i in pick]
                fields = trust.detector(logits_of, pictures, val_x, logits_of(val_x), gaussians)
                detector = trust.Trust(None, **fields)
                kept.append(share_garment(detector, logits_of, fresh))
                rejected.append(1 - share_garment(detector, logits_of, others))
            print(
                f"| {domain} | {count} | {100 * statistics.median(kept):.1f} | {100 * min(kept):.1f} | "
                f"{100 * statistics.median(rejected):.1f} | {100 * min(rejected):.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
