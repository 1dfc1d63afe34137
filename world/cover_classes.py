"""The fine land-cover classes tiles are drawn in: what each one sounds like, how captions name it, and the
typical make-up of every MODIS IGBP class in the area classes a tile's argmax chooses between.

A cover map (``Tile.cover``) holds indices into FINE_CLASSES; class_fractions counts them in a centre crop.
"""

from __future__ import annotations

import numpy as np

from world import landcover

FINE_CLASSES: tuple[str, ...] = (
    "water", "beach", "wetland", "forest", "shrub", "grass", "crop", "bare", "snow", "urban", "road", "rail",
)
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(FINE_CLASSES)}

# Which sound sources a class makes plausible (names from world.sources.SOURCES). Weather (wind, rain) and
# aircraft are added by places.plausible_sources wherever they fit; this is what the ground itself implies.
CLASS_SOURCES: dict[str, tuple[str, ...]] = {
    "water": ("stream", "gulls", "frogs"),
    "beach": ("surf", "gulls", "crowd"),
    "wetland": ("frogs", "birdsong", "insects"),
    "forest": ("birdsong", "leaves", "insects", "owl"),
    "shrub": ("insects", "birdsong", "wind"),
    "grass": ("birdsong", "insects", "livestock", "dogs"),
    "crop": ("tractor", "livestock", "birdsong", "insects"),
    "bare": ("wind",),
    "snow": ("wind",),
    "urban": ("crowd", "traffic", "construction", "dogs", "bells", "siren", "horns", "birdsong"),
    "road": ("traffic", "horns", "siren"),
    "rail": ("train",),
}

# Words the captions use for each class ("farmland", "a railway line", ...).
CLASS_WORDS: dict[str, tuple[str, ...]] = {
    "water": ("water", "a lake", "open water"),
    "beach": ("a sandy beach", "the shoreline", "a beach"),
    "wetland": ("wetlands", "a marsh", "marshland"),
    "forest": ("a forest", "dense trees", "woodland"),
    "shrub": ("shrubland", "scrub", "bushes"),
    "grass": ("grassland", "open fields", "meadows"),
    "crop": ("farmland", "agricultural fields", "crop fields"),
    "bare": ("bare ground", "sand and rock", "a barren area"),
    "snow": ("snow and ice", "snowfields", "a snowy landscape"),
    "urban": ("buildings", "a built-up area", "houses"),
    "road": ("a road", "roads", "a street"),
    "rail": ("a railway line", "train tracks", "a railroad"),
}

# Area classes are decided by the noisy argmax; beach, road and rail are drawn as structures on top.
AREA_CLASSES: tuple[str, ...] = ("water", "wetland", "forest", "shrub", "grass", "crop", "bare", "snow", "urban")
AREA_INDEX: dict[str, int] = {name: i for i, name in enumerate(AREA_CLASSES)}
AREA_TO_FINE = np.array([CLASS_INDEX[n] for n in AREA_CLASSES], dtype=np.uint8)


def _composition() -> np.ndarray:
    """Typical make-up of each IGBP class in area classes, (17, 9) rows summing to 1."""
    rows = {
        0: {"water": 0.97, "wetland": 0.01, "grass": 0.01, "bare": 0.01},
        1: {"forest": 0.84, "grass": 0.06, "shrub": 0.04, "water": 0.02, "wetland": 0.02, "bare": 0.01, "urban": 0.01},
        2: {"forest": 0.91, "grass": 0.03, "shrub": 0.02, "water": 0.02, "urban": 0.01, "crop": 0.01},
        3: {"forest": 0.80, "shrub": 0.07, "grass": 0.05, "wetland": 0.05, "water": 0.03},
        4: {"forest": 0.78, "grass": 0.08, "crop": 0.06, "water": 0.02, "urban": 0.04, "shrub": 0.02},
        5: {"forest": 0.76, "grass": 0.08, "crop": 0.07, "water": 0.03, "urban": 0.04, "shrub": 0.02},
        6: {"shrub": 0.70, "grass": 0.15, "bare": 0.08, "forest": 0.05, "urban": 0.02},
        7: {"shrub": 0.50, "bare": 0.30, "grass": 0.17, "urban": 0.02, "water": 0.01},
        8: {"forest": 0.42, "grass": 0.33, "shrub": 0.14, "crop": 0.05, "urban": 0.03, "water": 0.03},
        9: {"grass": 0.60, "forest": 0.15, "shrub": 0.13, "crop": 0.06, "urban": 0.03, "bare": 0.03},
        10: {"grass": 0.78, "shrub": 0.07, "crop": 0.05, "bare": 0.05, "urban": 0.03, "water": 0.02},
        11: {"wetland": 0.55, "water": 0.20, "grass": 0.15, "forest": 0.10},
        12: {"crop": 0.80, "grass": 0.07, "forest": 0.04, "urban": 0.05, "water": 0.02, "wetland": 0.02},
        13: {"urban": 0.78, "grass": 0.09, "forest": 0.09, "water": 0.02, "crop": 0.02},
        14: {"crop": 0.45, "forest": 0.20, "grass": 0.19, "urban": 0.09, "water": 0.03, "shrub": 0.04},
        15: {"snow": 0.92, "bare": 0.08},
        16: {"bare": 0.92, "shrub": 0.05, "grass": 0.02, "snow": 0.01},
    }
    out = np.zeros((landcover.N_IGBP, len(AREA_CLASSES)), np.float64)
    for igbp, mix in rows.items():
        for name, frac in mix.items():
            out[igbp, AREA_INDEX[name]] = frac
    return (out / out.sum(axis=1, keepdims=True)).astype(np.float32)


COMPOSITION = _composition()


def crop_box(px: int, fraction: float) -> tuple[int, int]:
    """(start, side) of the centre square crop seeing ``fraction`` of the side (torchvision CenterCrop rounding)."""
    side = max(1, int(round(px * fraction)))
    return int(round((px - side) / 2.0)), side


def class_fractions(cover: np.ndarray, fraction: float = 1.0) -> np.ndarray:
    start, side = crop_box(cover.shape[0], fraction)
    view = cover[start:start + side, start:start + side]
    return (np.bincount(view.ravel(), minlength=len(FINE_CLASSES)) / view.size).astype(np.float32)

