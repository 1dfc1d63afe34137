"""Regions and the grid of tile centres that covers them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from contracts.durability import available_memory_bytes
from contracts.errors import ConfigError


@dataclass(frozen=True)
class BBox:
    lon0: float
    lat0: float
    lon1: float
    lat1: float

    @classmethod
    def parse(cls, text: str) -> BBox:
        """'LON0,LAT0,LON1,LAT1' -> BBox, refusing reversed, empty or off-globe boxes with a clear message."""
        parts = [p.strip() for p in str(text).split(",")]
        if len(parts) != 4:
            raise ConfigError(f"bbox must be LON0,LAT0,LON1,LAT1 (4 numbers), got {text!r}")
        try:
            lon0, lat0, lon1, lat1 = (float(p) for p in parts)
        except ValueError:
            raise ConfigError(f"bbox must be 4 numbers LON0,LAT0,LON1,LAT1, got {text!r}") from None
        return cls(lon0, lat0, lon1, lat1).validated()

    def validated(self) -> BBox:
        values = (self.lon0, self.lat0, self.lon1, self.lat1)
        if not all(math.isfinite(v) for v in values):
            raise ConfigError(f"bbox has a non-finite number: {values}")
        if not (-180 <= self.lon0 <= 180 and -180 <= self.lon1 <= 180):
            raise ConfigError(f"bbox longitudes must lie in [-180, 180], got {self.lon0} and {self.lon1}")
        if not (-90 <= self.lat0 <= 90 and -90 <= self.lat1 <= 90):
            raise ConfigError(f"bbox latitudes must lie in [-90, 90], got {self.lat0} and {self.lat1}")
        if self.lon0 >= self.lon1:
            raise ConfigError(f"bbox min longitude {self.lon0} must be less than max longitude {self.lon1}")
        if self.lat0 >= self.lat1:
            raise ConfigError(f"bbox min latitude {self.lat0} must be less than max latitude {self.lat1}")
        return self

    def as_text(self) -> str:
        return f"{self.lon0:g},{self.lat0:g},{self.lon1:g},{self.lat1:g}"

    def contains(self, lat: float, lon: float) -> bool:
        return self.lat0 <= lat <= self.lat1 and self.lon0 <= lon <= self.lon1


@dataclass(frozen=True)
class Grid:
    """rows x cols tile centres; row 0 is the northern edge (image order), column 0 the western edge."""

    bbox: BBox
    rows: int
    cols: int

    @property
    def lats(self) -> np.ndarray:
        step = (self.bbox.lat1 - self.bbox.lat0) / self.rows
        return self.bbox.lat1 - step * (np.arange(self.rows) + 0.5)

    @property
    def lons(self) -> np.ndarray:
        step = (self.bbox.lon1 - self.bbox.lon0) / self.cols
        return self.bbox.lon0 + step * (np.arange(self.cols) + 0.5)

    @property
    def size(self) -> int:
        return self.rows * self.cols

    def centres(self) -> np.ndarray:
        """(rows*cols, 2) of (lat, lon), row-major."""
        lat, lon = np.meshgrid(self.lats, self.lons, indexing="ij")
        return np.stack([lat.ravel(), lon.ravel()], axis=1)

    def spec(self) -> dict:
        return {"bbox": self.bbox.as_text(), "rows": self.rows, "cols": self.cols}


def make_grid(bbox: BBox, cols: int) -> Grid:
    """A grid ``cols`` wide whose cells are about square on the ground (rows follow from cos(latitude))."""
    if cols < 1:
        raise ConfigError(f"--cols must be at least 1, got {cols}")
    mid = math.radians((bbox.lat0 + bbox.lat1) / 2)
    width_km = (bbox.lon1 - bbox.lon0) * math.cos(mid)
    height_km = bbox.lat1 - bbox.lat0
    rows = max(1, round(cols * height_km / max(width_km, 1e-9)))
    return Grid(bbox, rows, cols)


# bytes a map tile costs while a region is embedded and scored: its float32 embedding, land-cover fractions, the
# scores of a query and the drawn map (a generous estimate, so a grid that passes fits)
TILE_OVERHEAD_BYTES = 256


def check_grid_fits(tiles: int, dim: int, what: str, available: int | None = None) -> None:
    """Refuse up front a grid whose arrays would not fit in the memory available (ConfigError naming ``what``)."""
    need = tiles * (4 * dim + TILE_OVERHEAD_BYTES)
    available = available_memory_bytes() if available is None else available
    if available is not None and need > available // 2:
        raise ConfigError(f"{what} asks for {tiles:,} map tiles, about {need / 2**30:.1f} GiB of arrays, and "
                          f"{available / 2**30:.1f} GiB of memory is available: use fewer columns, or --shard the "
                          "region over several runs")
