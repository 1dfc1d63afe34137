"""Buildings of the tiles: farmsteads in open country and the street grids and building lots of towns.

Both are laid out on world-space lattices (500 m farm cells, 5 km town regions) with hashed parameters, so a house
stands in the same place whichever tile looks at it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from world.noise import hash2, hash_unit, mix_bits, unit
from world.tile_frame import Regions, cells, grid_ids, local_rotated

# Roof colours (RGB 0-255): every building lot draws one of them from its hash.
ROOF_COLOURS = np.array([(160, 80, 64), (120, 118, 116), (190, 186, 180), (96, 90, 86), (170, 110, 80),
                         (140, 140, 150), (210, 205, 196)], np.float32)


def farmsteads(xs: np.ndarray, ys: np.ndarray, key: int) -> np.ndarray:
    """House + barn + silo footprints in about 30% of the 500 m cells."""
    size = 500.0
    jx, cx = cells(xs, size)
    jy, cy = cells(ys, size)
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


class Town:
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
        reg = Regions(xs, ys, self.REGION)
        theta = (reg.table(key("town/angle")) * 2.0 - 1.0) * math.radians(40.0)
        lot = 14.0 + 8.0 * reg.table(key("town/lot"))
        nlots = 4 + 2 * np.floor(reg.table(key("town/nlots")) * 3.0)
        regions = np.unique(reg.index[urban])
        for r in regions:
            sel = urban if len(regions) == 1 else urban & (reg.index == r)
            c, s = math.cos(theta[r]), math.sin(theta[r])
            U, V = local_rotated(xs, ys, reg, r, c, s)
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
        idx, tu, tv = grid_ids(iu[sel], iv[sel])
        h = hash2(tu, tv, key)
        margin_t = unit(h)
        present_t = unit(mix_bits(h))
        margin = np.zeros(u.shape, np.float32)
        present = np.zeros(u.shape, np.float32)
        colour = np.zeros(u.shape, np.int64)
        axis = np.zeros(u.shape, bool)
        margin[sel] = margin_t.ravel()[idx]
        present[sel] = present_t.ravel()[idx]
        colour[sel] = (h % np.uint64(len(ROOF_COLOURS))).astype(np.int64).ravel()[idx]
        axis[sel] = ((h >> np.uint64(20)) & np.uint64(1)).astype(bool).ravel()[idx]
        margin = np.where(dense, 1.0 + 2.0 * margin, 2.0 + 3.0 * margin)
        ou, ov = u - np.floor(u / size) * size, v - np.floor(v / size) * size
        roof = sel & (ou > margin) & (ou < size - margin) & (ov > margin) & (ov < size - margin)
        roof &= (np.mod(u, block) > self.WIDTH + 1.0) & (np.mod(v, block) > self.WIDTH + 1.0)
        roof &= present < np.where(dense, 0.97, 0.82)
        gable = roof & ~dense & (np.where(axis, ou, ov) > size / 2)
        return roof, colour, gable

