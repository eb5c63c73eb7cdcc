"""Tests of unetsr.imaging.photos: every image is made here, tiny, with Pillow, pypng or by hand."""

from __future__ import annotations

import dataclasses
import os
import signal
import struct
import subprocess
import sys
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np
import png
import pytest
from PIL import Image, ImageCms, ImageOps, PngImagePlugin

from unetsr.core.errors import ImageError
from unetsr.imaging import png16
from unetsr.imaging.metadata import JPEG_SEGMENT_BYTES, MAX_ICC_BYTES, is_unetsr_output
from unetsr.imaging.photos import (
    Picture,
    output_format,
    read_image,
    same_file,
    write_image,
)

SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
ORIENTATION, MAKE, EXIF_IFD, DATE_TIME_ORIGINAL = 0x0112, 0x010F, 0x8769, 0x9003


def rgb8(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A random H×W×3 uint8 image."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def exif_block(orientation: int) -> Image.Exif:
    """EXIF with an orientation, a camera make in IFD0 and a capture date in the Exif sub-IFD."""
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[MAKE] = "unetsr-test"
    exif.get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] = "2024:05:06 07:08:09"
    return exif


def write_png16(path: Path, samples: np.ndarray) -> Path:
    """Write H×W×C uint16 samples (C = 1, 2, 3, 4) as a 16-bit PNG with pypng."""
    h, w, c = samples.shape
    writer = png.Writer(w, h, greyscale=c <= 2, alpha=c in (2, 4), bitdepth=16)
    with open(path, "wb") as f:
        writer.write(f, samples.reshape(h, w * c).tolist())
    return path


def read_png16(path: Path) -> np.ndarray:
    """Read a PNG with pypng, independently of unetsr.imaging.photos, as H×W×C integers."""
    w, h, rows, info = png.Reader(filename=str(path)).asDirect()
    return np.array([list(row) for row in rows]).reshape(h, w, info["planes"])


def as_uint8(picture: Picture) -> np.ndarray:
    return (picture.rgb * 255 + 0.5).astype(np.uint8)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def assert_one_line_naming(error: pytest.ExceptionInfo[ImageError], path: Path) -> None:
    message = str(error.value)
    assert path.name in message
    assert "\n" not in message


# --- EXIF orientation ---------------------------------------------------------------------------------------


def test_orientation_6_turns_a_4x2_image_upright(tmp_path: Path) -> None:
    stored = np.zeros((2, 4, 3), np.uint8)
    stored[..., 0] = [[0, 1, 2, 3], [10, 11, 12, 13]]  # red = 10 * row + column
    path = tmp_path / "turned.png"
    Image.fromarray(stored).save(path, exif=exif_block(6))

    red = as_uint8(read_image(path))[..., 0]

    assert red.shape == (4, 2)  # a quarter turn: 4 wide by 2 high becomes 2 wide by 4 high
    assert red[0].tolist() == [10, 0]  # the stored top-left pixel is now top-right
    assert red[:, 1].tolist() == [0, 1, 2, 3]  # the stored top row runs down the right edge
    assert red[3].tolist() == [13, 3]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pillows_exif_transpose(tmp_path: Path, orientation: int) -> None:
    path = tmp_path / f"o{orientation}.png"
    Image.fromarray(rgb8(2, 3)).save(path, exif=exif_block(orientation))

    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)))

    np.testing.assert_array_equal(as_uint8(read_image(path)), expected)


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp"])
def test_output_exif_has_orientation_1_and_keeps_other_tags(tmp_path: Path, suffix: str) -> None:
    source = tmp_path / "in.jpg"
    Image.fromarray(rgb8(8, 16)).save(source, exif=exif_block(6), quality=95)
    picture = read_image(source)

    out = write_image(tmp_path / f"out{suffix}", picture)

    exif = Image.open(out).getexif()
    assert exif[ORIENTATION] == 1
    assert exif[MAKE] == "unetsr-test"
    assert exif.get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] == "2024:05:06 07:08:09"
    assert Image.open(out).size == (8, 16)  # written upright, so a viewer must not turn it again


def test_jpeg_with_orientation_is_read_upright(tmp_path: Path) -> None:
    stored = np.zeros((16, 32, 3), np.uint8)
    stored[:, :16] = 255  # left half white in the stored pixels
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, exif=exif_block(6), quality=95)

    rgb = read_image(path).rgb

    assert rgb.shape == (32, 16, 3)
    assert rgb[:14].mean() > 0.95 and rgb[18:].mean() < 0.05  # a clockwise turn puts the left half on top


