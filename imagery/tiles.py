"""A set of scenes as a tile source: the model's views for maps and queries, and map tiles for bundles.

``ImagerySet`` opens what ``--imagery`` names (one raster, a Sentinel-2 band folder, or a folder of rasters, seen
as a mosaic: a place is read from the first scene that covers it). Every scene's ground sample distance goes to the
positional encoding (``gsd_m``), unless the caller overrides it. ``region_in_imagery`` refuses a region that does
not overlap the imagery. ``imagery_renderer`` draws bundle map tiles: RGBA, with no-data pixels transparent, so the
app knows where the imagery ends and never plays a view that reaches past it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contracts.errors import ConfigError, DataError
from imagery.scene import Scene, open_scene, parse_bands, scene_files
from imagery.views import View, read_view

# a model view is played only when at least this share of it holds imagery
MIN_VALID_FRACTION = 0.98


@dataclass(frozen=True)
class Bounds:
    west: float
    south: float
    east: float
    north: float

    def as_list(self) -> list[float]:
        return [self.west, self.south, self.east, self.north]

    def intersect(self, other: Bounds) -> Bounds | None:
        w, s = max(self.west, other.west), max(self.south, other.south)
        e, n = min(self.east, other.east), min(self.north, other.north)
        return Bounds(w, s, e, n) if w < e and s < n else None


class ImagerySet:
    """The scenes of one --imagery path, opened, with their footprint and GSD."""

    def __init__(self, path: str | Path, bands: str | tuple[int, int, int] | None = None):
        picked = parse_bands(bands) if isinstance(bands, str) or bands is None else bands
        self.path = Path(path)
        self.scenes: list[Scene] = []
        try:
            for source in scene_files(self.path):
                self.scenes.append(open_scene(source, picked))
        except Exception:
            self.close()
            raise
        gsds = [s.gsd_m for s in self.scenes]
        if max(gsds) > 1.05 * min(gsds):
            self.close()
            raise DataError(f"the folder's scenes have different ground sample distances ({min(gsds):.2f}-"
                            f"{max(gsds):.2f} m); give one scene at a time", path=self.path)

    @property
    def gsd_m(self) -> float:
        return float(self.scenes[0].gsd_m)

    @property
    def bounds(self) -> Bounds:
        b = np.array([s.bounds_wgs84 for s in self.scenes])
        return Bounds(float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max()))

    def describe(self) -> dict[str, Any]:
        return {"source": "imagery", "path": str(self.path), "gsd_m": round(self.gsd_m, 4),
                "bounds_wgs84": [round(v, 6) for v in self.bounds.as_list()],
                "scenes": [s.describe() for s in self.scenes]}

    def view(self, lat: float, lon: float, ground_m: float, size: int) -> View:
        """The view from the first scene that holds the place's centre (else the first that touches it)."""
        best: View | None = None
        for scene in self.scenes:
            w, s, e, n = scene.bounds_wgs84
            if not (w <= lon <= e and s <= lat <= n) and len(self.scenes) > 1:
                continue
            v = read_view(scene, lat, lon, ground_m, size)
            if v.valid.all():
                return v
            if best is None or v.valid_fraction > best.valid_fraction:
                best = v
        if best is None:
            blank = np.zeros((size, size, 3), np.uint8)
            return View(blank, np.zeros((size, size), bool), self.gsd_m)
        return best

    def close(self) -> None:
        for s in self.scenes:
            s.close()
        self.scenes = []

    def __enter__(self) -> ImagerySet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def region_in_imagery(imagery: ImagerySet, region: Bounds | None, what: str = "--region") -> Bounds:
    """The part of ``region`` the imagery covers (the imagery's footprint when no region is given)."""
    foot = imagery.bounds
    if region is None:
        return foot
    inside = region.intersect(foot)
    if inside is None:
        raise ConfigError(f"{what} {region.west:g},{region.south:g},{region.east:g},{region.north:g} does not overlap "
                          f"the imagery {imagery.path} (which covers {foot.west:.5f},{foot.south:.5f},"
                          f"{foot.east:.5f},{foot.north:.5f})")
    return inside


def views_for(imagery: ImagerySet, centres: np.ndarray, ground_m: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Views of many (lat, lon) centres -> images (n, S, S, 3) uint8 and valid fractions (n,) float32."""
    images, valid = [], []
    for lat, lon in centres:
        v = imagery.view(float(lat), float(lon), ground_m, size)
        images.append(v.rgb)
        valid.append(v.valid_fraction)
    return np.stack(images), np.asarray(valid, np.float32)


Renderer = Callable[[float, float, int, float], np.ndarray | None]


def imagery_renderer(imagery: ImagerySet) -> Renderer:
    """A bundle map renderer: (lat, lon, px, ground_m) -> RGBA uint8 (px, px, 4), transparent where there is no
    imagery; None for a tile with no imagery at all (left out of the map)."""

    def render(lat: float, lon: float, px: int, ground_m: float) -> np.ndarray | None:
        if not (ground_m > 0 and math.isfinite(ground_m)):
            raise ValueError(f"ground extent must be positive, got {ground_m}")
        v = imagery.view(lat, lon, ground_m, px)
        if not v.valid.any():
            return None
        alpha = np.where(v.valid, 255, 0).astype(np.uint8)[..., None]
        return np.concatenate([v.rgb, alpha], axis=-1)

    return render
