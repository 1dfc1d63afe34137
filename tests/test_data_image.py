"""Tile preprocessing: decode, centre crop per zoom and imagery, bicubic resize, normalisation, jitter, bad tiles."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import jpeg_bytes, tile_array
from PIL import Image

from contracts.errors import ConfigError, DataError
from contracts.image_prep import (
    colour_jitter,
    crop_box,
    crop_for_zoom,
    decode_image,
    gsd_for,
    normalise,
    prepare_tile,
    random_dihedral,
    resize,
    to_model_input,
    zooms_for,
)
from core.config import IMAGENET_MEAN, IMAGENET_STD


def _coordinate_tile(px: int) -> np.ndarray:
    """R = row index, G = column index (mod 256): a crop's pixels tell where they came from."""
    y, x = np.mgrid[0:px, 0:px]
    return np.stack([y % 256, x % 256, (y // 256) * 16 + x // 256], axis=-1).astype(np.uint8)


@pytest.mark.parametrize(("zoom", "side", "top"), [(1, 300, 600), (3, 900, 300), (5, 1500, 0)])
def test_bing_crops_are_centred_fifths(zoom, side, top):
    tile = _coordinate_tile(1500)
    crop = crop_for_zoom(tile, zoom, "bingmap")
    assert crop.shape == (side, side, 3)
    assert crop_box(1500, 1500, zoom, "bingmap") == (top, top, side)
    assert np.array_equal(crop, tile[top:top + side, top:top + side])


def test_sentinel_and_google_earth_crops():
    assert crop_box(1280, 1280, 1, "sentinel") == (512, 512, 256)
    assert crop_box(1280, 1280, 3, "sentinel") == (256, 256, 768)
    assert crop_box(1024, 1024, 1, "googleearth") == (384, 384, 256)
    assert zooms_for("googleearth") == (1,)
    assert zooms_for("bingmap") == (1, 3, 5)
    with pytest.raises(ConfigError, match="zoom 3 is not defined for googleearth"):
        crop_for_zoom(np.zeros((1024, 1024, 3), np.uint8), 3, "googleearth")
    with pytest.raises(ConfigError, match="zoom 2"):
        crop_for_zoom(np.zeros((100, 100, 3), np.uint8), 2)
    with pytest.raises(ConfigError, match="unknown imagery"):
        crop_for_zoom(np.zeros((100, 100, 3), np.uint8), 1, "landsat")


def test_non_square_tile_crops_the_short_side_fraction():
    top, left, side = crop_box(100, 160, 1)
    assert (top, left, side) == (40, 70, 20)


def test_gsd():
    assert gsd_for("bingmap") == 0.6 and gsd_for("sentinel") == 10.0 and gsd_for("googleearth") == 0.2
    with pytest.raises(ConfigError):
        gsd_for("drone")


def test_resize_is_pillow_bicubic():
    img = tile_array(3, 90)
    out = resize(img, 32)
    want = np.asarray(Image.fromarray(img).resize((32, 32), Image.Resampling.BICUBIC))
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert np.array_equal(out, want)
    assert np.array_equal(resize(img, 90), img)  # already the size: unchanged
    assert prepare_tile(_coordinate_tile(1500), 1, 224).shape == (224, 224, 3)


def test_normalise_values_and_layout():
    img = np.zeros((4, 5, 3), np.uint8)
    img[..., 0] = 255
    x = normalise(img, IMAGENET_MEAN, IMAGENET_STD)
    assert x.shape == (3, 4, 5) and x.dtype == np.float32
    assert np.allclose(x[0], (1 - 0.485) / 0.229)
    assert np.allclose(x[1], -0.456 / 0.224) and np.allclose(x[2], -0.406 / 0.225)
    batch = normalise(np.stack([img, img]), IMAGENET_MEAN, IMAGENET_STD)
    assert batch.shape == (2, 3, 4, 5) and np.array_equal(batch[1], x)


def test_decode_bytes_and_paths(tmp_path):
    img = tile_array(0, 40)
    png = tmp_path / "t.png"
    Image.fromarray(img).save(png)
    assert np.array_equal(decode_image(png), img)
    assert np.array_equal(decode_image(str(png)), img)
    assert np.array_equal(decode_image(png.read_bytes()), img)
    got = decode_image(jpeg_bytes(img, quality=95))
    assert got.shape == (40, 40, 3) and np.abs(got.astype(int) - img).mean() < 4
    grey = tmp_path / "g.png"
    Image.fromarray(img[..., 0]).save(grey)
    assert decode_image(grey).shape == (40, 40, 3)  # converted to RGB


def test_bad_images_raise_data_error_naming_file_field_sample(tmp_path):
    with pytest.raises(DataError, match=r"not found.*file .*missing\.jpg.*sample s1.*field 'bingmap_image'"):
        decode_image(tmp_path / "missing.jpg", field="bingmap_image", sample="s1")
    with pytest.raises(DataError, match=r"cannot decode image.*file shard\.parquet \[x\.jpg\].*field 'bingmap_image'"):
        decode_image(b"\xff\xd8 definitely not a jpeg", name_for_errors="shard.parquet [x.jpg]", field="bingmap_image",
                     sample="s2")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(jpeg_bytes(tile_array(1, 64))[:200])
    with pytest.raises(DataError, match=r"cut\.jpg"):
        decode_image(truncated, field="sentinel_image")
    with pytest.raises(DataError, match="empty"):
        decode_image(b"", field="bingmap_image")


def test_colour_jitter():
    rng = np.random.default_rng(0)
    img = rng.uniform(0.1, 0.9, size=(2, 8, 8, 3)).astype(np.float32)
    assert np.array_equal(colour_jitter(img, 0.0, rng), img)
    a = colour_jitter(img, 0.4, np.random.default_rng(5))
    b = colour_jitter(img, 0.4, np.random.default_rng(5))
    assert np.array_equal(a, b) and not np.allclose(a, img)
    assert a.min() >= 0 and a.max() <= 1 and a.dtype == np.float32
    assert not np.allclose(a[0] / img[0], a[1] / img[1])  # independent factors per image
    single = colour_jitter(img[0], 0.4, np.random.default_rng(1))
    assert single.shape == (8, 8, 3)
    u8 = (img[0] * 255).astype(np.uint8)
    assert np.array_equal(to_model_input(u8, IMAGENET_MEAN, IMAGENET_STD), normalise(u8, IMAGENET_MEAN, IMAGENET_STD))
    with pytest.raises(ValueError, match="rng"):
        to_model_input(u8, IMAGENET_MEAN, IMAGENET_STD, jitter=0.2)


def _symmetries(img: np.ndarray) -> list[np.ndarray]:
    return [np.rot90(v, k) for v in (img, img[:, ::-1]) for k in range(4)]


def test_random_dihedral_draws_each_of_the_eight_symmetries_per_image():
    tile = _coordinate_tile(6)  # every pixel distinct, so the 8 symmetries are 8 different arrays
    batch = np.repeat(tile[None], 400, axis=0)
    out = random_dihedral(batch, np.random.default_rng(0))
    assert out.shape == batch.shape and out.dtype == np.uint8
    syms = _symmetries(tile)
    which = [next(i for i, s in enumerate(syms) if np.array_equal(o, s)) for o in out]  # each one is a symmetry
    counts = np.bincount(which, minlength=8)
    assert counts.min() > 25  # all eight, roughly uniformly (expected 50 each)
    again = random_dihedral(batch, np.random.default_rng(0))
    assert np.array_equal(again, out)  # the generator decides
    one = random_dihedral(tile, np.random.default_rng(3))
    assert one.shape == tile.shape and any(np.array_equal(one, s) for s in syms)


def test_random_dihedral_refuses_non_square_views():
    with pytest.raises(ValueError, match="square"):
        random_dihedral(np.zeros((4, 6, 3), np.uint8), np.random.default_rng(0))
