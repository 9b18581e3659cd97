import numpy as np
import pytest
import torch
from PIL import Image

from fmnist.trust import ood


def test_p_values_are_conformal_ranks_in_the_unusual_direction():
    reference = np.arange(1.0, 10.0)  # 1..9
    assert ood.p_values(np.array([0.0]), reference, "low")[0] == pytest.approx(1 / 10)
    assert ood.p_values(np.array([9.0]), reference, "low")[0] == pytest.approx(1.0)
    assert ood.p_values(np.array([9.5]), reference, "high")[0] == pytest.approx(1 / 10)
    assert ood.p_values(np.array([5.0]), reference, "both")[0] == pytest.approx(1.0)
    assert ood.p_values(np.array([0.0]), reference, "both")[0] == pytest.approx(2 / 10)
    assert ood.p_values(np.array([np.nan]), reference, "both")[0] == 1.0  # no cue: no evidence


def test_scoring_the_reference_itself_leaves_each_value_out():
    reference = np.arange(1.0, 10.0)
    assert ood.p_values(np.array([1.0]), reference, "low", itself=True)[0] == pytest.approx(1 / 10)
    assert ood.p_values(np.array([1.0]), reference, "low")[0] == pytest.approx(2 / 10)


def test_combined_score_is_the_most_unusual_cue():
    refs = {"energy": np.arange(10.0), "coverage": np.linspace(0.2, 0.6, 10)}
    cues = {"energy": np.array([9.0, -5.0]), "coverage": np.array([0.4, 0.4])}
    score = ood.combined(cues, refs)
    assert score[0] > 0.5 and score[1] == pytest.approx(1 / 11)


def test_the_second_smallest_p_value_counts_under_the_gate_in_proportion():
    rng = np.random.default_rng(0)
    refs = {name: np.sort(rng.normal(size=50)) for name in ("energy", "span", "residual")}
    cues = {name: rng.normal(0, 2, 200) for name in refs}
    ps = ood.p_value_table(cues, refs)
    product, smallest = ps[0] * ps[1] * ps[2], np.sort(ps, 0)
    alone = smallest[0] + ood.TIE_BREAK * product
    assert np.array_equal(ood.unusualness(cues, refs), alone)  # no gate: as detectors fitted before it
    gated = ood.unusualness(cues, refs, gate=0.1)
    assert np.array_equal(gated, alone * np.minimum(1, smallest[1] / 0.1))
    assert np.array_equal(gated[smallest[1] >= 0.1], alone[smallest[1] >= 0.1])
    assert (gated[smallest[1] < 0.1] < alone[smallest[1] < 0.1]).all() and (smallest[1] < 0.1).sum() > 10
    one = {"energy": refs["energy"]}
    assert np.array_equal(ood.unusualness(cues, one, gate=0.1), ood.unusualness(cues, one))  # one cue: no second


def test_the_second_smallest_p_value_tells_two_cues_far_out_from_one():
    # Ten cues on 400 garment photos; pictures beyond every garment in one cue and typical in the others, but the
    # second, past 99.5 % of the garments in one more, and the third, a little low in one more. The smallest
    # p-value alone scores them the same. With the gate (the default) the second is the most unusual there is,
    # while the first and the third stay as unusual as the smallest p-value made them; the two smallest multiplied
    # whatever the second (a gate of 1) would pass the first and the third.
    rng = np.random.default_rng(0)
    names = ["energy", "span", "ink", "stroke", "flat", "residual", "coarse", "border_fit", "coverage", "fill"]
    photos = {name: rng.normal(size=400) for name in names}
    pictures = {name: np.full(3, np.median(photos[name])) for name in names}
    pictures["coarse"] = np.array([10.0, 10.0, 10.0])
    pictures["residual"] = np.array([0.0, np.quantile(photos["residual"], 0.995), 0.0])
    pictures["energy"][2] = np.quantile(photos["energy"], 0.1)  # a little low in a third: not unusual

    def scores(gate: float | None) -> np.ndarray:
        fitted = ood.fitted(photos, photos, names) if gate is None else ood.fitted(photos, photos, names, gate=gate)
        refs, plain, held_out = fitted["references"], fitted["plain"], fitted["held_out"]
        return ood.calibrated(pictures, np.ones(3, bool), refs, plain, held_out, fitted["gate"])  # type: ignore[arg-type]

    alone = scores(0.0)
    assert alone[0] == alone[1]
    assert ood.fitted(photos, photos, names)["gate"] == ood.GATE > 0
    gated, product = scores(None), scores(1.0)
    assert gated[1] == gated.min() < 1 - ood.KEEP and gated[1] < alone[1] / 4
    assert gated[0] == gated[2] < alone[0] * 1.25
    assert product[0] >= 1 - ood.KEEP and product[2] >= 1 - ood.KEEP