# --- ICC profiles --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_icc_profile_round_trips_into_the_output(tmp_path: Path, suffix: str) -> None:
    source = tmp_path / "tagged.png"
    Image.fromarray(rgb8(4, 5)).save(source, icc_profile=SRGB_ICC)
    picture = read_image(source)
    assert picture.icc_profile == SRGB_ICC

    out = write_image(tmp_path / f"out{suffix}", picture)

    assert Image.open(out).info["icc_profile"] == SRGB_ICC


def test_icc_profile_round_trips_through_a_16_bit_png(tmp_path: Path) -> None:
    picture = Picture(np.full((3, 4, 3), 0.5, np.float32), None, 16, False, SRGB_ICC, None)

    out = write_image(tmp_path / "out.png", picture)

    assert Image.open(out).info["icc_profile"] == SRGB_ICC
    assert read_image(out).icc_profile == SRGB_ICC


def test_grey_picture_written_as_webp_drops_an_rgb_profile_only_when_it_does_not_fit(tmp_path: Path) -> None:
    grey = Picture(np.full((4, 4, 3), 0.5, np.float32), None, 8, True, SRGB_ICC, None)

    png_out = write_image(tmp_path / "grey.png", grey)  # an L image cannot carry an RGB profile

    assert Image.open(png_out).mode == "L"
    assert "icc_profile" not in Image.open(png_out).info
    assert Image.open(write_image(tmp_path / "grey.webp", grey)).info["icc_profile"] == SRGB_ICC


def profile_of(size: int) -> bytes:
    """A valid sRGB ICC profile padded to `size` bytes (large profiles, with big lookup tables, exist)."""
    big = bytearray(SRGB_ICC) + bytes(size - len(SRGB_ICC))
    big[:4] = struct.pack(">I", size)
    return bytes(big)


def test_a_png_with_a_5_mb_icc_profile_is_read_and_its_profile_kept(tmp_path: Path) -> None:
    profile = profile_of(5_000_000)  # beyond Pillow's 1 MB limit on PNG metadata: "damaged or truncated" before
    source = tmp_path / "wide.png"
    Image.fromarray(rgb8(4, 5)).save(source, icc_profile=profile)

    picture = read_image(source)
    notes: list[str] = []
    out = write_image(tmp_path / "out.jpg", picture, notes=notes)  # 77 APP2 segments

    assert picture.icc_profile == profile and picture.notes == ()
    assert read_image(out).icc_profile == profile and notes == []


def test_an_icc_profile_larger_than_any_format_holds_is_left_out_with_a_note(tmp_path: Path) -> None:
    source = tmp_path / "huge.png"
    Image.fromarray(rgb8(4, 5)).save(source)
    data = source.read_bytes()
    iccp = png_chunk(b"iCCP", b"big\x00\x00" + zlib.compress(profile_of(MAX_ICC_BYTES + 1000)))
    source.write_bytes(data[:33] + iccp + data[33:])  # right after IHDR

    picture = read_image(source)
    notes: list[str] = []
    write_image(tmp_path / "out.jpg", dataclasses.replace(picture, icc_profile=profile_of(MAX_ICC_BYTES + 1)),
                notes=notes)

    assert picture.icc_profile is None and np.array_equal(as_uint8(picture), rgb8(4, 5))
    expected = "its ICC profile is larger than the 16.7 MB unetsr keeps; left out, so the colours are taken as sRGB"
    assert picture.notes == (expected,)
    assert notes == ["the ICC profile (16.7 MB) is more than a JPEG holds (16.7 MB): left out"]
    assert "icc_profile" not in Image.open(tmp_path / "out.jpg").info


# --- transparency --------------------------------------------------------------------------------------------


def test_alpha_is_kept_apart_and_reattached_on_write(tmp_path: Path) -> None:
    rgba = np.concatenate([rgb8(4, 6), np.arange(24, dtype=np.uint8).reshape(4, 6, 1) * 10], axis=2)
    source = tmp_path / "rgba.png"
    Image.fromarray(rgba).save(source)

    picture = read_image(source)
    assert picture.rgb.shape == (4, 6, 3)
    np.testing.assert_array_equal((picture.alpha * 255 + 0.5).astype(np.uint8), rgba[..., 3])

    out = write_image(tmp_path / "out.png", picture)
    assert Image.open(out).mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(Image.open(out)), rgba)


def test_fully_opaque_alpha_becomes_none(tmp_path: Path) -> None:
    source = tmp_path / "opaque.png"
    Image.fromarray(rgb8(3, 3)).convert("RGBA").save(source)

    picture = read_image(source)

    assert picture.alpha is None
    assert Image.open(write_image(tmp_path / "out.png", picture)).mode == "RGB"


