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

This module synthesises the class map; the class vocabulary is in cover_classes, the frame and lattices in
tile_frame, farmsteads and towns in settlements, and the drawing of each cover in tile_paint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from contracts.errors import ConfigError, DataError
from world import landcover
from world.cover_classes import (
    AREA_CLASSES,
    AREA_INDEX,
    AREA_TO_FINE,
    CLASS_INDEX,
    COMPOSITION,
    class_fractions,
    crop_box,
)
from world.noise import fbm, field_key, noise_bounds, value_noise, value_noise_at
from world.settlements import Town, farmsteads
from world.tile_frame import Frame, line_distance, make_frame
from world.tile_paint import Ground, paint

_SIGMA = 2.2  # noise strength in the class argmax (log-prior units); larger = patchier tiles


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


def _prior(fr: Frame) -> np.ndarray:
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
    fr = make_frame(lat, lon, px, float(ground_m))
    xs, ys, gsd = fr.xs, fr.ys, fr.gsd
    C, A = CLASS_INDEX, AREA_INDEX

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
        if A["water"] in active:
            jw = active.index(A["water"])
            water_margin = scores[jw] - np.delete(scores, jw, axis=0).max(axis=0)
    cover = AREA_TO_FINE[area]
    p_water, p_urban = prior[A["water"]], prior[A["urban"]]
    dry = prior[A["bare"]] + prior[A["snow"]]
    feats: dict[str, float] = {}

    # 2. Rivers: zero contours of a 3 km field where a regional field says the land is drained by one.
    river = np.zeros(best.shape, bool)
    if noise_bounds(xs, ys, 30_000.0, key("river/gate"))[1] > 0.1 and float(dry.min()) < 0.5:
        dist = line_distance(fbm(xs, ys, [(3000.0, 0.7), (700.0, 0.3)], key("river/line")), gsd)
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
        cand = ((water_margin <= 0.0) & (water_margin > -0.9) & (p_water > 0.15) & (prior[A["wetland"]] < 0.15)
                & (cover != C["water"]) & (cover != C["snow"]))
        rows, cols = np.nonzero(cand)
        if len(rows):
            shore = line_distance(water_margin, gsd)[rows, cols]
            width = 8.0 + 14.0 * (value_noise_at(xs, ys, rows, cols, 1500.0, key("beach/width")) + 1.0)
            sandy = value_noise_at(xs, ys, rows, cols, 2500.0, key("beach/sandy")) > -0.35
            on = (shore < width) & sandy
            cover = cover.copy()
            cover[rows[on], cols[on]] = C["beach"]

    # 4. Farmsteads: a house, a barn and a silo in some 500 m cells of open country.
    open_country = (cover == C["crop"]) | (cover == C["grass"]) | (cover == C["shrub"])
    farm = farmsteads(xs, ys, key("farm")) & open_country if open_country.any() else np.zeros(best.shape, bool)
    cover = np.where(farm, C["urban"], cover)

    # 5. Roads: rural roads (zero contours), American section roads (dirt), town street grids.
    road = np.zeros(best.shape, bool)
    lo_d, hi_d = noise_bounds(xs, ys, 12_000.0, key("road/density"))
    u_lo, u_hi, d_lo, d_hi = float(p_urban.min()), float(p_urban.max()), float(dry.min()), float(dry.max())
    if hi_d + 1.5 * u_hi - 0.8 * d_lo > -0.35:
        f_a = fbm(xs, ys, [(2600.0, 0.8), (650.0, 0.2)], key("road/a"))
        f_b = value_noise(xs, ys, 4200.0, key("road/b"))
        road = (line_distance(f_a, gsd) < 3.5) | (line_distance(f_b, gsd) < 3.0)
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
    town = Town(xs, ys, (cover == C["urban"]) & ~farm, p_urban > 0.5, key)
    cover = np.where(road | dirt | town.street, C["road"], cover)

    # 6. Rail: long gentle curves, more often near towns.
    rail = np.zeros(best.shape, bool)
    rail_dist = None
    if noise_bounds(xs, ys, 80_000.0, key("rail/gate"))[1] + 0.8 * u_hi > 0.3:
        rail_dist = line_distance(value_noise(xs, ys, 15_000.0, key("rail/line")), gsd)
        rows, cols = np.nonzero((rail_dist < 3.0) & (area != A["water"]))
        if len(rows):
            rgate = value_noise_at(xs, ys, rows, cols, 80_000.0, key("rail/gate")) + 0.8 * p_urban[rows, cols]
            rail[rows[rgate > 0.3], cols[rgate > 0.3]] = True
    cover = np.where(rail, C["rail"], cover).astype(np.uint8)

    aridity = prior[A["shrub"]] + 1.5 * prior[A["bare"]]
    ground = Ground(cover=cover, water_margin=water_margin, river=river, dirt=dirt, town=town, farm=farm, rail=rail,
                    rail_dist=rail_dist, p_urban=p_urban, aridity=aridity)
    rgb = paint(fr, ground, key)
    inner = (slice(1, -1), slice(1, -1))
    cover = np.ascontiguousarray(cover[inner])
    for name in ("water", "beach", "road", "rail", "urban"):
        feats[name] = float((cover == C[name]).mean())
    feats["river"] = float(river[inner].mean())
    feats["large_water_prior"] = float(p_water[inner].mean())
    feats["urban_prior"] = float(p_urban[inner].mean())
    return Tile(rgb=np.ascontiguousarray(rgb[inner]), cover=cover, lat=lat, lon=lon, px=px,
                ground_m=float(ground_m), seed=seed, igbp=int(landcover.landcover_class(lat, lon)), features=feats)