def test_a_picture_smooth_and_usual_in_every_other_cue_stays_a_garment(monkeypatch):
    # References on three cues; a picture below every reference in sharpness alone (a garment photographed out of
    # focus, a product photo framed as a digital image), one low in sharpness and beyond every garment in the
    # energy (an 8x8 digit enlarged), one beyond them in the energy alone, and one beyond them in both; as plain
    # images and as photos.
    rng = np.random.default_rng(0)
    names = ["energy", "span", "sharpness"]
    plain = {name: rng.normal(size=1000) for name in names}
    fitted = ood.fitted(plain, plain, names)
    refs, held_out = fitted["plain"], fitted["held_out"]
    pictures = {
        "energy": np.array([0.0, -3.0, -9.0, -9.0]),
        "span": np.zeros(4),
        "sharpness": np.array([-9.0, -2.5, 0, -9]),
    }
    for photo in (False, True):
        scores = ood.calibrated(
            pictures,
            np.full(4, photo),
            fitted["references"],
            refs,
            held_out,
            ood.GATE,  # type: ignore[arg-type]
        )
        assert scores[0] > 0.5  # smooth alone: as usual as its other cues
        assert scores[1] < 1 - ood.KEEP < scores[0]  # the energy's tail, with the sharpness as its second
        assert scores[3] <= scores[2]
    # As the first cue like any other, the sharpness alone would reject the first.
    monkeypatch.setattr(ood, "SECOND_ONLY", ())
    as_first = ood.unusualness({n: v[:1] for n, v in pictures.items()}, refs, gate=ood.GATE)
    assert as_first[0] < np.quantile(held_out["plain"], 1 - ood.KEEP)


@pytest.mark.parametrize("gate", [0.0, ood.GATE, 1.0])
def test_the_calibrated_score_keeps_its_share_of_fresh_pictures_of_each_kind(gate):
    # Photos with nine cues (400 references, each scored against the others) and plain images with four (split
    # in two halves): whatever the number of cues, a threshold t keeps about 1 - t of fresh pictures of the kind,
    # though the smallest of nine p-values on a grid of 1/401 ties for 4 % of them (the product breaks the ties),
    # whether the second smallest p-value counts never, under the gate or always.
    rng = np.random.default_rng(0)
    names = ["energy", *ood.VIEW_CUES, *ood.Cues.NAMES]
    plain_names = names[: 1 + len(ood.VIEW_CUES)]
    kept = {"photo": [], "plain": []}
    for _ in range(20):
        photos = {name: rng.normal(size=400) for name in names}
        refs = {name: np.sort(v) for name, v in photos.items()}
        plain = {name: np.sort(rng.normal(size=1000)) for name in plain_names}
        held_out = {
            "photo": np.sort(ood.unusualness(photos, refs, True, gate)),
            "plain": np.sort(
                ood.unusualness({name: rng.normal(size=1000) for name in plain_names}, plain, False, gate)
            ),
        }
        fresh = {name: rng.normal(size=4000) for name in names}
        for kind, is_photo in (("photo", True), ("plain", False)):
            scores = ood.calibrated(fresh, np.full(4000, is_photo), refs, plain, held_out, gate)
            kept[kind].append(float((scores >= 1 - ood.KEEP).mean()))
    for shares in kept.values():
        assert abs(np.median(shares) - ood.KEEP) < 0.006 and min(shares) > ood.KEEP - 0.03, sorted(shares)