def test_palette_with_transparent_index(tmp_path: Path) -> None:
    indices = np.array([[0, 1], [2, 0]], np.uint8)
    image = Image.frombytes("P", (2, 2), indices.tobytes())
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    source = tmp_path / "palette.png"
    image.save(source, transparency=1)  # index 1 (green) is see-through: a tRNS chunk

    picture = read_image(source)

    assert picture.alpha is not None
    assert picture.alpha.tolist() == [[1.0, 0.0], [1.0, 1.0]]
    assert picture.rgb[0, 0].tolist() == [1.0, 0.0, 0.0]
    assert picture.rgb[1, 0].tolist() == [0.0, 0.0, 1.0]
    assert Image.open(write_image(tmp_path / "out.png", picture)).mode == "RGBA"


def test_palette_without_transparency_is_opaque_rgb(tmp_path: Path) -> None:
    source = tmp_path / "palette.gif"
    Image.fromarray(rgb8(4, 4)).quantize(8).save(source)

    picture = read_image(source)

    assert picture.alpha is None and not picture.grayscale
    np.testing.assert_array_equal(as_uint8(picture), np.asarray(Image.open(source).convert("RGB")))


def test_jpeg_output_composites_alpha_onto_white(tmp_path: Path) -> None:
    alpha = np.zeros((8, 8), np.float32)
    alpha[:, 4:] = 1.0
    picture = Picture(np.zeros((8, 8, 3), np.float32), alpha, 8, False, None, None)

    out = np.asarray(Image.open(write_image(tmp_path / "out.jpg", picture)))

    assert out[:, :3].min() > 240  # transparent black shows the white below
    assert out[:, 5:].max() < 15


# --- grayscale -----------------------------------------------------------------------------------------------


def test_grayscale_in_grayscale_out(tmp_path: Path) -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    source = tmp_path / "grey.png"
    Image.fromarray(grey).save(source)

    picture = read_image(source)
    assert picture.grayscale and picture.bit_depth == 8 and picture.alpha is None
    assert np.array_equal(picture.rgb[..., 0], picture.rgb[..., 2])

    for suffix, mode in [(".png", "L"), (".jpg", "L"), (".webp", "RGB")]:
        out = Image.open(write_image(tmp_path / f"out{suffix}", picture))
        assert out.mode == mode
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out.png")), grey)


def test_grey_output_is_the_luminance_of_colour_pixels(tmp_path: Path) -> None:
    rgb = np.zeros((1, 3, 3), np.float32)
    rgb[0, 0, 0], rgb[0, 1, 1], rgb[0, 2, 2] = 1.0, 1.0, 1.0  # pure red, green, blue
    picture = Picture(rgb, None, 8, True, None, None)

    out = np.asarray(Image.open(write_image(tmp_path / "out.png", picture)))

    assert out.tolist() == [[76, 150, 29]]  # 255 × (0.299, 0.587, 0.114), rounded


def test_grey_with_alpha_comes_back_as_la(tmp_path: Path) -> None:
    la = np.stack([np.full((2, 3), 100, np.uint8), np.array([[0, 128, 255], [255, 255, 255]], np.uint8)], axis=2)
    source = tmp_path / "la.png"
    Image.fromarray(la).save(source)

    picture = read_image(source)
    out = Image.open(write_image(tmp_path / "out.png", picture))

    assert picture.grayscale and picture.alpha is not None
    assert out.mode == "LA"
    np.testing.assert_array_equal(np.asarray(out), la)


def test_bilevel_image_reads_as_black_and_white_grey(tmp_path: Path) -> None:
    source = tmp_path / "bilevel.png"
    Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).convert("1").save(source)

    picture = read_image(source)

    assert picture.grayscale
    assert picture.rgb[..., 0].tolist() == [[0.0, 1.0], [1.0, 0.0]]


# --- other colour modes --------------------------------------------------------------------------------------


def test_cmyk_becomes_sensible_rgb_without_the_cmyk_profile(tmp_path: Path) -> None:
    cmyk = np.array([[[255, 0, 0, 0], [0, 255, 255, 0], [0, 0, 0, 255], [0, 0, 0, 0]]], np.uint8)
    source = tmp_path / "cmyk.tif"
    Image.frombytes("CMYK", (4, 1), cmyk.tobytes()).save(source)

    picture = read_image(source)

    np.testing.assert_allclose(picture.rgb[0], [[0, 1, 1], [1, 0, 0], [0, 0, 0], [1, 1, 1]], atol=0.02)
    assert picture.icc_profile is None and not picture.grayscale


def test_cmyk_with_a_broken_profile_still_reads(tmp_path: Path) -> None:
    source = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (4, 4), (0, 0, 0, 0)).save(source, icc_profile=b"not a profile" * 20)

    picture = read_image(source)

    assert picture.rgb.min() > 0.95 and picture.icc_profile is None


