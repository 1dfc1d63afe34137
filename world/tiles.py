"""Aerial tiles drawn from the real land cover: RGB plus a per-pixel class map that is the ground truth.

A tile is a pure function of (lat, lon, px, ground_m, seed). Pixels are placed in a world frame (metres) and every
structure (forest edges, crop parcels, rivers, roads, rail, street grids, roofs) is a hash or a smooth noise of
world coordinates, so any request that covers the same ground draws the same ground: the zoom-1 centre crop of a
900 m tile is the 180 m tile at the same centre.

World frame: longitude is cut into 1-degree strips; inside a strip, x is the sinusoidal easting of the tile centre
plus a local tangent plane (metres east), y is metres north. A same-centre request is exact; tiles with other
centres agree to within about 1% of the distance between the centres (a few metres between neighbours), with a
seam only where a tile straddles a strip border.

MODIS pixels are 0.05 degree (about 5.5 km); a tile is 900 m. Sub-pixel structure comes from (a) the typical
make-up of each IGBP class (a cropland pixel is mostly fields, with farmsteads, tree lines and roads), mixed with
its 3x3 neighbourhood and interpolated bilinearly between pixel centres, and (b) smooth value noise deciding, pixel
by pixel, which class wins (a Gumbel-max style argmax of log prior + noise).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from contracts.errors import ConfigError, DataError
from world import landcover
from world.noise import (
    fade,
    fbm,
    fbm_at,
    field_key,
    hash2,
    hash_unit,
    noise_bounds,
    unit,
    value_noise,
    value_noise_at,
)

FINE_CLASSES: tuple[str, ...] = (
    "water", "beach", "wetland", "forest", "shrub", "grass", "crop", "bare", "snow", "urban", "road", "rail",
)
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(FINE_CLASSES)}

# Which sound sources a class makes plausible (names from world.sounds.SOURCES). Weather (wind, rain) and
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
_A = {name: i for i, name in enumerate(AREA_CLASSES)}
_AREA_TO_FINE = np.array([CLASS_INDEX[n] for n in AREA_CLASSES], dtype=np.uint8)


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
            out[igbp, _A[name]] = frac
    return (out / out.sum(axis=1, keepdims=True)).astype(np.float32)


COMPOSITION = _composition()

M_PER_DEG = 111_320.0
STRIP_DEG = 1.0
_SIGMA = 2.2  # noise strength in the class argmax (log-prior units); larger = patchier tiles

# Colours (RGB 0-255) of the ground covers.
_BASE = np.array([
    (28, 58, 86),     # water
    (224, 210, 172),  # beach
    (88, 104, 66),    # wetland
    (38, 72, 38),     # forest
    (158, 146, 106),  # shrub
    (112, 142, 72),   # grass
    (130, 150, 70),   # crop (replaced per parcel)
    (200, 178, 140),  # bare (tinted per region)
    (238, 242, 248),  # snow
    (150, 150, 150),  # urban ground (paved)
    (84, 84, 90),     # road
    (102, 92, 84),    # rail
], np.float32)
_CROP_COLOURS = np.array([(118, 158, 58), (186, 168, 96), (136, 108, 78), (152, 170, 84), (96, 136, 60),
                          (198, 186, 120)], np.float32)
_ROOF_COLOURS = np.array([(160, 80, 64), (120, 118, 116), (190, 186, 180), (96, 90, 86), (170, 110, 80),
                          (140, 140, 150), (210, 205, 196)], np.float32)


@dataclass(frozen=True)
class Tile:
    """One rendered tile. ``cover`` indexes FINE_CLASSES; ``features`` holds scalar facts about the ground."""

    rgb: np.ndarray  # (px, px, 3) uint8, north up
    cover: np.ndarray  # (px, px) uint8
    lat: float
    lon: float
    px: int
    ground_m: float
    seed: int
    igbp: int  # MODIS class under the centre
    features: dict[str, float] = field(default_factory=dict)

    @property
    def gsd(self) -> float:
        return self.ground_m / self.px

    def crop_box(self, fraction: float) -> tuple[int, int]:
        return crop_box(self.px, fraction)

    def fractions(self, fraction: float = 1.0) -> np.ndarray:
        """Share of each fine class in the centre crop that sees ``fraction`` of the side, (K,) float32."""
        return class_fractions(self.cover, fraction)


def crop_box(px: int, fraction: float) -> tuple[int, int]:
    """(start, side) of the centre square crop seeing ``fraction`` of the side (torchvision CenterCrop rounding)."""
    side = max(1, int(round(px * fraction)))
    return int(round((px - side) / 2.0)), side


def class_fractions(cover: np.ndarray, fraction: float = 1.0) -> np.ndarray:
    start, side = crop_box(cover.shape[0], fraction)
    view = cover[start:start + side, start:start + side]
    return (np.bincount(view.ravel(), minlength=len(FINE_CLASSES)) / view.size).astype(np.float32)


# ----------------------------------------------------------------------------------------------- world frame


@dataclass(frozen=True)
class _Frame:
    """Pixel centres of a tile plus one pixel of margin on every side (so gradients are central everywhere)."""

    xs: np.ndarray  # (px + 2,) world x (m) of column centres
    ys: np.ndarray  # (px + 2,) world y (m) of row centres, row 0 north
    lats: np.ndarray  # (px + 2,) latitude of each row
    lons: np.ndarray  # (px + 2,) longitude of each column (not wrapped)
    gsd: float
    px: int


def _frame(lat: float, lon: float, px: int, ground_m: float) -> _Frame:
    gsd = ground_m / px
    off = (np.arange(-1, px + 1, dtype=np.float64) - px / 2.0 + 0.5) * gsd
    coslat = max(math.cos(math.radians(lat)), 0.01)
    strip = min(int(math.floor((lon + 180.0) / STRIP_DEG)), int(360 / STRIP_DEG) - 1)
    centre = -180.0 + (strip + 0.5) * STRIP_DEG
    x0 = strip * 2.0e6 + (lon - centre) * M_PER_DEG * coslat
    y0 = lat * M_PER_DEG
    return _Frame(xs=x0 + off, ys=y0 - off, lats=np.clip(lat - off / M_PER_DEG, -90.0, 90.0),
                  lons=lon + off / (M_PER_DEG * coslat), gsd=gsd, px=px)


def _prior(fr: _Frame) -> np.ndarray:
    """Area-class prior per pixel, (9, E, E) float32: MODIS pixel make-ups, neighbourhood-mixed, bilinear."""
    rf = (90.0 - fr.lats) / landcover.RASTER_DEG - 0.5
    cf = (fr.lons + 180.0) / landcover.RASTER_DEG - 0.5
    r0 = np.floor(rf).astype(np.int64)
    c0 = np.floor(cf).astype(np.int64)
    fy = (rf - r0).astype(np.float32)
    fx = (cf - c0).astype(np.float32)
    rmin, rmax = int(r0.min()), int(r0.max()) + 1
    cmin, cmax = int(c0.min()), int(c0.max()) + 1
    comp = COMPOSITION[landcover.block(rmin - 1, rmax + 1, cmin - 1, cmax + 1)]  # (R+2, C+2, 9)
    nr, nc = rmax - rmin + 1, cmax - cmin + 1
    neigh = np.zeros((nr, nc, comp.shape[2]), np.float32)
    for dr in range(3):
        for dc in range(3):
            neigh += comp[dr:dr + nr, dc:dc + nc]
    mixed = 0.7 * comp[1:-1, 1:-1] + 0.3 * neigh / 9.0
    n = len(fr.xs)
    ar = np.arange(n)
    wy = np.zeros((n, nr), np.float32)
    wy[ar, r0 - rmin] = 1.0 - fy
    wy[ar, r0 - rmin + 1] += fy
    wx = np.zeros((n, nc), np.float32)
    wx[ar, c0 - cmin] = 1.0 - fx
    wx[ar, c0 - cmin + 1] += fx
    return np.ascontiguousarray(np.matmul(np.einsum("ir,rck->kic", wy, mixed), wx.T))


def _line_distance(f: np.ndarray, gsd: float) -> np.ndarray:
    """Approximate distance (m) from each pixel to the zero contour of a smooth field (|f| / |grad f|)."""
    gy, gx = np.gradient(f, gsd)
    return np.abs(f) / (np.sqrt(gx * gx + gy * gy) + np.float32(1e-9))


def _cells(coords: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray]:
    idx = np.floor(coords / size).astype(np.int64)
    lo = int(idx.min())
    return idx - lo, np.arange(lo, int(idx.max()) + 1, dtype=np.int64)


class _Regions:
    """The square world cells (side ``size`` m) a tile touches, with per-cell random parameters."""

    def __init__(self, xs: np.ndarray, ys: np.ndarray, size: float):
        self.size = size
        self.jx, self.cx = _cells(xs, size)
        self.jy, self.cy = _cells(ys, size)
        self.index = self.jy[:, None] * len(self.cx) + self.jx[None, :]

    def table(self, key: int) -> np.ndarray:
        """Uniform [0, 1) per cell, flat in the order of ``index``."""
        return hash_unit(self.cx[None, :], self.cy[:, None], key).ravel()

    def values(self, key: int) -> np.ndarray:
        return self.table(key)[self.index]


# --------------------------------------------------------------------------------------------------- render


def render_tile(lat: float, lon: float, px: int = 320, ground_m: float = 900.0, seed: int = 0) -> Tile:
    """Draw the aerial tile of side ``ground_m`` metres and ``px`` pixels centred on (lat, lon), north up."""
    la, lo = landcover.check_latlon(lat, lon)
    if la.ndim or lo.ndim:
        raise DataError("render_tile takes one latitude and one longitude", field="latitude")
    if isinstance(px, bool) or int(px) != px or px < 4:
        raise ConfigError(f"tile size must be an integer of at least 4 pixels, got {px}")
    if not (isinstance(ground_m, int | float) and math.isfinite(ground_m) and ground_m > 0):
        raise ConfigError(f"tile ground extent must be a positive number of metres, got {ground_m}")
    lat, lon, px, seed = float(la), float(lo), int(px), int(seed)
    fr = _frame(lat, lon, px, float(ground_m))
    xs, ys, gsd = fr.xs, fr.ys, fr.gsd
    C = CLASS_INDEX

    def key(name: str) -> int:
        return field_key(seed, name)

    # 1. Area classes: argmax over classes of log prior + bounded smooth noise (classes that cannot win skipped:
    #    log(p_k) + 2 sigma < max_j log(p_j) everywhere, since |noise| <= 1).
    prior = _prior(fr)
    best = prior.max(axis=0) + np.float32(1e-6)
    reach = np.float32(math.exp(2.0 * _SIGMA))
    active = [k for k in range(len(AREA_CLASSES)) if np.any((prior[k] + np.float32(1e-6)) * reach >= best)]
    water_margin = None
    if len(active) == 1:
        area = np.full(best.shape, active[0], np.int64)
    else:
        detail_a = value_noise(xs, ys, 90.0, key("area/detail-a"))
        detail_b = value_noise(xs, ys, 24.0, key("area/detail-b"))
        scores = np.empty((len(active),) + best.shape, np.float32)
        for j, k in enumerate(active):
            phase = 2.0 * math.pi * k / len(AREA_CLASSES)
            n = 0.72 * fbm(xs, ys, [(1400.0, 0.6), (380.0, 0.4)], key(f"area/{AREA_CLASSES[k]}"))
            n += np.float32(0.2 * math.cos(phase)) * detail_a + np.float32(0.08 * math.sin(phase)) * detail_b
            scores[j] = np.log(prior[k] + np.float32(1e-6)) + _SIGMA * n
        area = np.asarray(active)[np.argmax(scores, axis=0)]
        if _A["water"] in active:
            jw = active.index(_A["water"])
            water_margin = scores[jw] - np.delete(scores, jw, axis=0).max(axis=0)
    cover = _AREA_TO_FINE[area]
    p_water, p_urban = prior[_A["water"]], prior[_A["urban"]]
    dry = prior[_A["bare"]] + prior[_A["snow"]]
    feats: dict[str, float] = {}

    # 2. Rivers: zero contours of a 3 km field where a regional field says the land is drained by one.
    river = np.zeros(best.shape, bool)
    if noise_bounds(xs, ys, 30_000.0, key("river/gate"))[1] > 0.1 and float(dry.min()) < 0.5:
        dist = _line_distance(fbm(xs, ys, [(3000.0, 0.7), (700.0, 0.3)], key("river/line")), gsd)
        near = (dist < 19.0 + 22.0) & (dry < 0.5) & (cover != C["water"])
        rows, cols = np.nonzero(near)
        if len(rows):
            gate = value_noise_at(xs, ys, rows, cols, 30_000.0, key("river/gate"))
            half = 3.0 + 16.0 * np.clip((gate - 0.1) / 0.5, 0.0, 1.0)
            d = dist[rows, cols]
            on = (gate > 0.1) & (d < half)
            bank = (gate > 0.1) & ~on & (d < half + 22.0) & ((cover[rows, cols] == C["grass"])
                                                             | (cover[rows, cols] == C["crop"]))
            trees = bank & (value_noise_at(xs, ys, rows, cols, 60.0, key("river/bank")) > -0.2)
            cover = cover.copy()
            cover[rows[trees], cols[trees]] = C["forest"]
            cover[rows[on], cols[on]] = C["water"]
            river[rows[on], cols[on]] = True

    # 3. Beaches: a band of land along large water where a coastal field says the shore is sandy.
    if water_margin is not None:
        cand = ((water_margin <= 0.0) & (water_margin > -0.9) & (p_water > 0.15) & (prior[_A["wetland"]] < 0.15)
                & (cover != C["water"]) & (cover != C["snow"]))
        rows, cols = np.nonzero(cand)
        if len(rows):
            shore = _line_distance(water_margin, gsd)[rows, cols]
            width = 8.0 + 14.0 * (value_noise_at(xs, ys, rows, cols, 1500.0, key("beach/width")) + 1.0)
            sandy = value_noise_at(xs, ys, rows, cols, 2500.0, key("beach/sandy")) > -0.35
            on = (shore < width) & sandy
            cover = cover.copy()
            cover[rows[on], cols[on]] = C["beach"]

    # 4. Farmsteads: a house, a barn and a silo in some 500 m cells of open country.
    open_country = (cover == C["crop"]) | (cover == C["grass"]) | (cover == C["shrub"])
    farm = _farmsteads(xs, ys, key("farm")) & open_country if open_country.any() else np.zeros(best.shape, bool)
    cover = np.where(farm, C["urban"], cover)

    # 5. Roads: rural roads (zero contours), American section roads (dirt), town street grids.
    road = np.zeros(best.shape, bool)
    lo_d, hi_d = noise_bounds(xs, ys, 12_000.0, key("road/density"))
    u_lo, u_hi, d_lo, d_hi = float(p_urban.min()), float(p_urban.max()), float(dry.min()), float(dry.max())
    if hi_d + 1.5 * u_hi - 0.8 * d_lo > -0.35:
        f_a = fbm(xs, ys, [(2600.0, 0.8), (650.0, 0.2)], key("road/a"))
        f_b = value_noise(xs, ys, 4200.0, key("road/b"))
        road = (_line_distance(f_a, gsd) < 3.5) | (_line_distance(f_b, gsd) < 3.0)
        if lo_d + 1.5 * u_lo - 0.8 * d_hi <= -0.35:  # the density gate is not open everywhere: check per pixel
            rows, cols = np.nonzero(road)
            density = (value_noise_at(xs, ys, rows, cols, 12_000.0, key("road/density"))
                       + 1.5 * p_urban[rows, cols] - 0.8 * dry[rows, cols])
            road[rows[density <= -0.35], cols[density <= -0.35]] = False
    road &= cover != C["water"]
    dirt = np.zeros(best.shape, bool)
    if -125.0 <= lon <= -65.0 and 25.0 <= lat <= 55.0:
        section = (np.mod(xs, 1609.34) < 5.0)[None, :] | (np.mod(ys, 1609.34) < 5.0)[:, None]
        dirt = section & ((cover == C["crop"]) | (cover == C["grass"])) & ~road
    town = _Town(xs, ys, (cover == C["urban"]) & ~farm, p_urban > 0.5, key)
    cover = np.where(road | dirt | town.street, C["road"], cover)

    # 6. Rail: long gentle curves, more often near towns.
    rail = np.zeros(best.shape, bool)
    rail_dist = None
    if noise_bounds(xs, ys, 80_000.0, key("rail/gate"))[1] + 0.8 * u_hi > 0.3:
        rail_dist = _line_distance(value_noise(xs, ys, 15_000.0, key("rail/line")), gsd)
        rows, cols = np.nonzero((rail_dist < 3.0) & (area != _A["water"]))
        if len(rows):
            rgate = value_noise_at(xs, ys, rows, cols, 80_000.0, key("rail/gate")) + 0.8 * p_urban[rows, cols]
            rail[rows[rgate > 0.3], cols[rgate > 0.3]] = True
    cover = np.where(rail, C["rail"], cover).astype(np.uint8)

    aridity = prior[_A["shrub"]] + 1.5 * prior[_A["bare"]]
    rgb = _paint(fr, cover, water_margin, river, dirt, town, farm, rail, rail_dist, p_urban, aridity, key)
    inner = (slice(1, -1), slice(1, -1))
    cover = np.ascontiguousarray(cover[inner])
    for name in ("water", "beach", "road", "rail", "urban"):
        feats[name] = float((cover == C[name]).mean())
    feats["river"] = float(river[inner].mean())
    feats["large_water_prior"] = float(p_water[inner].mean())
    feats["urban_prior"] = float(p_urban[inner].mean())
    return Tile(rgb=np.ascontiguousarray(rgb[inner]), cover=cover, lat=lat, lon=lon, px=px,
                ground_m=float(ground_m), seed=seed, igbp=int(landcover.landcover_class(lat, lon)), features=feats)


def _farmsteads(xs: np.ndarray, ys: np.ndarray, key: int) -> np.ndarray:
    """House + barn + silo footprints in about 30% of the 500 m cells."""
    size = 500.0
    jx, cx = _cells(xs, size)
    jy, cy = _cells(ys, size)
    has = hash_unit(cx[None, :], cy[:, None], key) < 0.3
    if not has.any():
        return np.zeros((len(ys), len(xs)), bool)
    centre_x = (cx[None, :] * size + hash_unit(cx[None, :], cy[:, None], key + 1) * 300.0 + 100.0)
    centre_y = (cy[:, None] * size + hash_unit(cx[None, :], cy[:, None], key + 2) * 300.0 + 100.0)
    sel = (jy[:, None], jx[None, :])
    dx = (xs[None, :] - centre_x[sel]).astype(np.float32)
    dy = (ys[:, None] - centre_y[sel]).astype(np.float32)
    house = (np.abs(dx) < 8.0) & (np.abs(dy) < 6.0)
    barn = (np.abs(dx - 26.0) < 12.0) & (np.abs(dy + 12.0) < 8.0)
    silo = (dx + 14.0) ** 2 + (dy + 16.0) ** 2 < 16.0
    return has[sel] & (house | barn | silo)


class _Town:
    """Street grid and building lots of the built-up pixels: per 5 km town region an angle, a lot size and a number
    of lots per block; dense centres merge 2 x 2 lots into one building. Coordinates are float32 offsets from the
    region's corner, so the layout is the same whichever tile looks at it."""

    REGION = 5000.0
    WIDTH = 9.0  # street width (m)

    def __init__(self, xs: np.ndarray, ys: np.ndarray, urban: np.ndarray, dense: np.ndarray,
                 key: Callable[[str], int]):
        shape = urban.shape
        self.street = np.zeros(shape, bool)
        self.roof = np.zeros(shape, bool)
        self.shadow = np.zeros(shape, bool)
        self.gable = np.zeros(shape, bool)
        self.colour = np.zeros(shape, np.int64)
        if not urban.any():
            return
        reg = _Regions(xs, ys, self.REGION)
        theta = (reg.table(key("town/angle")) * 2.0 - 1.0) * math.radians(40.0)
        lot = 14.0 + 8.0 * reg.table(key("town/lot"))
        nlots = 4 + 2 * np.floor(reg.table(key("town/nlots")) * 3.0)
        regions = np.unique(reg.index[urban])
        for r in regions:
            sel = urban if len(regions) == 1 else urban & (reg.index == r)
            c, s = math.cos(theta[r]), math.sin(theta[r])
            U, V = _local_rotated(xs, ys, reg, r, c, s)
            block = np.float32(lot[r] * nlots[r])
            street = (np.mod(U, block) < self.WIDTH) | (np.mod(V, block) < self.WIDTH)
            size = np.where(dense, np.float32(2.0 * lot[r]), np.float32(lot[r]))
            rkey = key("town/lots") ^ int(reg.cx[r % len(reg.cx)] * 1_000_003 + reg.cy[r // len(reg.cx)])
            roof, colour, gable = self._roofs(U, V, size, block, dense, sel, rkey)
            # shadows fall to the south-east: shaded where the point toward the sun (north-west) is a roof
            sun = np.where(dense, np.float32(11.0), np.float32(5.0))
            sroof, _, _ = self._roofs(U + sun * np.float32(s - c), V + sun * np.float32(s + c), size, block, dense,
                                      sel, rkey)
            self.street |= sel & street
            self.roof |= roof
            self.shadow |= sroof & ~roof
            self.gable |= gable
            self.colour = np.where(roof, colour, self.colour)

    def _roofs(self, u: np.ndarray, v: np.ndarray, size: np.ndarray, block: np.float32, dense: np.ndarray,
               sel: np.ndarray, key: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        iu = np.floor(u / size).astype(np.int64) * 2 + dense
        iv = np.floor(v / size).astype(np.int64)
        idx, tu, tv = _grid_ids(iu[sel], iv[sel])
        h = hash2(tu, tv, key)
        margin_t = unit(h)
        present_t = unit(mix_bits(h))
        margin = np.zeros(u.shape, np.float32)
        present = np.zeros(u.shape, np.float32)
        colour = np.zeros(u.shape, np.int64)
        axis = np.zeros(u.shape, bool)
        margin[sel] = margin_t.ravel()[idx]
        present[sel] = present_t.ravel()[idx]
        colour[sel] = (h % np.uint64(len(_ROOF_COLOURS))).astype(np.int64).ravel()[idx]
        axis[sel] = ((h >> np.uint64(20)) & np.uint64(1)).astype(bool).ravel()[idx]
        margin = np.where(dense, 1.0 + 2.0 * margin, 2.0 + 3.0 * margin)
        ou, ov = u - np.floor(u / size) * size, v - np.floor(v / size) * size
        roof = sel & (ou > margin) & (ou < size - margin) & (ov > margin) & (ov < size - margin)
        roof &= (np.mod(u, block) > self.WIDTH + 1.0) & (np.mod(v, block) > self.WIDTH + 1.0)
        roof &= present < np.where(dense, 0.97, 0.82)
        gable = roof & ~dense & (np.where(axis, ou, ov) > size / 2)
        return roof, colour, gable


def _grid_ids(iu: np.ndarray, iv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat index of each (iu, iv) into the small table of the distinct lattice points, and that table's coordinates
    (so per-parcel/per-lot values are hashed once per parcel and gathered)."""
    if iu.size == 0:
        return iu, np.zeros((1, 1), np.int64), np.zeros((1, 1), np.int64)
    u0, v0 = int(iu.min()), int(iv.min())
    nu = int(iu.max()) - u0 + 1
    tu = np.arange(u0, u0 + nu)[None, :]
    tv = np.arange(v0, int(iv.max()) + 1)[:, None]
    return (iv - v0) * nu + (iu - u0), tu, tv


def _local_rotated(xs: np.ndarray, ys: np.ndarray, reg: _Regions, r: int, c: float, s: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """float32 coordinates relative to region ``r``'s corner, rotated by the region's angle, on the full grid."""
    ncx = len(reg.cx)
    size = float(reg.size)
    ax, ay = reg.cx[r % ncx] * size, reg.cy[r // ncx] * size
    xr = (xs - ax).astype(np.float32)
    yr = (ys - ay).astype(np.float32)
    c32, s32 = np.float32(c), np.float32(s)
    return xr[None, :] * c32 + yr[:, None] * s32, yr[:, None] * c32 - xr[None, :] * s32


def mix_bits(h: np.ndarray) -> np.ndarray:
    return (h * np.uint64(0x9E3779B97F4A7C15)) ^ (h >> np.uint64(29))


def _paint(fr: _Frame, cover: np.ndarray, water_margin: np.ndarray | None, river: np.ndarray, dirt: np.ndarray,
           town: _Town, farm: np.ndarray, rail: np.ndarray, rail_dist: np.ndarray | None, p_urban: np.ndarray,
           prior_dry: np.ndarray, key: Callable[[str], int]) -> np.ndarray:
    xs, ys, gsd = fr.xs, fr.ys, fr.gsd
    C = CLASS_INDEX
    rgb = _BASE[cover]
    shade = np.ones(cover.shape, np.float32)
    counts = np.bincount(cover.ravel(), minlength=len(FINE_CLASSES))

    def masked(name: str) -> np.ndarray | None:
        return (cover == C[name]) if counts[C[name]] else None

    def tex(m: np.ndarray, octaves: list[tuple[float, float]], name: str) -> np.ndarray:
        """Texture values at the pixels of ``m`` (row-major order): whole grid when the class is large, only its
        pixels when small (same values either way)."""
        if m.mean() > 0.3:
            return fbm(xs, ys, octaves, key(name), gsd)[m]
        rows, cols = np.nonzero(m)
        return fbm_at(xs, ys, rows, cols, octaves, key(name), gsd)

    if (m := masked("forest")) is not None:
        shade[m] = 0.8 + 0.75 * tex(m, [(5.0, 0.55), (13.0, 0.3), (70.0, 0.15)], "paint/crowns")
        hue = tex(m, [(400.0, 1.0)], "paint/stands")
        rgb[m] += np.stack([hue * 10, hue * 14, hue * 4], axis=-1)
    if (m := masked("grass")) is not None:
        # humid meadows are green, steppe and savanna grass khaki: tint by the dryness of the MODIS neighbourhood
        dry = np.clip(1.3 * (prior_dry[m] + 0.25 * tex(m, [(3000.0, 1.0)], "paint/aridity")), 0.0, 1.0)[:, None]
        rgb[m] = np.float32((100, 128, 70)) * (1 - dry) + np.float32((170, 156, 108)) * dry
        shade[m] = 1.0 + 0.28 * tex(m, [(45.0, 0.6), (8.0, 0.4)], "paint/grass")
    if (m := masked("shrub")) is not None:
        dots = np.zeros(cover.shape, bool)
        dots[m] = tex(m, [(4.0, 0.7), (20.0, 0.3)], "paint/shrub") > 0.12
        rgb[dots] = (86, 98, 58)
    if (m := masked("wetland")) is not None:
        pools = np.zeros(cover.shape, bool)
        pools[m] = tex(m, [(30.0, 1.0)], "paint/pools") > 0.25
        rgb[pools] = (52, 76, 82)
        shade[m] = 1.0 + 0.3 * fade(9.0, gsd) * tex(m, [(9.0, 1.0)], "paint/reeds")
    if (m := masked("bare")) is not None:
        rock = _Regions(xs, ys, 20_000.0).values(key("paint/rock")) < 0.4
        rgb[m & rock] = (150, 136, 122)
        rgb[m & ~rock] = (214, 186, 142)
        shade[m] = 1.0 + 0.45 * tex(m, [(120.0, 0.5), (25.0, 0.3), (5.0, 0.2)], "paint/bare")
    if (m := masked("snow")) is not None:
        shade[m] = 0.97 + 0.12 * tex(m, [(150.0, 0.7), (20.0, 0.3)], "paint/snow")
    if (m := masked("water")) is not None:
        if water_margin is not None:
            shallow = (0.6 * (1.0 - np.clip(water_margin[m] / 1.5, 0.0, 1.0)))[:, None]
            rgb[m] = _BASE[C["water"]] * (1 - shallow) + np.float32((66, 104, 104)) * shallow
        rgb[m & river] = (58, 84, 78)
        shade[m] = 1.0 + 0.12 * fade(12.0, gsd) * tex(m, [(12.0, 1.0)], "paint/ripples")
    if (m := masked("beach")) is not None and water_margin is not None:
        wet = np.clip(1.0 + water_margin[m] / 0.4, 0.0, 1.0)[:, None]
        rgb[m] = _BASE[C["beach"]] * (1 - 0.25 * wet)
    if (m := masked("crop")) is not None:
        _paint_crops(fr, m, rgb, shade, key)
    if (m := masked("urban")) is not None:
        shade[m] = 1.0 + 0.12 * tex(m, [(25.0, 1.0)], "paint/paving")
        suburb = m & (p_urban < 0.5) & ~town.roof & ~farm
        if suburb.any():
            rgb[suburb] = (104, 128, 84)  # lawns and gardens
            trees = np.zeros(cover.shape, bool)
            trees[suburb] = tex(suburb, [(9.0, 1.0)], "paint/yardtrees") > 0.3
            rgb[trees] = (52, 88, 46)
        roof = town.roof & m
        rgb[roof] = _ROOF_COLOURS[town.colour[roof]]
        shade[town.gable & m] *= 0.82
        shade[town.shadow & m & ~farm] *= 0.55
        if farm.any():
            colours = _ROOF_COLOURS[(_Regions(xs, ys, 500.0).values(key("farm/roof")) * len(_ROOF_COLOURS)).astype(int)]
            rgb[farm] = colours[farm]
    if (m := masked("road")) is not None:
        rgb[m & dirt] = (176, 160, 128)
    if rail_dist is not None and gsd < 1.2:
        rgb[rail & (np.abs(rail_dist - 0.75) < max(0.25, gsd / 2))] = (48, 44, 42)
    rgb *= shade[..., None]
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _paint_crops(fr: _Frame, m: np.ndarray, rgb: np.ndarray, shade: np.ndarray, key: Callable[[str], int]
                 ) -> None:
    """Crop parcels per 8 km district: a colour per parcel, tram-line stripes along one axis, darker margins.
    The Americas keep a north-south quarter-quarter-section grid (402 m)."""
    xs, ys, gsd = fr.xs, fr.ys, fr.gsd
    americas = -170.0 <= float(fr.lons.mean()) <= -30.0
    reg = _Regions(xs, ys, 8000.0)
    theta = (reg.table(key("crop/angle")) * 2.0 - 1.0) * math.radians(35.0)
    size = 110.0 + 280.0 * reg.table(key("crop/size"))
    aspect = 1.0 + 1.5 * reg.table(key("crop/aspect"))
    if americas:
        theta[:] = 0.0
        size[:] = 402.336
        aspect[:] = 1.0
    regions = np.unique(reg.index[m])
    for r in regions:
        sel = m if len(regions) == 1 else m & (reg.index == r)
        c, s = math.cos(theta[r]), math.sin(theta[r])
        U, V = _local_rotated(xs, ys, reg, r, c, s)
        pw, ph = np.float32(size[r]), np.float32(size[r] * aspect[r])
        fu, fv = np.floor(U / pw), np.floor(V / ph)
        idx, tu, tv = _grid_ids(fu[sel].astype(np.int64), fv[sel].astype(np.int64))
        h = hash2(tu, tv, key("crop/parcel") ^ int(r * 7919 + reg.cx[0] * 31 + reg.cy[0]))
        colour = _CROP_COLOURS[(h % np.uint64(len(_CROP_COLOURS))).astype(np.int64).ravel()[idx]]
        spacing = (6.0 + 18.0 * unit(mix_bits(h))).astype(np.float32).ravel()[idx]
        along = np.where(((h >> np.uint64(40)) & np.uint64(1)).astype(bool).ravel()[idx], U[sel], V[sel])
        amp = 0.12 * np.clip((spacing / gsd / 2.0 - 1.0) / 2.0, 0.0, 1.0)
        stripes = 1.0 + amp * np.sin(np.float32(2.0 * np.pi) * np.mod(along, spacing) / spacing)
        eu = np.minimum(U - fu * pw, (fu + 1) * pw - U)
        ev = np.minimum(V - fv * ph, (fv + 1) * ph - V)
        edge = (np.minimum(eu, ev) < max(2.0, 0.6 * gsd))[sel]
        rgb[sel] = colour
        shade[sel] *= (stripes * np.where(edge, 0.8, 1.0)).astype(np.float32)