def test_a_reference_photo_without_picture_cues_changes_nothing_of_the_others():
    # A rendered reference photo that the framing takes for a digital image has no picture cues (NaN): predict
    # scores such a picture as a plain image, so the detector must be the one fitted without it.
    rng = np.random.default_rng(1)
    names = ["energy", "span", *ood.Cues.NAMES]
    photos = {name: rng.normal(size=400) for name in names}
    plain = {name: rng.normal(size=1000) for name in names[:2]}
    with_missing = {name: v.copy() for name, v in photos.items()}
    for name in ood.Cues.NAMES:
        with_missing[name][:7] = np.nan
    without = {name: v[7:] for name, v in photos.items()}
    fitted, expected = ood.fitted(with_missing, plain, names), ood.fitted(without, plain, names)
    for name in names:
        np.testing.assert_array_equal(fitted["references"][name], expected["references"][name])
    np.testing.assert_array_equal(fitted["held_out"]["photo"], expected["held_out"]["photo"])
    held_out = fitted["held_out"]["photo"]
    assert held_out.min() > 0  # a p-value, never below its grid
    fresh = {name: rng.normal(size=4000) for name in names}
    scores = ood.calibrated(
        fresh, np.ones(4000, bool), fitted["references"], fitted["plain"], fitted["held_out"], fitted["gate"]
    )
    assert abs(float((scores >= 1 - ood.KEEP).mean()) - ood.KEEP) < 0.02


def test_a_picture_on_a_textured_surface_is_judged_by_its_object_not_by_its_surface():
    from fmnist.images import SURFACE_NOISE, Cues

    backdrop = Cues(border_fit=0.97, noise=1.0, coverage=0.3, fill=0.6, largest_part=1.0)
    table = Cues(border_fit=0.2, noise=SURFACE_NOISE + 4, coverage=0.3, fill=0.6, largest_part=1.0, textured=True)
    values = ood.picture_cues([backdrop, table, None])
    for name in ood.Cues.NAMES:
        assert not np.isnan(values[name][0]) and np.isnan(values[name][2])
        assert np.isnan(values[name][1]) == (name in ood.SURFACE_CUES)
    judged = ood.picture_cues([table], judge_surface=True)
    assert judged["border_fit"][0] == 0.2 and judged["noise"][0] == SURFACE_NOISE + 4
    # Against references on plain backdrops, the table's border is far out; the garment on it scores as its object.
    rng = np.random.default_rng(2)
    names = ["energy", *ood.Cues.NAMES]
    photos = {name: rng.normal(size=400) for name in names}
    photos.update(
        border_fit=rng.uniform(0.9, 1.0, 400), noise=rng.uniform(0.5, 3.0, 400), coverage=rng.uniform(0.1, 0.6, 400)
    )
    fitted = ood.fitted(photos, {"energy": rng.normal(size=1000)}, names)
    on_table = {"energy": np.zeros(2), **ood.picture_cues([table, backdrop])}
    scores = ood.calibrated(
        on_table, np.ones(2, bool), fitted["references"], fitted["plain"], fitted["held_out"], fitted["gate"]
    )
    assert scores[0] >= 1 - ood.KEEP and scores[1] >= 1 - ood.KEEP
    surface_judged = {"energy": np.zeros(1), **ood.picture_cues([table], judge_surface=True)}
    judged_score = ood.calibrated(
        surface_judged,
        np.ones(1, bool),
        fitted["references"],
        fitted["plain"],
        fitted["held_out"],
        fitted["gate"],
    )
    assert judged_score[0] < 1 - ood.KEEP


@pytest.mark.parametrize("gate", [0.0, ood.GATE])
def test_photos_on_a_textured_surface_are_calibrated_on_the_cues_they_are_judged_on(gate):
    # Judged on fewer cues, a photo's smallest p-values are larger: ranked among product photos judged on all
    # cues, garments on a table would pass more often than KEEP says. Their own calibration keeps KEEP of them.
    rng = np.random.default_rng(4)
    names = ["energy", "span", *ood.Cues.NAMES]
    plain = {name: rng.normal(size=1000) for name in names[:2]}
    fitted = ood.fitted({name: rng.normal(size=400) for name in names}, plain, names, gate=gate)
    fresh = {name: rng.normal(size=20_000) for name in names}
    fresh.update(dict.fromkeys(ood.SURFACE_CUES, np.full(20_000, np.nan)))
    photo = np.ones(20_000, bool)
    scores = ood.calibrated(fresh, photo, fitted["references"], fitted["plain"], fitted["held_out"], fitted["gate"])
    kept = float((scores >= 1 - ood.KEEP).mean())
    assert abs(kept - ood.KEEP) < 0.01
    as_products = {kind: v for kind, v in fitted["held_out"].items() if kind != "textured"}
    loose = ood.calibrated(fresh, photo, fitted["references"], fitted["plain"], as_products, fitted["gate"])
    assert float((loose >= 1 - ood.KEEP).mean()) > kept + 0.005


