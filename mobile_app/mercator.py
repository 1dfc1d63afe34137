"""Web-mercator tile geometry (EPSG:3857, 256 px tiles): where a place falls in the tile pyramid, and at what scale.

The map (MBTiles) and the model's view both live on this grid. A tile at level ``z`` spans ``360 / 2**z`` degrees of
longitude; its ground resolution shrinks with ``cos(lat)``. Mercator is conformal, so at a point the scale is the
same east-west and north-south: a square of pixels is a square of ground, which is what lets the app cut the model's
square view straight out of stitched tiles.

Rows here are XYZ (row 0 at the north, as slippy maps count). MBTiles stores TMS rows (row 0 at the south):
``tms_row`` converts. Pure math, standard library only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

TILE_PX = 256
EARTH_RADIUS_M = 6378137.0
EQUATOR_M = 2.0 * math.pi * EARTH_RADIUS_M
MAX_LAT = 85.0511287798066  # the latitude where the square mercator world ends
MAX_LEVEL = 22


@dataclass(frozen=True)
class Bounds:
    """A lon/lat box, west-south-east-north (the order MBTiles' ``bounds`` uses)."""

    west: float
    south: float
    east: float
    north: float

    @property
    def center(self) -> tuple[float, float]:
        """(lon, lat) of the box's middle."""
        return (self.west + self.east) / 2.0, (self.south + self.north) / 2.0

    def contains(self, lon: float, lat: float) -> bool:
        return self.west <= lon <= self.east and self.south <= lat <= self.north

    def as_list(self) -> list[float]:
        return [self.west, self.south, self.east, self.north]

    def width_m(self) -> float:
        """East-west extent in metres along the box's middle latitude."""
        return (self.east - self.west) / 360.0 * EQUATOR_M * math.cos(math.radians(self.center[1]))

    def height_m(self) -> float:
        return (self.north - self.south) / 360.0 * EQUATOR_M


def parse_bounds(text: str | list | tuple) -> Bounds:
    """'LON0,LAT0,LON1,LAT1' (or 4 numbers) -> Bounds; ValueError with the reason when it is not a usable box."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    if len(parts) != 4:
        raise ValueError(f"a region is 4 numbers LON0,LAT0,LON1,LAT1; got {text!r}")
    try:
        west, south, east, north = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueError(f"a region is 4 numbers LON0,LAT0,LON1,LAT1; got {text!r}") from None
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        raise ValueError(f"region values must be finite; got {text!r}")
    if not (-180.0 <= west < east <= 180.0):
        raise ValueError(f"region longitudes must satisfy -180 <= LON0 < LON1 <= 180; got {west:g}, {east:g}")
    if not (-MAX_LAT <= south < north <= MAX_LAT):
        raise ValueError(f"region latitudes must satisfy -{MAX_LAT:.4f} <= LAT0 < LAT1 <= {MAX_LAT:.4f} "
                         f"(the web-mercator map); got {south:g}, {north:g}")
    return Bounds(west, south, east, north)


def world_px(level: int) -> int:
    """Side of the whole world in pixels at ``level``."""
    return TILE_PX << level


def lonlat_to_pixel(lon: float, lat: float, level: int) -> tuple[float, float]:
    """Global pixel coordinates (x east, y south, XYZ convention) of a place at ``level``; fractional."""
    lat = max(-MAX_LAT, min(MAX_LAT, lat))
    size = world_px(level)
    x = (lon + 180.0) / 360.0 * size
    s = math.sin(math.radians(lat))
    y = (0.5 - math.log((1.0 + s) / (1.0 - s)) / (4.0 * math.pi)) * size
    return x, y


def pixel_to_lonlat(x: float, y: float, level: int) -> tuple[float, float]:
    """Inverse of ``lonlat_to_pixel``."""
    size = world_px(level)
    lon = x / size * 360.0 - 180.0
    n = math.pi * (1.0 - 2.0 * y / size)
    lat = math.degrees(math.atan(math.sinh(n)))
    return lon, lat


def ground_resolution(lat: float, level: int) -> float:
    """Metres of ground per pixel at ``lat`` and ``level``."""
    return EQUATOR_M * math.cos(math.radians(lat)) / world_px(level)


def level_for_resolution(metres_per_px: float, lat: float) -> int:
    """The coarsest level whose pixels are no larger than ``metres_per_px`` at ``lat``.

    Choosing "no larger" means the app only ever shrinks imagery to the model's size (as training did with its
    crops) and never enlarges it, which would blur the view the model was trained on.
    """
    if metres_per_px <= 0:
        raise ValueError(f"a resolution must be positive, got {metres_per_px}")
    level = math.ceil(math.log2(EQUATOR_M * math.cos(math.radians(lat)) / (TILE_PX * metres_per_px)) - 1e-9)
    return int(min(MAX_LEVEL, max(0, level)))


def tms_row(level: int, row_xyz: int) -> int:
    """XYZ row -> TMS row (MBTiles counts rows from the south)."""
    return (1 << level) - 1 - row_xyz


def tile_bounds(level: int, col: int, row_xyz: int) -> Bounds:
    """The lon/lat box of one tile."""
    west, north = pixel_to_lonlat(col * TILE_PX, row_xyz * TILE_PX, level)
    east, south = pixel_to_lonlat((col + 1) * TILE_PX, (row_xyz + 1) * TILE_PX, level)
    return Bounds(west, south, east, north)


def tile_range(bounds: Bounds, level: int, pad_m: float = 0.0) -> tuple[range, range]:
    """(columns, XYZ rows) of the tiles that cover ``bounds`` grown by ``pad_m`` metres on every side."""
    x0, y0 = lonlat_to_pixel(bounds.west, bounds.north, level)
    x1, y1 = lonlat_to_pixel(bounds.east, bounds.south, level)
    # Pad by the pixel size at the edge nearer the pole (the finer one) so the pad is at least pad_m everywhere.
    pad_px = pad_m / ground_resolution(max(abs(bounds.north), abs(bounds.south)), level) if pad_m > 0 else 0.0
    last = (1 << level) - 1
    c0 = max(0, int(math.floor((x0 - pad_px) / TILE_PX)))
    c1 = min(last, int(math.floor((x1 + pad_px) / TILE_PX)))
    r0 = max(0, int(math.floor((y0 - pad_px) / TILE_PX)))
    r1 = min(last, int(math.floor((y1 + pad_px) / TILE_PX)))
    return range(c0, c1 + 1), range(r0, r1 + 1)
