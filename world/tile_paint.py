"""Drawing a tile: the colour and texture of every ground cover, from its class map and the structures on it.

Every texture is smooth noise of world coordinates (crowns, furrows, ripples, paving), so neighbouring tiles
agree where they overlap.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from world.cover_classes import CLASS_INDEX, FINE_CLASSES
from world.noise import fade, fbm, fbm_at, hash2, mix_bits, unit
from world.settlements import ROOF_COLOURS, Town
from world.tile_frame import Frame, Regions, grid_ids, local_rotated

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


@dataclass(frozen=True)
class Ground:
    """What cover synthesis hands the painter, on the tile's frame (one pixel of margin on every side)."""

    cover: np.ndarray  # (E, E) uint8, FINE_CLASSES indices
    water_margin: np.ndarray | None  # large water's score over the best other area class (None: no water)
    river: np.ndarray  # (E, E) bool, river water
    dirt: np.ndarray  # (E, E) bool, unpaved section roads
    town: Town  # street grid, roofs, gables and shadows of the built-up pixels
    farm: np.ndarray  # (E, E) bool, farmstead buildings
    rail: np.ndarray  # (E, E) bool, rail corridor
    rail_dist: np.ndarray | None  # distance (m) to the rail line's centre (None: no rail near)
    p_urban: np.ndarray  # (E, E) urban share of the area-class prior
    aridity: np.ndarray  # (E, E) shrub + 1.5 bare share of the prior (dry grass is khaki)


def paint(fr: Frame, ground: Ground, key: Callable[[str], int]) -> np.ndarray:
    """RGB (E, E, 3) uint8 of the ground covers on ``fr``; ``key`` names the texture fields of the world seed."""
    cover, water_margin, river, dirt = ground.cover, ground.water_margin, ground.river, ground.dirt
    town, farm, rail, rail_dist = ground.town, ground.farm, ground.rail, ground.rail_dist
    p_urban, prior_dry = ground.p_urban, ground.aridity
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
        rock = Regions(xs, ys, 20_000.0).values(key("paint/rock")) < 0.4
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
        rgb[roof] = ROOF_COLOURS[town.colour[roof]]
        shade[town.gable & m] *= 0.82
        shade[town.shadow & m & ~farm] *= 0.55
        if farm.any():
            colours = ROOF_COLOURS[(Regions(xs, ys, 500.0).values(key("farm/roof")) * len(ROOF_COLOURS)).astype(int)]
            rgb[farm] = colours[farm]
    if (m := masked("road")) is not None:
        rgb[m & dirt] = (176, 160, 128)
    if rail_dist is not None and gsd < 1.2:
        rgb[rail & (np.abs(rail_dist - 0.75) < max(0.25, gsd / 2))] = (48, 44, 42)
    rgb *= shade[..., None]
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _paint_crops(fr: Frame, m: np.ndarray, rgb: np.ndarray, shade: np.ndarray, key: Callable[[str], int]
                 ) -> None:
    """Crop parcels per 8 km district: a colour per parcel, tram-line stripes along one axis, darker margins.
    The Americas keep a north-south quarter-quarter-section grid (402 m)."""
    xs, ys, gsd = fr.xs, fr.ys, fr.gsd
    americas = -170.0 <= float(fr.lons.mean()) <= -30.0
    reg = Regions(xs, ys, 8000.0)
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
        U, V = local_rotated(xs, ys, reg, r, c, s)
        pw, ph = np.float32(size[r]), np.float32(size[r] * aspect[r])
        fu, fv = np.floor(U / pw), np.floor(V / ph)
        idx, tu, tv = grid_ids(fu[sel].astype(np.int64), fv[sel].astype(np.int64))
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