def test_a_detector_fitted_before_the_textured_kind_still_judges_the_surface():
    # A detector stored without held_out["textured"] scores a garment on a table as it did when it was fitted.
    from fmnist import trust
    from fmnist.images import SURFACE_NOISE, Cues

    rng = np.random.default_rng(5)
    names = ["energy", *ood.Cues.NAMES]
    photos = {name: rng.normal(size=400) for name in names}
    photos.update(
        energy=rng.normal(np.log(10), 1, 400),  # logits of zeros
        border_fit=rng.uniform(0.9, 1.0, 400),
        noise=rng.uniform(0.5, 3.0, 400),
        coverage=rng.uniform(0.1, 0.6, 400),
        fill=rng.uniform(0.4, 0.8, 400),
        largest_part=rng.uniform(0.9, 1.0, 400),
    )
    fitted = ood.fitted(photos, {"energy": rng.normal(np.log(10), 1, 1000)}, names)
    earlier = {kind: v for kind, v in fitted["held_out"].items() if kind != "textured"}
    table = Cues(border_fit=0.2, noise=SURFACE_NOISE + 4, coverage=0.3, fill=0.6, largest_part=0.95, textured=True)
    logits, views = np.zeros((1, 10), np.float32), np.zeros((1, 28, 28), np.uint8)
    now = trust.Trust(1.0, **fitted).scores(logits, views, [table])
    before = trust.Trust(1.0, **{**fitted, "held_out": earlier}).scores(logits, views, [table])
    assert now[0] >= fitted["threshold"] > before[0]


def test_reference_photos_on_a_textured_surface_keep_their_object_cues():
    # A user's photos on a table join the references (trust.refit): they lack the surface cues alone, and the
    # references stay free of NaN (which would shift every later cue's ranks in p_value_table).
    rng = np.random.default_rng(3)
    names = ["energy", *ood.Cues.NAMES]
    photos = {name: rng.normal(size=400) for name in names}
    for name in ood.SURFACE_CUES:
        photos[name][:50] = np.nan
    fitted = ood.fitted(photos, {"energy": rng.normal(size=1000)}, names)
    assert len(fitted["references"]["coverage"]) == 400 and len(fitted["references"]["border_fit"]) == 350
    assert not any(np.isnan(r).any() for r in fitted["references"].values())
    # The photos on a plain backdrop calibrate their kind; every photo, judged by its object, the textured kind.
    assert len(fitted["held_out"]["photo"]) == 350 and len(fitted["held_out"]["textured"]) == 400
    assert not any(np.isnan(h).any() for h in fitted["held_out"].values())
    fresh = {name: rng.normal(size=4000) for name in names}
    scores = ood.calibrated(
        fresh, np.ones(4000, bool), fitted["references"], fitted["plain"], fitted["held_out"], fitted["gate"]
    )
    assert abs(float((scores >= 1 - ood.KEEP).mean()) - ood.KEEP) < 0.02


def test_view_cues_tell_a_pen_stroke_from_a_filled_silhouette():
    views = np.zeros((3, 28, 28), np.uint8)
    views[0, :, 4:24] = 200  # a filled silhouette spanning the 28 pixels
    views[1, 4:24, 13:15] = 255  # a "1" two pixels wide in a 20-pixel box, as MNIST draws it
    cues = ood.view_cues(views)  # the third view is blank
    assert cues["span"].tolist() == [28, 20, 0]
    assert cues["ink"][0] == pytest.approx(20 * 28 / 784) and cues["ink"][2] == 0
    assert cues["stroke"][0] == pytest.approx(18 * 26 / (20 * 28)) and cues["stroke"][1] == 0
    assert cues["flat"].tolist() == [0, 1, 0]  # shaded at 200; full-strength ink


def sharpness_by_definition(view: np.ndarray) -> float:
    """The energy of the gradient over the contrast, from the float64 image: the sum of squared steps between
    neighbouring pixels over the sum of squared deviations from the mean; 0 for a blank view."""
    x = view.astype(np.float64)
    deviation = np.sum((x - x.mean()) ** 2)
    steps = np.sum(np.diff(x, axis=1) ** 2) + np.sum(np.diff(x, axis=0) ** 2)
    return float(steps / deviation) if deviation else 0.0