def test_cmyk_with_a_profile_is_converted_through_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (4, 4), (0, 0, 0, 0)).save(source, icc_profile=SRGB_ICC)  # any parsable profile will do
    calls = []

    def convert(im: Image.Image, source_profile, target_profile, outputMode: str) -> Image.Image:
        calls.append((source_profile.tobytes(), outputMode))
        return Image.new("RGB", im.size, (0, 128, 255))

    monkeypatch.setattr(ImageCms, "profileToProfile", convert)
    picture = read_image(source)

    assert calls == [(SRGB_ICC, "RGB")]
    assert as_uint8(picture)[0, 0].tolist() == [0, 128, 255]
    assert picture.icc_profile is None  # the pixels are sRGB now


def test_lab_tiff_is_converted_to_srgb(tmp_path: Path) -> None:
    source = tmp_path / "lab.tif"
    Image.new("LAB", (2, 2), (255, 128, 128)).save(source)  # L* = 100, neutral: white

    picture = read_image(source)

    assert picture.rgb.min() > 0.97 and picture.icc_profile is None


def test_ycbcr_tiff_is_converted_to_rgb(tmp_path: Path) -> None:
    source = tmp_path / "ycbcr.tif"
    Image.new("RGB", (2, 2), (200, 30, 60)).convert("YCbCr").save(source)

    np.testing.assert_allclose(read_image(source).rgb[0, 0] * 255, [200, 30, 60], atol=3)


def test_float_tiff_keeps_fine_values(tmp_path: Path) -> None:
    source = tmp_path / "float.tif"
    Image.frombytes("F", (2, 1), np.array([0.25, 2.0], np.float32).tobytes()).save(source)

    picture = read_image(source)

    assert picture.grayscale and picture.bit_depth == 16
    assert picture.rgb[0, :, 0].tolist() == [0.25, 1.0]


# --- 8 and 16 bits -------------------------------------------------------------------------------------------


def test_8_bit_png_round_trips_exactly(tmp_path: Path) -> None:
    source = tmp_path / "in.png"
    Image.fromarray(rgb8(5, 7)).save(source)

    picture = read_image(source)
    out = write_image(tmp_path / "out.png", picture)

    assert picture.rgb.dtype == np.float32 and picture.bit_depth == 8
    np.testing.assert_array_equal(np.asarray(Image.open(out)), rgb8(5, 7))


def test_16_bit_grey_png_keeps_values_finer_than_8_bits(tmp_path: Path) -> None:
    grey = np.array([[1000, 1001], [65535, 0]], np.uint16)
    source = tmp_path / "grey16.png"
    Image.fromarray(grey).save(source)  # Pillow writes I;16 as a 16-bit grey PNG

    picture = read_image(source)
    assert picture.bit_depth == 16 and picture.grayscale
    assert picture.rgb[0, 0, 0] != picture.rgb[0, 1, 0]

    out = write_image(tmp_path / "out.png", picture)
    again = read_image(out)

    assert Image.open(out).mode == "I;16"
    np.testing.assert_array_equal(np.asarray(Image.open(out)), grey)
    np.testing.assert_array_equal(again.rgb, picture.rgb)


def test_16_bit_grey_tiff_keeps_values_finer_than_8_bits(tmp_path: Path) -> None:
    source = tmp_path / "grey16.tif"
    Image.fromarray(np.array([[1000, 1001]], np.uint16)).save(source)

    picture = read_image(source)

    assert picture.bit_depth == 16
    assert (picture.rgb[0, :, 0] * 65535).round().tolist() == [1000, 1001]


def test_pillow_alone_would_crush_16_bit_rgb_png(tmp_path: Path) -> None:
    """Why pypng is needed: Pillow opens a 16-bit RGB PNG as 8-bit RGB."""
    source = write_png16(tmp_path / "rgb16.png", np.array([[[1000, 1001, 65535]]], np.uint16))

    assert Image.open(source).mode == "RGB"
    assert read_image(source).bit_depth == 16


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16_bit_png_round_trips_every_value(tmp_path: Path, channels: int) -> None:
    samples = np.random.default_rng(channels).integers(0, 65536, (5, 6, channels), dtype=np.uint16)
    samples[0, 0, 0], samples[0, 1, 0] = 1000, 1001
    if channels in (2, 4):
        samples[..., -1][0, 0] = 0  # make sure the alpha is not fully opaque
    source = write_png16(tmp_path / "in16.png", samples)

    picture = read_image(source)
    assert picture.bit_depth == 16
    assert picture.grayscale == (channels <= 2)
    assert (picture.alpha is not None) == (channels in (2, 4))
    assert picture.rgb[0, 0, 0] != picture.rgb[0, 1, 0]

    out = write_image(tmp_path / "out16.png", picture)

    np.testing.assert_array_equal(read_png16(out), samples)  # checked by pypng, not by our own reader
    again = read_image(out)
    np.testing.assert_array_equal(again.rgb, picture.rgb)
    Image.open(out).load()  # Pillow, too, accepts the file


