"""fmnist.images: turning user pictures into Fashion-MNIST-like 28x28 tensors."""

from __future__ import annotations

import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from fmnist import images
from fmnist.errors import FmnistError
from fmnist.images import export_png, load_image

DARK, LIGHT = 30, 230  # an object clearly darker / lighter than the other


def _assert_light_object_on_dark(out: torch.Tensor) -> None:
    assert out.shape == (28, 28) and out.dtype == torch.uint8
    assert out[14, 14] > 180, "object should end up light"
    assert max(out[0, 0], out[0, -1], out[-1, 0], out[-1, -1]) < 40, "background should end up dark"


def _mode_on_disk(path) -> str:
    with Image.open(path) as image:
        return image.mode


def _centred_box(mode: str, size: tuple[int, int], background, colour) -> Image.Image:
    image = Image.new(mode, size, background)
    w, h = size
    ImageDraw.Draw(image).rectangle((w // 4, h // 4, 3 * w // 4, 3 * h // 4), fill=colour)
    return image


def test_dark_on_light_jpeg_is_inverted(tmp_path):
    path = tmp_path / "photo.jpg"
    _centred_box("RGB", (120, 90), (250, 250, 245), (DARK, DARK, 40)).save(path, quality=90)
    _assert_light_object_on_dark(load_image(path))


def test_light_on_dark_png_is_not_inverted(tmp_path):
    path = tmp_path / "sketch.png"
    _centred_box("L", (56, 56), 0, LIGHT).save(path)
    out = load_image(path)
    _assert_light_object_on_dark(out)
    assert abs(int(out[14, 14]) - LIGHT) <= 2  # unchanged level, not inverted


def test_transparent_background_is_composited_onto_white(tmp_path):
    # Transparent pixels hold black here: dropping alpha would give a dark object on black.
    path = tmp_path / "cutout.png"
    _centred_box("RGBA", (80, 80), (0, 0, 0, 0), (DARK, DARK, DARK, 255)).save(path)
    _assert_light_object_on_dark(load_image(path))


@pytest.mark.parametrize("transparent", [False, True])
def test_palette_png(tmp_path, transparent):
    # Index 0 is the background: white, or black but transparent (which must read as white).
    image = _centred_box("P", (64, 48), 0, 1)
    background = (0, 0, 0) if transparent else (255, 255, 255)
    image.putpalette([*background, DARK, DARK, DARK])
    path = tmp_path / "palette.png"
    image.save(path, **({"transparency": 0} if transparent else {}))
    assert _mode_on_disk(path) == "P"
    _assert_light_object_on_dark(load_image(path))


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    # Background 0, left half of the object full scale, right half a quarter of it.
    values = np.zeros((280, 280), dtype=np.uint16)
    values[40:240, 40:140] = 65535
    values[40:240, 140:240] = 64 * 257
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert _mode_on_disk(path).startswith("I")
    out = load_image(path)
    assert out.min() == 0 and out.max() == 255
    assert out[14, 9] == 255
    assert abs(int(out[14, 19]) - 64) <= 1


@pytest.mark.parametrize("orientation", ["landscape", "portrait"])
def test_aspect_ratio_is_kept_by_padding(tmp_path, orientation):
    # A light 2:1 rectangle filling the picture apart from a thin dark frame.
    size = (280, 140) if orientation == "landscape" else (140, 280)
    image = Image.new("L", size, 0)
    ImageDraw.Draw(image).rectangle((5, 5, size[0] - 6, size[1] - 6), fill=LIGHT)
    path = tmp_path / "wide.png"
    image.save(path)
    out = load_image(path)
    if orientation == "portrait":
        out = out.T
    assert (out[:6] < 10).all() and (out[-6:] < 10).all()  # padding, not stretched content
    assert (out[10:18, 3:25] > LIGHT - 10).all()


def test_exif_orientation_is_applied(tmp_path):
    # Stored landscape, tagged "rotate 90° clockwise": phones save portrait photos like this.
    image = Image.new("L", (280, 140), 0)
    ImageDraw.Draw(image).rectangle((5, 5, 274, 134), fill=LIGHT)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif, quality=95)
    out = load_image(path)
    assert (out[:, :6] < 20).all() and (out[:, -6:] < 20).all()
    assert (out[3:25, 10:18] > LIGHT - 20).all()


@pytest.mark.parametrize(
    "mode, suffix",
    [("1", "png"), ("L", "png"), ("LA", "png"), ("RGB", "png"), ("RGBA", "png"), ("P", "gif"),
     ("CMYK", "jpg"), ("I;16", "tif"), ("I", "tif")],
)
def test_any_mode_and_size_gives_uint8_28x28(tmp_path, mode, suffix):
    path = tmp_path / f"odd.{suffix}"
    Image.new(mode, (37, 101)).save(path)
    out = load_image(path)
    assert out.shape == (28, 28) and out.dtype == torch.uint8


def test_export_png_round_trip(tmp_path):
    generator = torch.Generator().manual_seed(0)
    image = torch.zeros(28, 28, dtype=torch.uint8)
    image[4:24, 6:22] = torch.randint(1, 256, (20, 16), dtype=torch.uint8, generator=generator)
    path = tmp_path / "sample.png"
    export_png(image, path)
    assert _mode_on_disk(path) == "L"
    assert torch.equal(load_image(path), image)
    assert [p.name for p in tmp_path.iterdir()] == ["sample.png"]


def test_export_png_rejects_wrong_dtype(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        export_png(torch.zeros(28, 28), tmp_path / "x.png")


# --- user-facing errors: each names the path ---------------------------------------------


def _load_fails(path, match: str) -> None:
    with pytest.raises(FmnistError, match=match) as info:
        load_image(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_file(tmp_path):
    _load_fails(tmp_path / "nope.png", "no such file")


def test_directory(tmp_path):
    _load_fails(tmp_path, "directory")


@pytest.mark.parametrize("content", [b"", b"hello, I am text\n"])
def test_not_an_image(tmp_path, content):
    path = tmp_path / "notes.png"
    path.write_bytes(content)
    _load_fails(path, "not an image")


def test_unconvertible_mode(tmp_path):
    path = tmp_path / "lab.tif"
    Image.new("LAB", (10, 10)).save(path)
    _load_fails(path, "cannot convert a LAB image")


def test_truncated_png(tmp_path):
    path = tmp_path / "cut.png"
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _load_fails(path, "truncated or corrupt")


def test_over_max_pixels(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("L", (40, 30)).save(path)
    monkeypatch.setattr(images, "MAX_PIXELS", 40 * 30 - 1)
    _load_fails(path, "more than the 1,199 allowed")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims to be width x height, without the pixel data to back it."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


# 10k x 10k is past Pillow's warning limit; 20k x 20k is past its error limit.
@pytest.mark.parametrize("side", [10_000, 20_000])
def test_decompression_bomb_header(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(side, side))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning must not escape
        _load_fails(path, "allowed")
