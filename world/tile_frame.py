"""The world frame a tile is placed in, and the world-space lattices its structures are laid out on.

Longitude is cut into 1-degree strips; inside a strip, x is the sinusoidal easting of the tile centre plus a local
tangent plane (metres east), y is metres north. Regions are the square world cells (a town, a crop district) whose
random parameters are hashed from the cell, so every tile that touches a cell sees the same parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from world.noise import hash_unit

M_PER_DEG = 111_320.0
STRIP_DEG = 1.0


@dataclass(frozen=True)
class Frame:
    """Pixel centres of a tile plus one pixel of margin on every side (so gradients are central everywhere)."""

    xs: np.ndarray  # (px + 2,) world x (m) of column centres
    ys: np.ndarray  # (px + 2,) world y (m) of row centres, row 0 north
    lats: np.ndarray  # (px + 2,) latitude of each row
    lons: np.ndarray  # (px + 2,) longitude of each column (not wrapped)
    gsd: float
    px: int


def make_frame(lat: float, lon: float, px: int, ground_m: float) -> Frame:
    """The frame of the tile of ``px`` pixels and ``ground_m`` metres centred on (lat, lon)."""
    gsd = ground_m / px
    off = (np.arange(-1, px + 1, dtype=np.float64) - px / 2.0 + 0.5) * gsd
    coslat = max(math.cos(math.radians(lat)), 0.01)
    strip = min(int(math.floor((lon + 180.0) / STRIP_DEG)), int(360 / STRIP_DEG) - 1)
    centre = -180.0 + (strip + 0.5) * STRIP_DEG
    x0 = strip * 2.0e6 + (lon - centre) * M_PER_DEG * coslat
    y0 = lat * M_PER_DEG
    return Frame(xs=x0 + off, ys=y0 - off, lats=np.clip(lat - off / M_PER_DEG, -90.0, 90.0),
                 lons=lon + off / (M_PER_DEG * coslat), gsd=gsd, px=px)


def line_distance(f: np.ndarray, gsd: float) -> np.ndarray:
    """Approximate distance (m) from each pixel to the zero contour of a smooth field (|f| / |grad f|)."""
    gy, gx = np.gradient(f, gsd)
    return np.abs(f) / (np.sqrt(gx * gx + gy * gy) + np.float32(1e-9))


def cells(coords: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray]:
    """(index of each coordinate's cell among those touched, the touched cells' world indices) for cells of side
    ``size`` m along one axis."""
    idx = np.floor(coords / size).astype(np.int64)
    lo = int(idx.min())
    return idx - lo, np.arange(lo, int(idx.max()) + 1, dtype=np.int64)


class Regions:
    """The square world cells (side ``size`` m) a tile touches, with per-cell random parameters."""

    def __init__(self, xs: np.ndarray, ys: np.ndarray, size: float):
        self.size = size
        self.jx, self.cx = cells(xs, size)
        self.jy, self.cy = cells(ys, size)
        self.index = self.jy[:, None] * len(self.cx) + self.jx[None, :]

    def table(self, key: int) -> np.ndarray:
        """Uniform [0, 1) per cell, flat in the order of ``index``."""
        return hash_unit(self.cx[None, :], self.cy[:, None], key).ravel()

    def values(self, key: int) -> np.ndarray:
        return self.table(key)[self.index]


def grid_ids(iu: np.ndarray, iv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat index of each (iu, iv) into the small table of the distinct lattice points, and that table's coordinates
    (so per-parcel/per-lot values are hashed once per parcel and gathered)."""
    if iu.size == 0:
        return iu, np.zeros((1, 1), np.int64), np.zeros((1, 1), np.int64)
    u0, v0 = int(iu.min()), int(iv.min())
    nu = int(iu.max()) - u0 + 1
    tu = np.arange(u0, u0 + nu)[None, :]
    tv = np.arange(v0, int(iv.max()) + 1)[:, None]
    return (iv - v0) * nu + (iu - u0), tu, tv


def local_rotated(xs: np.ndarray, ys: np.ndarray, reg: Regions, r: int, c: float, s: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """float32 coordinates relative to region ``r``'s corner, rotated by the region's angle, on the full grid."""
    ncx = len(reg.cx)
    size = float(reg.size)
    ax, ay = reg.cx[r % ncx] * size, reg.cy[r // ncx] * size
    xr = (xs - ax).astype(np.float32)
    yr = (ys - ay).astype(np.float32)
    c32, s32 = np.float32(c), np.float32(s)
    return xr[None, :] * c32 + yr[:, None] * s32, yr[:, None] * c32 - xr[None, :] * s32

