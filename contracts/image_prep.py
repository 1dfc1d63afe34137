"""Tile preprocessing with numpy and Pillow only, so the device prepares tiles exactly as training did.

A native tile is centre-cropped by zoom (Bing: 300/900/1500 px of 1500 for zoom 1/3/5, i.e. the fractions in
``contracts.schema.ZOOM_CROP_FRACTION``), resized bicubically (Pillow, antialiased when shrinking) to the model size,
then normalised with ImageNet mean/std into float32 CHW. Training adds random turns and mirrors
(``random_dihedral``) and colour jitter on the resized image.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from contracts.errors import ConfigError, DataError
from contracts.schema import IMAGERY_GSD_M, ZOOM_CROP_FRACTION

ImageSource = bytes | bytearray | memoryview | str | Path

# ITU-R 601 luma weights: the grey image that contrast and saturation jitter blend towards (as torchvision).
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def gsd_for(imagery: str) -> float:
    """Native ground sample distance (m/px) of an imagery kind: 0.6 Bing, 10 Sentinel-2, 0.2 Google Earth."""
    try:
        return float(IMAGERY_GSD_M[imagery])
    except KeyError:
        raise ConfigError(f"unknown imagery {imagery!r}; known: {', '.join(IMAGERY_GSD_M)}") from None


def zooms_for(imagery: str) -> tuple[int, ...]:
    """Zoom levels defined for an imagery kind (SoundingEarth's Google Earth tiles have zoom 1 only)."""
    try:
        return tuple(sorted(ZOOM_CROP_FRACTION[imagery]))
    except KeyError:
        raise ConfigError(f"unknown imagery {imagery!r}; known: {', '.join(ZOOM_CROP_FRACTION)}") from None


def decode_image(source: ImageSource, *, name_for_errors: object = None, field: str | None = None,
                 sample: object = None) -> np.ndarray:
    """Bytes (JPEG/PNG) or a path -> RGB uint8 (H, W, 3); missing/corrupt -> DataError naming file, field, sample."""
    where = name_for_errors
    try:
        if isinstance(source, bytes | bytearray | memoryview):
            data = bytes(source)
            if where is None:
                where = "<image bytes>"
            if not data:
                raise ValueError("the image bytes are empty")
            handle: object = io.BytesIO(data)
        else:
            path = Path(source)
            if where is None:
                where = path
            if not path.is_file():
                raise DataError("image file not found", path=where, field=field, sample=sample)
            handle = path
        with Image.open(handle) as img:
            img.load()  # decode now, so a truncated file fails here and not later
            rgb = img.convert("RGB")
    except DataError:
        raise
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot decode image ({detail})", path=where, field=field, sample=sample) from None
    arr = np.asarray(rgb, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"image has no pixels (shape {arr.shape})", path=where, field=field, sample=sample)
    return arr


def crop_box(height: int, width: int, zoom: int, imagery: str = "bingmap") -> tuple[int, int, int]:
    """(top, left, side) of the centre square a zoom level sees: side = round(min(H, W) * fraction)."""
    fractions = ZOOM_CROP_FRACTION.get(imagery)
    if fractions is None:
        raise ConfigError(f"unknown imagery {imagery!r}; known: {', '.join(ZOOM_CROP_FRACTION)}")
    if zoom not in fractions:
        raise ConfigError(f"zoom {zoom} is not defined for {imagery} imagery; use one of {sorted(fractions)}")
    side = max(1, int(round(min(height, width) * fractions[zoom])))
    # Same rounding as torchvision's CenterCrop, which the authors' pipeline uses.
    top = int(round((height - side) / 2.0))
    left = int(round((width - side) / 2.0))
    return top, left, side


def crop_for_zoom(img: np.ndarray, zoom: int, imagery: str = "bingmap") -> np.ndarray:
    """Centre square of a native tile for a zoom level (zoom 1 of a 1500 px Bing tile: the centre 300 px)."""
    top, left, side = crop_box(img.shape[0], img.shape[1], zoom, imagery)
    return img[top: top + side, left: left + side]


def resize(img: np.ndarray, size: int) -> np.ndarray:
    """Bicubic resize (Pillow) of an RGB uint8 image to size x size; a no-op when it already is."""
    if img.shape[0] == size and img.shape[1] == size:
        return np.ascontiguousarray(img)
    out = Image.fromarray(np.ascontiguousarray(img)).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(out, dtype=np.uint8)


def prepare_tile(img: np.ndarray, zoom: int, size: int, imagery: str = "bingmap") -> np.ndarray:
    """Native tile -> the model's view at a zoom: centre crop, then bicubic resize; uint8 (size, size, 3)."""
    return resize(crop_for_zoom(img, zoom, imagery), size)


def normalise(img: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 HWC (or float HWC in [0, 1]) -> float32 CHW, (x - mean) / std per channel; (B,H,W,3) -> (B,3,H,W)."""
    x = np.asarray(img)
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32, copy=False)
    x = (x - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


def colour_jitter(img: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Random brightness, contrast and saturation (factors uniform in [1-s, 1+s]) on float RGB in [0, 1].

    Works on one image (H, W, 3) or a batch (B, H, W, 3) with independent factors per image; returns float32
    in [0, 1]. Order fixed (brightness, contrast, saturation) so a seed gives one result.
    """
    x = np.asarray(img, dtype=np.float32)
    if strength <= 0:
        return x
    single = x.ndim == 3
    if single:
        x = x[None]
    b = x.shape[0]
    lo = max(0.0, 1.0 - strength)
    factors = rng.uniform(lo, 1.0 + strength, size=(3, b)).astype(np.float32)
    shape = (b, 1, 1, 1)
    x = np.clip(x * factors[0].reshape(shape), 0.0, 1.0)
    grey_mean = (x @ _LUMA).mean(axis=(1, 2)).reshape(shape)
    x = np.clip(factors[1].reshape(shape) * x + (1.0 - factors[1].reshape(shape)) * grey_mean, 0.0, 1.0)
    grey = (x @ _LUMA)[..., None]
    x = np.clip(factors[2].reshape(shape) * x + (1.0 - factors[2].reshape(shape)) * grey, 0.0, 1.0)
    return x[0] if single else x


def random_dihedral(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each square view turned by a random multiple of 90 degrees and mirrored half the time (the 8 symmetries of
    the square, uniform), independently per image. A tile seen from above has no preferred orientation, so this
    multiplies the views a small dataset shows without changing what can be heard there. (H, W, 3) or (B, H, W, 3).
    """
    x = np.asarray(img)
    single = x.ndim == 3
    if single:
        x = x[None]
    if x.shape[1] != x.shape[2]:
        raise ValueError(f"random_dihedral needs square views, got {x.shape[1]}x{x.shape[2]}")
    k = rng.integers(0, 8, size=x.shape[0])
    out = np.empty_like(x)
    for g in np.unique(k):
        sel = k == g
        v = x[sel][:, :, ::-1] if g >= 4 else x[sel]
        out[sel] = np.rot90(v, int(g) % 4, axes=(1, 2))
    return out[0] if single else out


def to_model_input(img: np.ndarray, mean: Sequence[float], std: Sequence[float], *, jitter: float = 0.0,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """Prepared uint8 view(s) -> normalised float32 CHW, with optional colour jitter (training)."""
    if jitter > 0:
        if rng is None:
            raise ValueError("colour jitter needs an rng")
        return normalise(colour_jitter(np.asarray(img, dtype=np.float32) / 255.0, jitter, rng), mean, std)
    return normalise(img, mean, std)