def test_sharpness_tells_a_small_picture_enlarged_from_a_view_reduced_from_a_photo():
    rng = np.random.default_rng(0)
    sharp = np.zeros((28, 28), np.uint8)
    sharp[2:26, 6:22] = rng.integers(120, 220, (24, 16))  # a garment's silhouette: an edge a pixel wide, shading
    tiny = np.asarray(Image.fromarray(sharp).resize((8, 8), Image.Resampling.BOX))
    enlarged = np.asarray(Image.fromarray(tiny).resize((28, 28), Image.Resampling.BILINEAR))  # as an 8x8 digit enlarged
    views = np.stack([sharp, enlarged, np.full((28, 28), 90, np.uint8), np.zeros((28, 28), np.uint8)])
    values = ood.view_cues(views)["sharpness"]
    assert values[1] < values[0] / 3
    assert values[2:].tolist() == [0.0, 0.0]  # no contrast: no division by zero
    dimmer = (sharp // 2).astype(np.uint8)[None]  # half the contrast: the same sharpness, within rounding
    assert ood.view_cues(dimmer)["sharpness"][0] == pytest.approx(values[0], rel=0.02)
    noise = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)  # the integer sums give the definition's value
    assert ood.view_cues(noise)["sharpness"] == pytest.approx([sharpness_by_definition(v) for v in noise], rel=1e-12)
    assert ood.UNUSUAL["sharpness"] == "low"


def test_energy_is_logsumexp_for_tensors_and_arrays():
    logits = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    assert torch.allclose(ood.energy(logits), torch.logsumexp(logits, 1))
    assert np.allclose(ood.energy(logits.numpy().astype(np.float64)), torch.logsumexp(logits, 1).numpy())


def test_coarse_pools_are_the_blocks_means_and_maxima():
    views = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    pools = ood.coarse_pools(views)
    assert pools.shape == (3, 98)
    block = views[1, 8:12, 4:8].astype(np.float64)  # row 2, column 1 of the 7x7 blocks
    assert pools[1, 2 * 7 + 1] == block.sum() / 16 / 255 and pools[1, 49 + 2 * 7 + 1] == block.max() / 255


def test_coarse_is_the_smallest_mahalanobis_distance_to_a_class_gaussian():
    rng = np.random.default_rng(0)
    # Two classes: a bright top half, a bright left half, with pixel noise (and pixels 0 or 255 at the edges).
    top, left = np.zeros((28, 28)), np.zeros((28, 28))
    top[:14], left[:, :14] = 200, 200
    shapes = np.stack([top, left])
    labels = np.repeat([0, 1], 400)
    views = np.clip(shapes[labels] + rng.normal(0, 20, (800, 28, 28)), 0, 255).astype(np.uint8)
    gaussians = ood.gaussians_of(views, labels)
    assert gaussians.shape == (2, 1 + 98, 98)
    fresh = np.clip(shapes[labels[::4]] + rng.normal(0, 20, (200, 28, 28)), 0, 255).astype(np.uint8)
    digit = np.zeros((1, 28, 28), np.uint8)
    digit[0, 4:24, 12:16] = 255  # a "1": a bar where neither class has one
    distances = ood.coarse(np.concatenate([fresh, digit]), gaussians)
    assert distances[-1] > 10 * distances[:-1].max()
    # The distance to each class by its definition: (x - mean)' precision (x - mean), the nearest class's.
    x = ood.coarse_pools(fresh[:1])[0]
    by_class = [(x - g[0]) @ g[1:] @ (x - g[0]) for g in gaussians]
    assert distances[0] == pytest.approx(min(by_class), rel=1e-12)
    with pytest.raises(ValueError, match="at least one"):
        ood.gaussians_of(views[:0], labels[:0])


def test_reference_is_thinned_to_quantiles_and_drops_missing_values():
    values = np.r_[np.arange(2000.0), np.nan]
    ref = ood.reference_of(values)
    assert len(ref) == ood.REFERENCE_SIZE and ref[0] == 0 and ref[-1] == 1999 and np.all(np.diff(ref) >= 0)