def test_16_bit_png_with_orientation_is_read_upright(tmp_path: Path) -> None:
    rgb = np.zeros((2, 4, 3), np.float32)
    rgb[0, 0] = 1000 / 65535  # stored top-left
    picture = Picture(rgb, None, 16, False, None, exif_block(8).tobytes())
    out = write_image(tmp_path / "turned16.png", picture)

    again = read_image(out)

    assert again.rgb.shape == (4, 2, 3)
    assert round(again.rgb[3, 0, 0] * 65535) == 1000  # a quarter turn counter-clockwise: now bottom-left
    assert Image.open(write_image(tmp_path / "again.png", again)).getexif()[ORIENTATION] == 1


def test_16_bit_picture_is_written_as_8_bits_to_jpeg_and_webp(tmp_path: Path) -> None:
    picture = Picture(np.full((4, 4, 3), 0.5, np.float32), None, 16, False, None, None)

    for suffix in (".jpg", ".webp"):
        assert Image.open(write_image(tmp_path / f"out{suffix}", picture)).mode == "RGB"


def test_writing_rounds_and_clips_instead_of_truncating(tmp_path: Path) -> None:
    values = np.array([10.49, 10.51, -20.0, 300.0, np.nan, 254.6], np.float32) / 255
    picture = Picture(np.repeat(values.reshape(1, 6, 1), 3, axis=2), None, 8, False, None, None)

    out = np.asarray(Image.open(write_image(tmp_path / "out.png", picture)))

    assert out[0, :, 0].tolist() == [10, 11, 0, 255, 0, 255]


# --- unreadable input ----------------------------------------------------------------------------------------


def make_truncated_png(path: Path) -> Path:
    Image.fromarray(rgb8(64, 64)).save(path)
    path.write_bytes(path.read_bytes()[:3000])
    return path


def make_truncated_jpeg(path: Path) -> Path:
    Image.fromarray(rgb8(64, 64)).save(path, quality=95)
    path.write_bytes(path.read_bytes()[:2000])
    return path


def make_truncated_png16(path: Path) -> Path:
    write_png16(path, np.random.default_rng(0).integers(0, 65536, (64, 64, 3), dtype=np.uint16))
    path.write_bytes(path.read_bytes()[:3000])
    return path


