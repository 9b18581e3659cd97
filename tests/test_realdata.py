"""Integration on the real Fashion-MNIST files: the reference MLP, end to end through the CLI."""

import json

import numpy as np
import pytest
import torch

from fmnist import data
from fmnist.cli import main
from fmnist.images import export_png

pytestmark = pytest.mark.real_data


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    found = data.locate()
    if found is None:
        pytest.skip("real Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    run_dir = tmp_path_factory.mktemp("real") / "run"
    assert main(["train", "--epochs", "2", "--out", str(run_dir), "--no-progress"]) == 0
    return run_dir, json.loads((run_dir / "summary.json").read_text())


@pytest.mark.slow
def test_two_epochs_of_the_reference_mlp_reach_84_percent(real_run):
    _, summary = real_run
    assert summary["parameters"] == 669_706
    assert summary["test_accuracy"] >= 0.84
    assert summary["train_images_per_second"] > 0 and summary["peak_memory_bytes"] > 0


def test_eval_reproduces_train(real_run, capsys):
    run_dir, summary = real_run
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["test_accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-9)
    assert result["test_loss"] == pytest.approx(summary["test_loss"], rel=1e-5)


def test_predict_on_exported_test_images(real_run, tmp_path, capsys):
    run_dir, _ = real_run
    test = data.load()
    paths = []
    for i in range(40):
        paths.append(tmp_path / f"{i}.png")
        export_png(test.test_images[i], paths[-1])
    capsys.readouterr()
    assert main(["predict", str(run_dir), *map(str, paths), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    correct = sum(r["class_index"] == int(test.test_labels[i]) for i, r in enumerate(rows))
    assert len(rows) == 40 and correct >= 32


@pytest.mark.slow
def test_product_photos_of_test_images_are_recognised_as_well_as_the_images(real_run, one_thread):
    # 48 rendered photos (6 of each kind), converted by fmnist.images, against the same test images
    # as 28x28: 48 images allow about 4 more mistakes than the images themselves by chance.
    from fmnist.inference import load_predictor
    from fmnist.testing import photos

    run_dir, _ = real_run
    test = data.load()
    rows = photos.measure(load_predictor(run_dir), test.test_images, test.test_labels, 48, seed=0)
    photo, plain = sum(r.photo_correct for r in rows), sum(r.plain_correct for r in rows)
    assert sum(r.count for r in rows) == 48 and plain >= 36
    assert photo >= plain - 5, (photo, plain)
    assert max(r.mean_abs_difference for r in rows) < 25


def test_every_form_of_a_test_image_gets_the_class_and_verdict_of_its_bytes(real_run):
    # 12 test images in each of fmnist.testing.forms' 48 containers (modes, formats, sizes, polarity, margins, canvas,
    # colour map, figures and a window round it).
    from fmnist import trust
    from fmnist.images import load_picture
    from fmnist.inference import load_predictor
    from fmnist.testing import forms

    run_dir, _ = real_run
    predictor = load_predictor(run_dir)
    images = data.load().test_images[:12]

    def judged(views, cues):
        verdict = trust.judge(predictor.trust, predictor.logits(views), views, cues)
        return verdict.probabilities.argmax(1), verdict.garment

    classes, garment = judged(images, [None] * len(images))
    same = kept = total = 0
    for form in forms.all_forms():
        loaded = [load_picture(forms.save(image.numpy(), form), form.name) for image in images]
        form_classes, form_garment = judged(torch.stack([p.image for p in loaded]), [p.cues for p in loaded])
        same += int((form_classes == classes).sum())
        kept += int((form_garment == garment).sum())
        total += len(images)
    assert same >= 0.98 * total and kept >= 0.98 * total, (same, kept, total)


def test_test_images_saved_as_rgb_jpegs_of_pillows_default_quality_are_read_as_their_grey_pixels():
    # A dataset image saved with .convert("RGB").save(path) decodes with R = G = B: the dataset's own format, taken as
    # it is (264 of these 300: the rest lost their black or their full white to the JPEG, and are digital pictures).
    # Before, a JPEG's ringing where the garment touches an edge made 14 of them too uneven along the border for a
    # digital picture, and the photo framing cut 8 of those into views the detector rejected.
    import io

    from PIL import Image

    from fmnist.images import load_picture

    if data.locate() is None:
        pytest.skip("real Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    digital = as_pixels = 0
    for image in data.load().test_images[:300].numpy():
        buffer = io.BytesIO()
        Image.fromarray(image).convert("RGB").save(buffer, "JPEG")  # quality 75, Pillow's default
        picture = load_picture(buffer.getvalue())
        digital += picture.cues is None
        as_pixels += np.array_equal(picture.pixels, np.asarray(Image.open(buffer).convert("L")))
    assert digital >= 297 and as_pixels >= 250, (digital, as_pixels)


def test_every_dataset_image_has_black_and_full_white_in_it_and_none_in_limited_range_levels_is_taken_as_its_bytes():
    # images.DATASET_BLACK: every image of the dataset has a pixel at 0; video's limited range (16-235) has none.
    # images.FULL_PEAK: every one reaches it, so a copy with its contrast lowered is stretched back, not taken as is.
    from PIL import Image

    from fmnist import images
    from fmnist.testing import forms

    if data.locate() is None:
        pytest.skip("real Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    dataset = data.load()
    every = np.concatenate([dataset.train_images.numpy(), dataset.test_images.numpy()])
    assert int(every.reshape(len(every), -1).min(1).max()) < images.DATASET_BLACK  # the test costs the dataset none
    assert int(every.reshape(len(every), -1).max(1).min()) >= images.FULL_PEAK
    limited = forms.limited_range(every[:2000])
    assert all(images._already_fashion_mnist(Image.fromarray(x)) is None for x in limited)


def test_test_images_on_a_canvas_are_read_without_it_and_none_padded_in_their_own_colour_is():
    # The rule of images._inner_picture on the whole test set: padded in white (a page it is pasted on), a dataset
    # image is the picture on a canvas; padded in its own background's black, never (a margin, as before).
    from fmnist import images

    if data.locate() is None:
        pytest.skip("real Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    test = data.load().test_images.numpy()

    def on_canvas(level: int) -> int:
        return sum(
            images._inner_picture(np.pad(x, 14, constant_values=level).astype(np.float32), None) is not None
            for x in test
        )

    assert on_canvas(0) == 0
    assert on_canvas(255) >= 0.998 * len(test)


def test_test_images_as_digital_pictures_are_not_taken_for_photos_lit_past_white():
    # digital_view on the first 2,000 test images and their negatives: a black (or white) background is clipped
    # light to the censored background fit, which must not bend to an object's faint edge pixels and so call the
    # background a gradient of light (2 of the 4,000 refused, as with the plain fit alone; 10 when the censored fit
    # was taken for a gain of 5 % of the border).
    from fmnist import images

    if data.locate() is None:
        pytest.skip("real Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    test = data.load().test_images[:2000].numpy().astype(np.float32)
    refused = sum(images.digital_view(x) is None for x in [*test, *(255 - test)])
    assert refused <= 2


def test_no_dataset_image_crosses_its_border_as_often_as_a_pattern():
    # digital_view takes a square picture whose border falls into DIGITAL_PIECES pieces or more for a pattern: no
    # Fashion-MNIST image's object crosses the border of its picture so often, whatever it is enlarged by (a run of
    # one pixel at 28x28 is the widest it can make a piece).
    from fmnist import images

    if data.locate() is None:
        pytest.skip("real Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    dataset = data.load()
    pictures = np.concatenate([dataset.train_images.numpy(), dataset.test_images.numpy()]).astype(np.float32)
    rows, columns = images._border_coordinates(28, 28)
    borders = pictures[:, rows, columns]  # [70000, 108], going round
    most = max(images._border_pieces(np.abs(b - images._mode_level(b)) <= images.FLAT_BAND, run=1) for b in borders)
    assert most < images.DIGITAL_PIECES


def test_the_dataset_facts_behind_faint_fade_and_graded(capsys):
    # images.FAINT: the box of every lit pixel of a training image spans its 28 pixels far more often than the box of
    # those above DIGITAL_OBJECT (98.3 against 94 %, docs/TRUST.md). images.FADE: a test image with its black made
    # transparent fades toward black at the rim of its opaque part (98.6 % under FADE, the median 0.52).
    # images.GRADED: of a test image's lit pixels (above 0.05 of white), at least half are under 0.95 of it (99.9 %,
    # the least share 0.41), as an opacity would be. `-s` prints the figures.
    from scipy import ndimage

    from fmnist import images

    if data.locate() is None:
        pytest.skip("real Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    dataset = data.load()
    train = dataset.train_images.numpy()

    def spans(level: float) -> np.ndarray:  # the longer side of the box of the pixels above `level`, per image
        lit = train > level
        rows, cols = lit.any(2), lit.any(1)
        height = 28 - rows.argmax(1) - rows[:, ::-1].argmax(1)
        width = 28 - cols.argmax(1) - cols[:, ::-1].argmax(1)
        return np.maximum(height, width)

    faint, strong = (spans(images.FAINT) == 28).mean(), (spans(images.DIGITAL_OBJECT) == 28).mean()
    ratios = []
    for image in dataset.test_images[:3000].numpy().astype(np.float64):
        inside = image > 0
        rim = inside & ~ndimage.binary_erosion(inside, border_value=1)
        ratios.append(image[rim].mean() / image[inside & ~rim].mean())
    fading, median = (np.array(ratios) < images.FADE).mean(), float(np.median(ratios))
    opacity = dataset.test_images[:3000].numpy().reshape(3000, -1) / 255
    shares = ((opacity > 0.05) & (opacity < 0.95)).sum(1) / (opacity > 0.05).sum(1)
    graded = (shares >= images.GRADED).mean()
    with capsys.disabled():
        print(f"\nfull span: {faint:.1%} (above FAINT), {strong:.1%} (above DIGITAL_OBJECT)")
        print(f"rim under FADE of the inside: {fading:.1%} of 3,000 test images, the median {median:.2f}")
        print(f"graded share at least GRADED: {graded:.1%} of 3,000 test images, the least {shares.min():.2f}")
    assert faint >= 0.98 and strong <= faint - 0.03
    assert fading >= 0.98 and median < 0.6
    assert graded >= 0.99


def test_written_digits_and_letters_are_not_garments(real_run):
    # The holdout parts of fmnist.testing.outliers' stroke kinds, 40 pictures each: scikit-learn's handwritten
    # digits photographed on paper, saved dark on white as a drawing program saves them, in MNIST's 28x28
    # style, and enlarged from 8x8 as the dataset's images (smoother than a garment's view: the `sharpness` cue,
    # only ever a second unusual cue), and a printed letter or digit photographed alone; the test images
    # beside them stay garments.
    from fmnist import trust
    from fmnist.images import load_picture
    from fmnist.inference import load_predictor
    from fmnist.testing import outliers

    run_dir, _ = real_run
    predictor = load_predictor(run_dir)

    def kept(views: torch.Tensor, cues: list) -> float:
        return float(trust.judge(predictor.trust, predictor.logits(views), views, cues).garment.mean())

    rejected = {}
    for kind in ("digit", "printed", "mnist", "glyph", "digit8"):
        pictures = [load_picture(o.data, kind) for o in outliers.build(40, "holdout", 0, (kind,))]
        rejected[kind] = 1 - kept(torch.stack([p.image for p in pictures]), [p.cues for p in pictures])
    images = data.load().test_images[:200]
    assert kept(images, [None] * len(images)) >= 0.95
    assert np.mean(list(rejected.values())) >= 0.7 and min(rejected.values()) >= 0.45, rejected
    assert rejected["digit8"] >= 0.6, rejected  # 45 % before the sharpness cue


def test_an_enlarged_dataset_image_keeps_its_placement_and_one_given_margins_is_cut_out(monkeypatch):
    # images._enlarged on real pictures: the 6 of the 70,000 dataset images whose object spans less than
    # images.MARGIN_SPAN, enlarged nearest, smooth and as JPEG, come back as their bytes are, placed as they are;
    # 300 test images given margins of a quarter of their side in their own background's colour, then enlarged 6
    # times, are never taken for a 28x28 picture enlarged (at their own size, under images.GRID_FACTOR, never asked;
    # 10 of them rebuild as well as one: 1.5 times 28 is too close).
    from fmnist import images
    from fmnist.testing import forms

    if data.locate() is None:
        pytest.skip("real Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    dataset = data.load()
    every = np.concatenate([dataset.train_images.numpy(), dataset.test_images.numpy()])
    boxes = [images._object_box(x > images.DIGITAL_OBJECT) for x in every]
    small = every[[max(b[1] - b[0], b[3] - b[2]) < images.MARGIN_SPAN * 28 for b in boxes]]
    assert len(small) == 6
    for form in (
        forms.Form("L", "PNG", 4.0),
        forms.Form("RGB", "PNG", 4.0, smooth=True),
        forms.Form("RGB", "JPEG", 4.0),
    ):
        views = np.stack([images.load_picture(forms.save(x, form)).image.numpy() for x in small]).astype(int)
        assert np.abs(views - small).mean((1, 2)).max() <= 4.0, form.name  # as test_images: a smooth upscale rings
    decided = []
    enlarged = images._enlarged

    def asked(contrast: np.ndarray, grid: int = 28) -> bool:  # the 28x28 grid's question; others pass through
        if grid != 28:
            return enlarged(contrast, grid)
        decided.append(enlarged(contrast))
        return decided[-1]

    monkeypatch.setattr(images, "_enlarged", asked)
    test = dataset.test_images[:300].numpy()
    for form in (forms.Form("L", "PNG", 6.0, margin=0.25), forms.Form("RGB", "JPEG", 6.0, smooth=True, margin=0.25)):
        views = np.stack([images.load_picture(forms.save(x, form)).image.numpy() for x in test]).astype(int)
        # Cut at their own pixels (reduced from the enlargement, boxed with their faint end rows): their bytes' view.
        close = np.abs(views - test).mean((1, 2)) <= (0.0 if form.fmt == "PNG" else 4.0)
        assert close.mean() >= (0.95 if form.fmt == "PNG" else 0.9), (form.name, close.mean())
    assert len(decided) == 600 and not any(decided)
