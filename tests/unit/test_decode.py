"""The one image decoder: bit depth, transparency, orientation, errors (ssgrl.data.decode)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from ssgrl.data.decode import ALPHA_BACKGROUND, ImageDecodeError, decode_image, open_image

WHITE = np.array(ALPHA_BACKGROUND, dtype=np.int64)


def _round257(values: np.ndarray) -> np.ndarray:
    """The ideal 16 -> 8 bit mapping round(v / 257)."""
    return np.rint(values.astype(np.float64) / 257.0).astype(np.int64)


def _over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """round((c * a + bg * (255 - a)) / 255) per channel."""
    a = alpha.astype(np.int64)[..., None]
    return np.rint((rgb.astype(np.int64) * a + WHITE * (255 - a)) / 255.0).astype(np.int64)


def _write_png16(path: Path, arr: np.ndarray, color_type: int) -> None:
    """A 16-bit PNG (Pillow cannot write 16-bit RGB / gray+alpha): (H, W[, bands]) uint16."""
    h, w = arr.shape[:2]
    rows = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _png_bit_depth(path: Path) -> int:
    return path.read_bytes()[24]  # IHDR: 8 signature + 8 chunk head + 4 width + 4 height


def _decoded(path: Path) -> np.ndarray:
    img = open_image(path)
    assert img.mode == "RGB"
    return np.asarray(img).astype(np.int64)


def test_16bit_gray_png_is_scaled_not_saturated(tmp_path: Path) -> None:
    values = np.concatenate([[0, 30000, 65535, 128 * 257, 128], np.arange(0, 65536, 251)])
    arr = values.astype("<u2").reshape(1, -1)
    path = tmp_path / "gray16.png"
    Image.fromarray(arr).save(path)
    assert _png_bit_depth(path) == 16
    with Image.open(path) as check:
        assert check.mode in ("I;16", "I")
    out = _decoded(path)
    assert tuple(out[0, 1]) == (117, 117, 117)  # round(30000 / 65535 * 255), was 255
    assert tuple(out[0, 0]) == (0, 0, 0) and tuple(out[0, 2]) == (255, 255, 255)
    np.testing.assert_array_equal(out, np.repeat(_round257(arr)[..., None], 3, axis=2))


def test_16bit_rgb_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 65536, size=(4, 5, 3), dtype=np.uint16)
    arr[0, 0] = (30000, 0, 65535)
    path = tmp_path / "rgb48.png"
    _write_png16(path, arr, color_type=2)
    assert _png_bit_depth(path) == 16
    out = _decoded(path)
    # Pillow keeps the high byte of each sample: within 1 of the ideal round(v / 257)
    assert np.abs(out - _round257(arr)).max() <= 1
    assert tuple(out[0, 0]) == (117, 0, 255)


def test_16bit_gray_alpha_png(tmp_path: Path) -> None:
    arr = np.array([[[30000, 65535], [30000, 0], [0, 32896]]], dtype=np.uint16)  # (1, 3, LA)
    path = tmp_path / "la32.png"
    _write_png16(path, arr, color_type=4)
    assert _png_bit_depth(path) == 16
    out = _decoded(path)
    assert tuple(out[0, 0]) == (117, 117, 117)  # opaque
    assert tuple(out[0, 1]) == ALPHA_BACKGROUND  # transparent: the hidden grey is gone
    assert tuple(out[0, 2]) == (127, 127, 127)  # black at alpha 128/255 over white


def test_rgba_transparency_is_composited(tmp_path: Path) -> None:
    rgba = np.array(
        [[[255, 0, 0, 0], [255, 0, 0, 128], [0, 255, 0, 255], [10, 20, 30, 77]]], np.uint8
    )
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    out = _decoded(path)
    assert tuple(out[0, 0]) == ALPHA_BACKGROUND  # hidden red at alpha 0
    assert np.abs(out[0, 1] - (255, 128, 128)).max() <= 1  # 50% red over white
    assert tuple(out[0, 2]) == (0, 255, 0)
    np.testing.assert_array_equal(out, _over_white(rgba[..., :3], rgba[..., 3]))


def test_la_transparency_is_composited(tmp_path: Path) -> None:
    la = np.array([[[0, 0], [0, 128], [50, 255], [200, 30]]], np.uint8)
    path = tmp_path / "la.png"
    Image.fromarray(la, "LA").save(path)
    with Image.open(path) as check:
        assert check.mode == "LA"
    out = _decoded(path)
    expected = _over_white(np.repeat(la[..., :1], 3, axis=2), la[..., 1])
    np.testing.assert_array_equal(out, expected)
    assert tuple(out[0, 0]) == ALPHA_BACKGROUND


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_palette_with_transparent_index(tmp_path: Path, suffix: str) -> None:
    img = Image.new("P", (3, 1))
    img.putpalette([0, 0, 255, 255, 0, 0, 0, 128, 0] + [0] * (256 * 3 - 9))
    img.putdata([0, 1, 2])  # blue, red (transparent), green
    path = tmp_path / f"palette{suffix}"
    img.save(path, transparency=1)
    with Image.open(path) as check:
        assert check.mode == "P" and check.info.get("transparency") is not None
    out = _decoded(path)
    assert [tuple(p) for p in out[0]] == [(0, 0, 255), ALPHA_BACKGROUND, (0, 128, 0)]


def test_opaque_rgba_equals_rgb(tmp_path: Path) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, size=(6, 7, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, np.full((6, 7, 1), 255, np.uint8)], axis=2)
    path = tmp_path / "opaque.png"
    Image.fromarray(rgba, "RGBA").save(path)
    np.testing.assert_array_equal(_decoded(path), rgb)


def test_rgb_jpeg_is_plain_pillow_without_copy(tmp_path: Path) -> None:
    rgb = np.random.default_rng(2).integers(0, 256, size=(16, 24, 3), dtype=np.uint8)
    path = tmp_path / "photo.jpg"
    Image.fromarray(rgb).save(path, quality=90)
    with Image.open(path) as plain:
        expected = np.asarray(plain.convert("RGB"))
    np.testing.assert_array_equal(np.asarray(open_image(path)), expected)
    with Image.open(path) as img:
        img.load()
        assert decode_image(img) is img  # the common case makes no copy


def test_gray_l_is_replicated(tmp_path: Path) -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    path = tmp_path / "gray.png"
    Image.fromarray(gray, "L").save(path)
    np.testing.assert_array_equal(_decoded(path), np.repeat(gray[..., None], 3, axis=2))


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "I;16"])
def test_exif_orientation_is_applied(tmp_path: Path, mode: str) -> None:
    # 2 x 3 (w x h) image; EXIF orientation 6 = rotate 90 degrees clockwise to display
    values = np.arange(6, dtype=np.uint8).reshape(3, 2) * 40 + 10
    if mode == "RGB":
        img = Image.fromarray(np.repeat(values[..., None], 3, axis=2))
    elif mode == "RGBA":
        img = Image.fromarray(
            np.concatenate(
                [np.repeat(values[..., None], 3, axis=2), np.full((3, 2, 1), 255, np.uint8)], 2
            ),
            "RGBA",
        )
    else:
        img = Image.fromarray(values.astype("<u2") * 257)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.png"
    img.save(path, exif=exif)
    out = open_image(path)
    assert out.size == (3, 2)
    expected = np.rot90(values, k=-1)  # clockwise
    np.testing.assert_array_equal(np.asarray(out)[..., 0], expected)
    with Image.open(path) as raw:
        assert ImageOps.exif_transpose(raw).size == out.size  # agrees with plain Pillow


def test_float_and_32bit_images() -> None:
    f = Image.fromarray(np.array([[0.0, 0.5, 1.0, 2.0, -1.0, np.nan]], np.float32))
    assert f.mode == "F"
    assert np.asarray(decode_image(f))[0, :, 0].tolist() == [0, 128, 255, 255, 0, 0]
    i = Image.fromarray(np.array([[0, 2**31 - 1, -5, 2**30]], np.int32))
    assert i.mode == "I"
    assert np.asarray(decode_image(i))[0, :, 0].tolist() == [0, 255, 0, 128]


def test_palette_without_transparency_and_cmyk() -> None:
    p = Image.new("RGB", (2, 2), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE)
    assert np.asarray(decode_image(p)).reshape(-1, 3).tolist() == [[10, 200, 30]] * 4
    cmyk = Image.new("CMYK", (1, 1), (0, 0, 0, 0))
    assert decode_image(cmyk).getpixel((0, 0)) == (255, 255, 255)


def test_truncated_and_empty_files_name_the_path(tmp_path: Path) -> None:
    rgb = np.random.default_rng(3).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    whole = tmp_path / "whole.jpg"
    Image.fromarray(rgb).save(whole)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    png = tmp_path / "whole.png"
    Image.fromarray(rgb).save(png)
    truncated_png = tmp_path / "truncated.png"
    truncated_png.write_bytes(png.read_bytes()[: png.stat().st_size // 2])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for path in (truncated, truncated_png, empty):
        with pytest.raises(ImageDecodeError, match="not a readable image") as info:
            open_image(path)
        assert str(path) in str(info.value)
    with pytest.raises(ImageDecodeError, match=r"missing\.png: no such file"):
        open_image(tmp_path / "missing.png")


def test_decoding_a_decoded_image_does_not_turn_it_again(tmp_path: Path) -> None:
    """``Predictor`` runs ``decode_image`` on images it is given, which may come from
    ``open_image``: an EXIF-rotated photo must not be rotated a second time."""
    pixels = (np.arange(10 * 20 * 3) % 251).astype(np.uint8).reshape(10, 20, 3)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    path = tmp_path / "rotated.png"
    image.save(path, exif=exif.tobytes())
    once = open_image(path)
    twice = decode_image(once)
    assert once.size == (10, 20)
    assert np.array_equal(np.asarray(twice), np.asarray(once))