def synthetic_pictures(count: int, seed: int) -> tuple[np.ndarray, np.ndarray, list]:
    """Views uint8 [count, 28, 28] of every shape the cues tell apart (filled boxes, shaded or flat, pen lines, noise,
    blank), logits [count, 10] and framing cues (a plain 28x28 image, None, for a fifth of them), from `seed`."""
    rng = np.random.default_rng(seed)
    views = np.zeros((count, 28, 28), np.uint8)
    for view, shape in zip(views, rng.integers(0, 5, count), strict=True):
        top, left = rng.integers(0, 10, 2)
        bottom, right = rng.integers(18, 29, 2)
        if shape == 0:  # a filled silhouette, shaded
            view[top:bottom, left:right] = rng.integers(40, 256, (bottom - top, right - left))
        elif shape == 1:  # a flat box
            view[top:bottom, left:right] = 255
        elif shape == 2:  # pen lines one or two pixels wide
            view[top:bottom, left : left + rng.integers(1, 3)] = 255
            view[top, left:right] = 230
        elif shape == 3:  # noise
            view[:] = rng.integers(0, 256, (28, 28))
    logits = rng.normal(0, 4, (count, 10))
    cues = [
        None
        if rng.random() < 0.2
        else ood.Cues(
            *rng.choice([0.0, 0.25, 0.5, 0.75, 1.0], 3).tolist(), *rng.random(2).tolist(), textured=rng.random() < 0.3
        )
        for _ in range(count)
    ]
    return views, logits, cues


def scores_by_definition(
    detector, logits: np.ndarray, views: np.ndarray, cues: list, coarse: np.ndarray
) -> tuple[list[dict], list]:
    """Each picture's cues and in-distribution score, computed alone and literally from the definitions in ood's
    docstrings (scipy's logsumexp and binary erosion, the projection on the basis, the coarse cue by loops,
    counted p-values). The scores take the `coarse` values given: a view identical to a reference view ties with
    it, and a 98x98 quadratic form summed in another order lands on either side of the tie (the values
    themselves are compared to 1e-12)."""
    from scipy import ndimage, special

    all_values, scores = [], []
    for logit, view, cue, coarse_value in zip(logits, views, cues, coarse, strict=True):
        ink = view > ood.INK_LEVEL
        rows, cols = np.nonzero(ink)
        count = int(ink.sum())
        x = view.reshape(-1) / 255.0 - detector.basis[0]
        values = {
            "energy": special.logsumexp(logit),
            "span": max(np.ptp(rows) + 1, np.ptp(cols) + 1) if count else 0,
            "ink": count / 784,
            "stroke": ndimage.binary_erosion(ink, np.ones((3, 3)), border_value=0).sum() / max(count, 1),
            "flat": (view > ood.FULL_LEVEL).sum() / max(count, 1),
            "sharpness": sharpness_by_definition(view),
            "residual": float(np.sum((x - detector.basis[1:].T @ (detector.basis[1:] @ x)) ** 2)),
            "coarse": coarse_by_definition(view, detector.gaussians),
            **dict(zip(ood.Cues.NAMES, cue.values() if cue else [np.nan] * 5, strict=True)),
        }
        textured = cue is not None and cue.textured
        if textured:  # on a textured surface: judged without the surface's cues, among photos judged so
            values.update(dict.fromkeys(ood.SURFACE_CUES, np.nan))
        ps = []
        for name, reference in (detector.references if cue else detector.plain).items():
            value, size = coarse_value if name == "coarse" else values[name], 1 + len(reference)
            low, high = (1 + np.sum(reference <= value)) / size, (1 + np.sum(reference >= value)) / size
            p = {"low": low, "high": high, "both": min(1.0, 2 * min(low, high))}[ood.UNUSUAL[name]]
            ps.append(1.0 if np.isnan(value) else p)
        product = ps[0]
        for p in ps[1:]:
            product *= p
        held_out = detector.held_out["textured" if textured else "photo" if cue else "plain"]
        names = list(detector.references if cue else detector.plain)
        # the sharpness is never the first unusual cue, only the second
        unusual = (
            min(p for p, name in zip(ps, names, strict=True) if name not in ood.SECOND_ONLY) + ood.TIE_BREAK * product
        )
        if detector.gate:
            unusual *= min(1.0, sorted(ps)[1] / detector.gate)
        all_values.append(values)
        scores.append((1 + np.sum(held_out <= unusual)) / (1 + len(held_out)))
    return all_values, scores


