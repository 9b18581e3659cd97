import pytest
import torch
import torch.nn.functional as F

from fmnist.augment import KINDS, _axis_aligned_grid, augment, mix, parse_kinds
from fmnist.errors import FmnistError

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")),
]
BATCH = 256


def _gen(device: str, seed: int = 0) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _image(device: str, border: int = 0) -> torch.Tensor:
    """One asymmetric [1, 28, 28] image in (0, 1], optionally with a zero frame."""
    img = torch.rand(1, 28, 28, generator=torch.Generator().manual_seed(123)) * 0.9 + 0.1
    if border:
        frame = torch.zeros_like(img)
        frame[:, border:-border, border:-border] = img[:, border:-border, border:-border]
        img = frame
    assert not torch.equal(img, img.flip(-1))
    return img.to(device)


def _copies(device: str, border: int = 0) -> torch.Tensor:
    return _image(device, border).expand(BATCH, 1, 28, 28).contiguous()


def _n_distinct(out: torch.Tensor) -> int:
    return torch.unique(out.flatten(1), dim=0).shape[0]


def _shift(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """img moved down by dy and right by dx, zeros shifted in."""
    out = torch.zeros_like(img)
    h, w = img.shape[-2:]
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = img[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kinds", [[k] for k in KINDS] + [list(KINDS)])
def test_shape_dtype_device_range_and_input_untouched(device, kinds):
    x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(1)).to(device)
    x[:, :, :3] = 1.0  # saturated rows: interpolation must not overshoot
    before = x.clone()
    out = augment(x, kinds, _gen(device), strength=1.5)
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert out.data_ptr() != x.data_ptr()
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert torch.equal(x, before)
    assert not torch.equal(out, x)


@pytest.mark.parametrize("device", DEVICES)
def test_no_kinds_returns_an_equal_copy(device):
    x = _copies(device)
    out = augment(x, [], _gen(device))
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()


@pytest.mark.parametrize("device", DEVICES)
def test_flip_mirrors_about_half_of_the_samples(device):
    x = _copies(device)
    img = x[0]
    out = augment(x, ["flip"], _gen(device))
    same = (out == img).flatten(1).all(1)
    mirrored = (out == img.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all())
    assert 0.3 < mirrored.float().mean().item() < 0.7


@pytest.mark.parametrize("device", DEVICES)
def test_crop_gives_many_distinct_outputs(device):
    x = _copies(device)
    out = augment(x, ["crop"], _gen(device))
    assert _n_distinct(out) > 0.9 * BATCH


def _crop_boxes(device: str, strength: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Recover each sample's crop box (left, top, width, height in pixels) from two ramps.

    Bilinear sampling reproduces a linear ramp exactly, so a column ramp cropped with one
    seed reads back the sampled x coordinate of every output pixel, a row ramp the y.
    """
    ramp = (torch.arange(28.0) / 27).view(1, 28).expand(28, 28)
    coords = []
    for image in (ramp, ramp.T):  # column index, then row index, each scaled to [0, 1]
        x = image.expand(BATCH, 1, 28, 28).contiguous().to(device)
        out = augment(x, ["crop"], _gen(device), strength=strength)[:, 0].double() * 27
        coords.append(out[:, 2:-2, 2:-2])  # away from the border-clamped edge pixels
    along = torch.arange(2, 26, dtype=torch.float64, device=device) + 0.5  # output centres
    px, py = coords[0], coords[1].transpose(1, 2)  # both now vary along the last axis
    boxes = []
    for p in (px, py):
        step = p.diff(dim=-1).mean((1, 2))  # input pixels per output pixel
        start = (p - step.view(-1, 1, 1) * along).mean((1, 2)) + 0.5  # box edge at output 0
        boxes.append((start, step * 28))
    (left, width), (top, height) = boxes
    return left, top, width, height


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("strength", [1.0, 0.4, 3.0])
def test_crop_box_follows_the_contract(device, strength):
    left, top, width, height = _crop_boxes(device, strength)
    area, aspect = width * height / 28**2, width / height
    lo = 1 - 0.25 * strength
    assert area.min() >= lo - 1e-3 and area.max() <= 1 + 1e-3
    assert area.min() < lo + 0.05  # the whole scale range is used
    assert aspect.min() >= 3 / 4 - 1e-3 and aspect.max() <= 4 / 3 + 1e-3
    assert aspect.min() < 0.95 and aspect.max() > 1.05
    # Inside the image, and placed anywhere in the room that is left.
    eps = 1e-3
    assert left.min() >= -eps and (left + width).max() <= 28 + eps
    assert top.min() >= -eps and (top + height).max() <= 28 + eps
    room = 28 - width
    assert (left < 0.2 * room).any() and (left > 0.8 * room).any()


@pytest.mark.parametrize("device", DEVICES)
def test_crop_of_a_constant_image_is_constant(device):
    # Border padding: edge pixels must not be darkened by sampling outside the image.
    x = torch.full((32, 1, 28, 28), 0.7, device=device)
    out = augment(x, ["crop"], _gen(device), strength=3.0)
    torch.testing.assert_close(out, x)


def test_crop_grid_matches_affine_grid():
    g = torch.Generator().manual_seed(5)
    w, h = torch.rand(8, generator=g) * 0.5 + 0.5, torch.rand(8, generator=g) * 0.5 + 0.5
    cx, cy = (torch.rand(8, generator=g) - 0.5) * (1 - w), (torch.rand(8, generator=g) - 0.5) * (1 - h)
    zero = torch.zeros_like(w)
    theta = torch.stack([w, zero, cx, zero, h, cy], dim=1).view(-1, 2, 3)
    expected = F.affine_grid(theta, [8, 1, 28, 20], align_corners=False)
    torch.testing.assert_close(_axis_aligned_grid(w, h, cx, cy, 28, 20), expected)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("border", [0, 2])
def test_translate_is_an_exact_integer_shift(device, border):
    x = _copies(device, border)
    img = x[0]
    out = augment(x, ["translate"], _gen(device))  # strength 1: pad 2, shifts in -2..2
    shifts = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]
    refs = torch.stack([_shift(img, dy, dx) for dy, dx in shifts]).flatten(1)  # [25, 784]
    match = (out.flatten(1)[:, None, :] == refs[None]).all(-1)  # [B, 25]
    assert bool(match.any(1).all()), "some output is not a zero-filled integer shift"
    assert int(match.any(0).sum()) >= 20  # nearly every shift occurs in 256 draws
    if border:  # nothing falls off the edge: pixel mass is preserved exactly
        torch.testing.assert_close(out.sum((1, 2, 3)), x.sum((1, 2, 3)), rtol=0, atol=1e-3)


@pytest.mark.parametrize("device", DEVICES)
def test_translate_shift_range_follows_strength(device):
    x = _copies(device, border=4)
    img = x[0]
    out = augment(x, ["translate"], _gen(device), strength=2.0)  # pad 4
    shifts = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)]
    refs = torch.stack([_shift(img, dy, dx) for dy, dx in shifts]).flatten(1)
    match = (out.flatten(1)[:, None, :] == refs[None]).all(-1)
    assert bool(match.any(1).all())
    used = {shifts[i] for i in match.any(0).nonzero().flatten().tolist()}
    assert max(max(abs(dy), abs(dx)) for dy, dx in used) == 4


@pytest.mark.parametrize("device", DEVICES)
def test_erase_zeroes_one_rectangle_in_about_half_the_samples(device):
    x = torch.ones(BATCH, 1, 28, 28, device=device)
    out = augment(x, ["erase"], _gen(device))
    zero = (out == 0)[:, 0]  # [B, 28, 28]
    erased = zero.flatten(1).any(1)
    assert 0.3 < erased.float().mean().item() < 0.7
    assert bool(((out == 0) | (out == 1)).all())
    for mask in zero[erased]:
        rows = mask.any(1).nonzero().flatten()
        cols = mask.any(0).nonzero().flatten()
        box = torch.zeros_like(mask)
        box[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
        assert torch.equal(mask, box), "erased region is not one rectangle"
    # Nominal area 2%..20% of the image; rounding the sides to whole pixels moves it a little.
    area = zero[erased].float().mean((1, 2))
    assert area.min() >= 0.013 and area.max() <= 0.225
    assert area.max() > 0.15  # the range is used, not just its low end
    assert _n_distinct(out[erased]) > 0.8 * int(erased.sum())


@pytest.mark.parametrize("device", DEVICES)
def test_erase_area_scales_with_strength(device):
    x = torch.ones(BATCH, 1, 28, 28, device=device)
    area = (augment(x, ["erase"], _gen(device), strength=0.25) == 0).float().mean((1, 2, 3))
    assert area.max() <= 0.05 + 0.015  # 0.2 * strength, plus rounding


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", list(KINDS))
def test_same_seed_same_output_different_seed_different(device, kind):
    x = _copies(device)
    a = augment(x, [kind], _gen(device, 7))
    b = augment(x, [kind], _gen(device, 7))
    c = augment(x, [kind], _gen(device, 8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("device", DEVICES)
def test_global_rng_is_not_touched(device):
    cpu_state = torch.get_rng_state()
    cuda_state = torch.cuda.get_rng_state() if device == "cuda" else None
    augment(_copies(device), KINDS, _gen(device))
    assert torch.equal(torch.get_rng_state(), cpu_state)
    if cuda_state is not None:
        assert torch.equal(torch.cuda.get_rng_state(), cuda_state)


@pytest.mark.parametrize("device", DEVICES)
def test_strength_zero_makes_crop_translate_erase_the_identity(device):
    x = _copies(device)
    assert torch.equal(augment(x, ["crop", "translate", "erase"], _gen(device), strength=0.0), x)
    flipped = augment(x, ["flip"], _gen(device), strength=0.0)
    assert not torch.equal(flipped, x)


def test_kinds_apply_in_kinds_order_whatever_the_order_given():
    x = _copies("cpu")
    a = augment(x, ["erase", "flip", "crop"], _gen("cpu"))
    b = augment(x, ["crop", "flip", "erase", "flip"], _gen("cpu"))
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("flip,crop", ("flip", "crop")),
        ("erase, translate ,flip", ("flip", "translate", "erase")),
        (["crop", "flip", "crop"], ("flip", "crop")),
        ("Flip,FLIP", ("flip",)),
        ("", ()),
        ("none", ()),
        ([], ()),
        (("erase",), ("erase",)),
    ],
)
def test_parse_kinds(spec, expected):
    assert parse_kinds(spec) == expected


def test_parse_kinds_rejects_unknown_names():
    with pytest.raises(FmnistError) as err:
        parse_kinds("flip,rotate")
    assert str(err.value) == "unknown augmentation 'rotate'; choose from flip, crop, translate, erase"
    with pytest.raises(FmnistError, match="unknown augmentation 'x'"):
        augment(_copies("cpu"), ["x"], _gen("cpu"))


def test_parse_kinds_rejects_non_strings():
    with pytest.raises(FmnistError, match="comma-separated string or a list"):
        parse_kinds(["flip", 3])


@pytest.mark.parametrize("strength", [-0.1, 3.5, float("nan")])
def test_augment_rejects_bad_strength(strength):
    with pytest.raises(FmnistError, match=r"strength must be a number in \[0, 3\]"):
        augment(_copies("cpu"), ["crop"], _gen("cpu"), strength=strength)


@pytest.mark.parametrize("mixup_alpha, cutmix_alpha", [(0.4, 0.0), (0.0, 1.0), (0.4, 1.0)])
def test_mix_targets_sum_to_one_and_match_the_pixels(mixup_alpha, cutmix_alpha):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 28, 28)
    y = torch.randint(0, 10, (64,))
    images, targets = mix(x, y, 10, g, mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha)
    assert images.shape == x.shape and targets.shape == (64, 10)
    assert torch.allclose(targets.sum(1), torch.ones(64))
    assert (targets >= 0).all()
    # Each image is lam * its own + (1 - lam) * its partner's, pixel by pixel (a box for CutMix),
    # so its mean share of its own pixels is lam: the weight its own label gets.
    partner = x.flip(0)
    own = torch.where(images == x, 1.0, 0.0)
    blended = (images - partner) / (x - partner)
    share = torch.where(own.bool(), 1.0, blended.clamp(0, 1)).mean((1, 2, 3))
    lam = targets[torch.arange(64), y]  # where the partner has another label
    different = y != y.flip(0)
    assert torch.allclose(share[different], lam[different], atol=1e-3)
    assert (lam[different] < 0.999).any()  # something was mixed


def test_mix_draws_from_the_callers_generator_only():
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    state = torch.get_rng_state()
    a = mix(x, y, 10, torch.Generator().manual_seed(3), mixup_alpha=0.2, cutmix_alpha=1.0)
    b = mix(x, y, 10, torch.Generator().manual_seed(3), mixup_alpha=0.2, cutmix_alpha=1.0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(torch.get_rng_state(), state)
