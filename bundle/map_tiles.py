"""Build side: render a region's imagery into an MBTiles pyramid whose levels match the model's views.

For each model zoom (1/3/5) the view is a square of ground (``ground_m``: the zoom's crop fraction of the native
tile, e.g. 180/540/900 m for a 900 m tile) that the model sees at ``image_size`` pixels. The map level for a view is
the coarsest web-mercator level whose pixels are no larger than ``ground_m / image_size`` anywhere in the region, so
the app only ever shrinks imagery to the model's size (as training did), never enlarges it. Those levels are padded
by half a view around the region, so a tap on the region's edge still has its whole view. A few coarser overview
levels, and every level in between, make the map zoom smoothly.

Tiles are drawn by the embedded world's renderer (world.tiles.render_tile: a pure function of place and ground
extent, so neighbouring tiles show the same ground) or any callable with the same signature.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bundle.mbtiles_writer import MBTilesWriter, encode_tile
from mobile_app import mercator

# (lat, lon, px, ground_m) -> RGB uint8 (px, px, 3); an imagery renderer (imagery.tiles) may return RGBA with no-data
# pixels transparent, or None for a tile with no imagery at all (left out of the map)
Renderer = Callable[[float, float, int, float], np.ndarray | None]


@dataclass(frozen=True)
class MapPlan:
    """Which tiles to render: per level, the column and XYZ row ranges."""

    bounds: mercator.Bounds
    views: dict[int, dict[str, float]]  # model zoom -> {"ground_m", "level", "m_per_px", "map_m_per_px"}
    levels: dict[int, tuple[range, range]]
    center_level: int

    @property
    def minzoom(self) -> int:
        return min(self.levels)

    @property
    def maxzoom(self) -> int:
        return max(self.levels)

    @property
    def n_tiles(self) -> int:
        return sum(len(c) * len(r) for c, r in self.levels.values())


def widest_scale_lat(bounds: mercator.Bounds) -> float:
    """The latitude in the region where pixels are largest (nearest the equator)."""
    if bounds.south <= 0.0 <= bounds.north:
        return 0.0
    return min(abs(bounds.south), abs(bounds.north))


def plan_map(bounds: mercator.Bounds, zoom_ground_m: dict[int, float], image_size: int, *,
             overview_levels: int = 3, context_tiles: int = 2, screen_px: tuple[int, int] = (900, 700)) -> MapPlan:
    """Levels and tile ranges for a region: the views' levels (padded), levels between them and overviews above."""
    if not zoom_ground_m:
        raise ValueError("no model zoom levels to plan a map for")
    lat = widest_scale_lat(bounds)
    views: dict[int, dict[str, float]] = {}
    pad: dict[int, float] = {}
    for zoom, ground in sorted(zoom_ground_m.items()):
        m_per_px = ground / float(image_size)
        level = mercator.level_for_resolution(m_per_px, lat)
        views[int(zoom)] = {"ground_m": float(ground), "level": level, "m_per_px": m_per_px,
                            "map_m_per_px": mercator.ground_resolution(lat, level)}
        # Half a view plus a tile's worth of slack for rounding: every tap inside the region sees a whole view.
        pad[level] = max(pad.get(level, 0.0), ground / 2.0 + 2.0 * mercator.ground_resolution(lat, level))
    fine = int(max(v["level"] for v in views.values()))
    coarse = int(max(0, min(v["level"] for v in views.values()) - max(0, overview_levels)))
    center_level = coarse
    for lv in range(coarse, fine + 1):
        x0, y0 = mercator.lonlat_to_pixel(bounds.west, bounds.north, lv)
        x1, y1 = mercator.lonlat_to_pixel(bounds.east, bounds.south, lv)
        if x1 - x0 <= screen_px[0] and y1 - y0 <= screen_px[1]:
            center_level = lv
    levels = {}
    for lv in range(coarse, fine + 1):
        # Surroundings for the map at the levels the region is seen whole (the app opens there): context_tiles of
        # context around it, half that at the next level, none finer (there the views' own padding suffices).
        margin_tiles = context_tiles if lv <= center_level else (context_tiles // 2 if lv == center_level + 1 else 0)
        margin_m = margin_tiles * mercator.TILE_PX * mercator.ground_resolution(lat, lv)
        levels[lv] = mercator.tile_range(bounds, lv, max(pad.get(lv, 0.0), margin_m))
    return MapPlan(bounds=bounds, views=views, levels=levels, center_level=int(center_level))


def world_renderer(seed: int = 0) -> Renderer:
    """The embedded world's tile renderer (build side; imported only when a bundle is built)."""
    from world.tiles import render_tile

    def render(lat: float, lon: float, px: int, ground_m: float) -> np.ndarray:
        return render_tile(lat, lon, px=px, ground_m=ground_m, seed=seed).rgb

    return render


def render_mercator_tile(render: Renderer, level: int, col: int, row_xyz: int) -> np.ndarray | None:
    """One 256 px map tile: the renderer draws the square of ground the tile covers, centred on the tile."""
    t = mercator.TILE_PX
    lon, lat = mercator.pixel_to_lonlat((col + 0.5) * t, (row_xyz + 0.5) * t, level)
    ground = t * mercator.ground_resolution(lat, level)
    drawn = render(lat, lon, t, ground)
    if drawn is None:
        return None
    rgb = np.asarray(drawn, dtype=np.uint8)
    if rgb.shape not in ((t, t, 3), (t, t, 4)):
        raise ValueError(f"the renderer returned {rgb.shape}, expected ({t}, {t}, 3) or ({t}, {t}, 4)")
    return rgb


def write_region_mbtiles(path: str | Path, plan: MapPlan, render: Renderer, *, fmt: str = "jpg", quality: int = 88,
                         name: str = "Sat2Sound region", attribution: str = "", description: str = "",
                         progress: bool = True) -> int:
    """Render every planned tile into a new MBTiles file; returns the number of tiles written."""
    from tqdm.auto import tqdm

    lon, lat = plan.bounds.center
    bar = tqdm(total=plan.n_tiles, desc="map tiles", unit="tile", disable=not progress)
    with MBTilesWriter(path, name=name, fmt=fmt, bounds=plan.bounds, center=(lon, lat),
                       center_level=plan.center_level, minzoom=plan.minzoom, maxzoom=plan.maxzoom,
                       attribution=attribution, description=description) as writer:
        for level, (cols, rows) in sorted(plan.levels.items()):
            for row in rows:
                for col in cols:
                    rgb = render_mercator_tile(render, level, col, row)
                    if rgb is not None:  # no imagery at all there: no tile, so the app never plays it
                        writer.add(level, col, row, encode_tile(rgb, fmt, quality))
                    bar.update(1)
        count = writer.count
    bar.close()
    return count


def describe_plan(plan: MapPlan) -> str:
    parts = [f"zoom {z}: {v['ground_m']:.0f} m view, {v['m_per_px']:.2f} m/px -> level {int(v['level'])} "
             f"({v['map_m_per_px']:.2f} m/px)" for z, v in sorted(plan.views.items())]
    return (f"map levels {plan.minzoom}-{plan.maxzoom}, {plan.n_tiles} tiles; " + "; ".join(parts)
            + f"; opens at level {plan.center_level}")


def ground_for_zooms(tile_ground_m: float, fractions: dict[int, float]) -> dict[int, float]:
    """Ground side each model zoom sees: its crop fraction of the native tile's ground."""
    if not (tile_ground_m > 0 and math.isfinite(tile_ground_m)):
        raise ValueError(f"native tile ground extent must be a positive number of metres, got {tile_ground_m}")
    return {int(z): float(f) * float(tile_ground_m) for z, f in fractions.items()}