def coarse_by_definition(view: np.ndarray, gaussians: np.ndarray) -> float:
    """The coarse cue of one view, by loops: each 4x4 block's mean and maximum (0..1), and the smallest
    (x - mean)' precision (x - mean) over the classes."""
    blocks = [view[r : r + 4, c : c + 4].astype(np.float64) for r in range(0, 28, 4) for c in range(0, 28, 4)]
    x = np.array([b.mean() for b in blocks] + [b.max() for b in blocks]) / 255
    return min(float((x - g[0]) @ g[1:] @ (x - g[0])) for g in gaussians)


@pytest.fixture(scope="module")
def synthetic_detector():
    """A detector on the deployed cues, fitted by ood.fitted on the values of 300 synthetic pictures (the coarse
    cue's Gaussians on 300 others, as on training images)."""
    from fmnist import trust

    views, logits, cues = synthetic_pictures(300, seed=1)
    basis = ood.basis_of(views[0::2])
    training, training_logits, _ = synthetic_pictures(300, seed=3)
    gaussians = ood.gaussians_of(training, training_logits.argmax(1))
    photo = [c is not None for c in cues]
    values = trust.cue_values(logits, views, cues, basis, gaussians)
    photos = {name: v[photo] for name, v in values.items()}
    plain = {name: v[~np.array(photo)] for name, v in values.items()}
    return trust.Trust(1.5, basis=basis, gaussians=gaussians, **ood.fitted(photos, plain, trust.CUES))


def test_scores_and_cues_are_each_cue_computed_by_its_definition_one_picture_at_a_time(synthetic_detector):
    from fmnist import trust

    views, logits, cues = synthetic_pictures(80, seed=2)
    batch = trust.cue_values(logits, views, cues, synthetic_detector.basis, synthetic_detector.gaussians)
    values, expected = scores_by_definition(synthetic_detector, logits, views, cues, batch["coarse"])
    for name in [*batch]:
        np.testing.assert_allclose(batch[name], [v[name] for v in values], rtol=1e-12, atol=1e-12, err_msg=name)
    assert np.array_equal(synthetic_detector.scores(logits, views, cues), expected)
    assert len(set(expected)) > 40 and min(expected) < 0.1  # scores that tell pictures apart
    for kind in (slice(0, 40), slice(40, 41), [i for i, c in enumerate(cues) if c is None]):  # a photo, a plain image
        alone = synthetic_detector.scores(logits[kind], views[kind], [cues[i] for i in np.arange(80)[kind]])
        assert np.array_equal(alone, np.array(expected)[kind])


def test_a_detector_stored_before_the_gate_scores_with_the_smallest_p_value_alone(synthetic_detector):
    # A checkpoint written before the gate has none: its held-out unusualness was the smallest p-value alone, and
    # it is scored so; the same references under the gate score otherwise.
    import dataclasses
    import json

    from fmnist import trust

    assert synthetic_detector.gate == ood.GATE > 0
    facts = synthetic_detector.to_dict()
    del facts["gate"]
    earlier = trust.Trust.from_dict(json.loads(json.dumps(facts)))
    assert earlier.gate == 0
    views, logits, cues = synthetic_pictures(80, seed=5)
    values = trust.cue_values(logits, views, cues, earlier.basis, earlier.gaussians)
    photo = np.array([c is not None for c in cues])
    alone = ood.calibrated(values, photo, earlier.references, earlier.plain, earlier.held_out, 0.0)
    assert np.array_equal(earlier.scores(logits, views, cues), alone)
    gated = dataclasses.replace(earlier, gate=ood.GATE).scores(logits, views, cues)
    assert not np.array_equal(gated, alone)


def test_a_detector_fitted_before_the_coarse_cue_scores_without_it(synthetic_detector):
    # A checkpoint written before the coarse cue has neither its references nor its Gaussians: it scores as it did.
    import json

    from fmnist import trust

    facts = synthetic_detector.to_dict()
    del facts["gaussians"]
    for table in ("references", "plain"):
        facts[table] = {name: v for name, v in facts[table].items() if name != "coarse"}
    earlier = trust.Trust.from_dict(json.loads(json.dumps(facts)))
    assert earlier.gaussians is None and synthetic_detector.gaussians is not None
    views, logits, cues = synthetic_pictures(40, seed=4)
    scores = earlier.scores(logits, views, cues)
    assert scores is not None and ((0 < scores) & (scores <= 1)).all()
    assert not np.array_equal(scores, synthetic_detector.scores(logits, views, cues))  # with the cue, other scores