@pytest.mark.parametrize(
    "make",
    [
        make_truncated_png,
        make_truncated_jpeg,
        make_truncated_png16,
        lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)),
        lambda p: p.write_text("this is a shopping list, not a picture\n"),
        lambda p: p.write_bytes(b""),
    ],
    ids=["truncated-png", "truncated-jpeg", "truncated-png16", "random-bytes", "text", "empty"],
)
def test_damaged_or_foreign_files_raise_one_line_image_error(tmp_path: Path, make) -> None:
    path = tmp_path / "broken.png"
    make(path)

    with pytest.raises(ImageError) as error:
        read_image(path)

    assert_one_line_naming(error, path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file") as error:
        read_image(tmp_path / "nowhere.png")
    assert_one_line_naming(error, tmp_path / "nowhere.png")


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "album.png"
    folder.mkdir()
    with pytest.raises(ImageError, match="directory") as error:
        read_image(folder)
    assert_one_line_naming(error, folder)


# --- decompression bombs -------------------------------------------------------------------------------------


def make_bomb(path: Path, width: int, height: int) -> Path:
    """A PNG of a few dozen bytes whose header claims width × height pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunks = png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"")) + png_chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)
    return path


def test_decompression_bomb_is_refused_with_its_size(tmp_path: Path) -> None:
    bomb = make_bomb(tmp_path / "bomb.png", 12000, 12000)
    assert bomb.stat().st_size < 100

    with pytest.raises(ImageError) as error:
        read_image(bomb)

    assert str(error.value) == f"{bomb} is 12000×12000 = 144 MP, over the 100 MP limit (--max-pixels)"


def test_pillows_own_bomb_error_never_surfaces(tmp_path: Path) -> None:
    bomb = make_bomb(tmp_path / "bomb.png", 30000, 30000)  # past twice Pillow's limit: Pillow would raise
    with pytest.raises(Image.DecompressionBombError):
        Image.open(bomb)

    with pytest.raises(ImageError, match="900 MP, over the 100 MP limit"):
        read_image(bomb)


def test_max_pixels_is_configurable_both_ways(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "small.png"
    Image.fromarray(rgb8(10, 10)).save(source)

    with pytest.raises(ImageError, match="small.png is 10×10"):
        read_image(source, max_pixels=99)

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20)  # Pillow's global limit plays no part
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(source, max_pixels=100).rgb.shape == (10, 10, 3)
    assert Image.MAX_IMAGE_PIXELS == 20


# --- writing -------------------------------------------------------------------------------------------------


@pytest.fixture
def picture() -> Picture:
    return Picture(rgb8(16, 16).astype(np.float32) / 255, None, 8, False, None, None)


def test_refuses_to_overwrite_unless_asked(tmp_path: Path, picture: Picture) -> None:
    out = tmp_path / "out.png"
    out.write_bytes(b"precious")

    with pytest.raises(ImageError, match="already exists") as error:
        write_image(out, picture)
    assert_one_line_naming(error, out)
    assert out.read_bytes() == b"precious"

    write_image(out, picture, overwrite=True)
    assert Image.open(out).size == (16, 16)


def test_never_writes_over_the_source_image(tmp_path: Path, picture: Picture) -> None:
    source = tmp_path / "photo.png"
    write_image(source, picture)
    before = source.read_bytes()
    other_spelling = tmp_path / "sub" / ".." / "photo.png"
    (tmp_path / "sub").mkdir()

    with pytest.raises(ImageError, match="input image"):
        write_image(other_spelling, picture, overwrite=True, source=source)
    assert source.read_bytes() == before


def test_same_file_sees_through_spellings_and_links(tmp_path: Path) -> None:
    a = tmp_path / "a.png"
    a.write_bytes(b"x")
    (tmp_path / "link.png").symlink_to(a)

    assert same_file(a, tmp_path / "link.png")
    assert same_file(a, tmp_path / "." / "a.png")
    assert same_file(tmp_path / "new.png", tmp_path / "." / "new.png")  # neither exists yet
    assert not same_file(a, tmp_path / "b.png")


def test_failed_write_leaves_no_temporary_file_and_the_old_file_untouched(
    tmp_path: Path, picture: Picture, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out.png"
    out.write_bytes(b"precious")

    def fail_midway(self: Image.Image, fp, *args, **kwargs) -> None:
        fp.write(b"half an image")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", fail_midway)
    with pytest.raises(ImageError, match="No space left on device") as error:
        write_image(out, picture, overwrite=True)

    assert_one_line_naming(error, out)
    assert out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_interrupted_16_bit_write_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    picture = Picture(np.zeros((4, 4, 3), np.float32), None, 16, False, None, None)

    def interrupt(*args, **kwargs) -> bytes:
        raise KeyboardInterrupt

    monkeypatch.setattr(png16, "chunk", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_image(tmp_path / "out.png", picture)

    assert list(tmp_path.iterdir()) == []


def test_missing_output_folder_is_one_line_error(tmp_path: Path, picture: Picture) -> None:
    out = tmp_path / "no" / "such" / "folder" / "out.png"
    with pytest.raises(ImageError, match="does not exist") as error:
        write_image(out, picture)
    assert_one_line_naming(error, out)


def test_output_path_that_is_a_directory(tmp_path: Path, picture: Picture) -> None:
    with pytest.raises(ImageError, match="directory"):
        write_image(tmp_path, picture, overwrite=True)


def test_written_file_has_the_usual_permissions(tmp_path: Path, picture: Picture) -> None:
    out = write_image(tmp_path / "out.png", picture)
    reference = tmp_path / "reference"
    reference.write_bytes(b"")

    assert out.stat().st_mode == reference.stat().st_mode


@pytest.mark.parametrize("suffix", [".jpg", ".webp"])
def test_quality_controls_size_and_fidelity(tmp_path: Path, picture: Picture, suffix: str) -> None:
    original = as_uint8(picture).astype(float)
    low = write_image(tmp_path / f"low{suffix}", picture, quality=10)
    high = write_image(tmp_path / f"high{suffix}", picture, quality=95)

    def error(path: Path) -> float:
        return float(np.abs(np.asarray(Image.open(path).convert("RGB"), float) - original).mean())

    assert high.stat().st_size > low.stat().st_size
    assert error(high) < error(low)


def test_format_comes_from_the_argument_or_the_suffix(tmp_path: Path, picture: Picture) -> None:
    assert Image.open(write_image(tmp_path / "a.jpeg", picture)).format == "JPEG"
    assert Image.open(write_image(tmp_path / "b.png", picture, format="webp")).format == "WEBP"
    assert Image.open(write_image(tmp_path / "c", picture)).format == "PNG"
    assert output_format("x.JPG") == "jpg" and output_format("x.tif", "jpeg") == "jpg"
    with pytest.raises(ImageError, match=r"\.tif"):
        output_format("x.tif")
    with pytest.raises(ImageError, match="bmp"):
        output_format("x.png", "bmp")


def test_picture_checks_its_shapes() -> None:
    with pytest.raises(ValueError):
        Picture(np.zeros((4, 4), np.float32), None, 8, False, None, None)
    with pytest.raises(ValueError):
        Picture(np.zeros((4, 4, 3), np.float32), np.zeros((2, 2), np.float32), 8, False, None, None)


def test_upscaled_picture_is_written_with_the_source_metadata(tmp_path: Path) -> None:
    source = tmp_path / "in.png"
    Image.fromarray(rgb8(4, 4)).save(source, icc_profile=SRGB_ICC, exif=exif_block(1))
    picture = read_image(source)
    bigger = np.repeat(np.repeat(picture.rgb, 2, axis=0), 2, axis=1)

    out = Image.open(write_image(tmp_path / "out.png", dataclasses.replace(picture, rgb=bigger)))

    assert out.size == (8, 8)
    assert out.info["icc_profile"] == SRGB_ICC
    assert out.getexif()[MAKE] == "unetsr-test"


# --- hostile files -------------------------------------------------------------------------------------------


def tiff_exif(entries: list[tuple[int, int, int, bytes]], order: str = "<") -> bytes:
    """An EXIF block made by hand: IFD0 with (tag, type, count, 4-byte value field) entries."""
    ifd = struct.pack(order + "H", len(entries))
    ifd += b"".join(struct.pack(order + "HHI", tag, kind, count) + value for tag, kind, count, value in entries)
    return b"Exif\x00\x00" + (b"II" if order == "<" else b"MM") + struct.pack(order + "HI", 42, 8) + ifd + bytes(4)


@pytest.mark.parametrize("order", ["<", ">"])
def test_orientation_stored_as_long_is_applied_and_reset(tmp_path: Path, order: str) -> None:
    exif = tiff_exif([(MAKE, 2, 4, b"cam\x00"), (ORIENTATION, 4, 1, struct.pack(order + "I", 6))], order)  # LONG
    source = tmp_path / "long.jpg"
    Image.fromarray(rgb8(8, 16)).save(source, exif=exif, quality=95)

    picture = read_image(source)
    out = Image.open(write_image(tmp_path / "out.png", picture))

    assert picture.rgb.shape == (16, 8, 3)  # turned upright
    assert out.getexif()[ORIENTATION] == 1  # so a viewer must not turn it again
    assert out.getexif()[MAKE] == "cam"


def test_exif_too_large_for_a_jpeg_is_trimmed_with_a_note(tmp_path: Path) -> None:
    exif = exif_block(1)
    exif[0x010E] = "x" * 2_000_000  # ImageDescription: 2 MB, where a JPEG segment holds 64 KB
    picture = Picture(np.full((4, 4, 3), 0.5, np.float32), None, 8, False, None, exif.tobytes())

    notes: list[str] = []
    out = Image.open(write_image(tmp_path / "out.jpg", picture, notes=notes))
    with pytest.warns(UserWarning, match="more than a JPEG holds"):  # without a list, a warning
        write_image(tmp_path / "again.jpg", picture)

    assert notes == ["the EXIF (2.0 MB) is more than a JPEG holds (64 KB): kept it without ImageDescription"]
    assert out.getexif()[MAKE] == "unetsr-test" and 0x010E not in out.getexif()
    assert out.getexif().get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] == "2024:05:06 07:08:09"
    assert len(out.info["exif"]) <= JPEG_SEGMENT_BYTES
    png_out = Image.open(write_image(tmp_path / "out.png", picture))  # PNG holds it whole
    assert len(png_out.getexif()[0x010E]) == 2_000_000


def test_damaged_exif_becomes_a_note_not_a_warning(tmp_path: Path) -> None:
    source = tmp_path / "damaged.jpg"
    damaged = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00"  # IFD0 promises 5 entries and holds none
    Image.fromarray(rgb8(4, 4)).save(source, exif=damaged)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        picture = read_image(source)

    assert picture.rgb.shape == (4, 4, 3)
    assert len(picture.notes) == 1 and picture.notes[0].startswith("Corrupt EXIF data")


def test_nan_in_a_float_tiff_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "nan.tif"
    Image.frombytes("F", (3, 1), np.array([0.25, np.nan, np.inf], np.float32).tobytes()).save(source)

    with pytest.raises(ImageError, match="NaN or infinite") as error:
        read_image(source)
    assert_one_line_naming(error, source)


@pytest.mark.parametrize("suffix", [".gif", ".webp", ".png", ".tif"])
def test_animations_and_multi_page_files_are_refused(tmp_path: Path, suffix: str) -> None:
    source = tmp_path / f"frames{suffix}"
    frames = [Image.fromarray(rgb8(6, 6, seed)) for seed in range(3)]
    frames[0].save(source, save_all=True, append_images=frames[1:])

    with pytest.raises(ImageError, match="has 3 frames") as error:
        read_image(source)
    assert_one_line_naming(error, source)


def test_a_camera_jpeg_with_a_preview_is_not_an_animation(tmp_path: Path) -> None:
    source = tmp_path / "camera.jpg"
    Image.fromarray(rgb8(8, 8)).save(source, format="MPO", save_all=True, append_images=[Image.new("RGB", (2, 2))])
    assert Image.open(source).format == "MPO"

    assert read_image(source).rgb.shape == (8, 8, 3)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_refused_without_being_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)

    def unblock() -> None:  # should read_image open it after all, end it rather than hang the test
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass

    timer = threading.Timer(15, unblock)
    timer.start()
    try:
        with pytest.raises(ImageError, match=r"not a regular file \(a FIFO\)") as error:
            read_image(fifo)
    finally:
        timer.cancel()
    assert_one_line_naming(error, fifo)


def test_sigterm_during_a_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    script = """if True:
        import os, signal, sys, time
        import numpy as np
        from PIL import Image
        from unetsr.imaging.photos import Picture, write_image
        def save(self, fp, *args, **kwargs):
            fp.write(b"half an image")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)
        Image.Image.save = save
        write_image(sys.argv[1], Picture(np.zeros((4, 4, 3), np.float32), None, 8, False, None, None))
    """
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "out.png")], capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode in (143, -signal.SIGTERM), proc.stderr
    assert list(tmp_path.iterdir()) == []


# --- the output marker ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix, bit_depth", [(".png", 8), (".png", 16), (".jpg", 8), (".webp", 8)])
def test_every_output_carries_the_marker_and_photos_do_not(tmp_path: Path, suffix: str, bit_depth: int) -> None:
    picture = Picture(np.full((4, 6, 3), 0.5, np.float32), None, bit_depth, False, SRGB_ICC, exif_block(1).tobytes())
    photo = tmp_path / f"photo{suffix}"
    Image.fromarray(rgb8(4, 6)).save(photo, icc_profile=SRGB_ICC, exif=exif_block(1))

    out = write_image(tmp_path / f"out{suffix}", picture)

    assert is_unetsr_output(out)
    assert not is_unetsr_output(photo)
    assert Image.open(out).info["icc_profile"] == SRGB_ICC and Image.open(out).getexif()[MAKE] == "unetsr-test"


def test_the_marker_is_not_fooled_by_look_alikes_or_damage(tmp_path: Path) -> None:
    commented = tmp_path / "c.jpg"
    Image.fromarray(rgb8(4, 4)).save(commented, comment=b"made with a unetsr-like tool")
    texted = tmp_path / "t.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "unetsr")
    Image.fromarray(rgb8(4, 4)).save(texted, pnginfo=info)
    marked = write_image(tmp_path / "m.png", Picture(np.zeros((4, 4, 3), np.float32), None, 8, False, None, None))
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(marked.read_bytes()[:20])
    renamed = tmp_path / "holiday.jpeg"  # a marked PNG under another name is still recognised
    renamed.write_bytes(marked.read_bytes())

    assert not is_unetsr_output(commented) and not is_unetsr_output(texted)
    assert not is_unetsr_output(truncated) and not is_unetsr_output(tmp_path / "missing.png")
    assert is_unetsr_output(renamed)


def test_a_named_unsupported_format_says_why(tmp_path: Path) -> None:
    phone = tmp_path / "IMG_0001.HEIC"
    phone.write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(100))
    with pytest.raises(ImageError) as error:
        read_image(phone)
    assert str(error.value) == f"{phone}: HEIC is not supported; convert to JPEG or PNG"


def test_quantizing_in_bands_equals_the_whole_image_formula() -> None:
    from unetsr.imaging.photos import _quantize

    rng = np.random.default_rng(0)
    pixels = rng.uniform(-0.2, 1.2, (37, 5, 3)).astype(np.float32)
    pixels[3, 2, 1], pixels[30, 0, 0], pixels[10, 4, 2] = np.nan, np.inf, -np.inf
    for maximum, dtype in ((255, np.uint8), (65535, np.uint16)):
        expected = np.clip(np.nan_to_num(pixels, nan=0, posinf=1, neginf=0) * maximum + 0.5, 0, maximum).astype(dtype)
        got = _quantize(pixels, maximum, band=8)
        assert got.dtype == dtype and np.array_equal(got, expected)
    assert _quantize(pixels, 255)[30, 0, 0] == 255 and _quantize(pixels, 255)[3, 2, 1] == 0
