"""Where the world's recordings are, and which split each falls in.

GeoSound is mostly North America and Europe: locations are drawn from a mixture of the contiguous USA (a coarse
border polygon, so a country-scale map there has plenty of data), Europe, dense clusters around large cities, and
the rest of the land, rejecting open water (but keeping shores) and thinning ice caps and deserts.

Splits are geographic: the world is cut into cells of ``cell_deg`` degrees and a cell is wholly train, validation or
test, so no place leaks between splits. Cells are dealt to splits greedily in a seeded order so the sample counts
follow the requested fractions even when a city cluster fills one cell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from contracts.errors import ConfigError
from contracts.schema import SPLITS
from world import landcover

# (lon, lat) vertices of a coarse outline of the contiguous USA.
CONUS: tuple[tuple[float, float], ...] = (
    (-124.7, 48.4), (-123.0, 49.0), (-95.2, 49.0), (-89.6, 48.0), (-84.8, 46.5), (-82.4, 45.3), (-82.4, 43.0),
    (-83.1, 42.3), (-82.5, 41.7), (-79.0, 42.9), (-79.2, 43.4), (-76.3, 44.2), (-74.7, 45.0), (-71.5, 45.0),
    (-70.0, 46.7), (-69.2, 47.45), (-67.8, 47.1), (-67.0, 44.8), (-70.0, 41.6), (-74.0, 40.5), (-75.5, 38.5),
    (-76.0, 35.5), (-81.0, 31.5), (-80.0, 26.5), (-80.4, 25.1), (-81.8, 25.9), (-82.8, 29.0), (-84.0, 30.0),
    (-89.0, 30.2), (-89.5, 29.0), (-94.0, 29.5), (-97.2, 26.0), (-99.5, 27.5), (-101.4, 29.8), (-103.0, 29.0),
    (-104.5, 29.6), (-106.5, 31.8), (-108.2, 31.3), (-111.1, 31.3), (-114.8, 32.5), (-117.1, 32.5), (-118.5, 34.0),
    (-120.6, 34.6), (-122.5, 37.5), (-124.2, 40.4), (-124.6, 43.0),
)
EUROPE = (36.0, 60.0, -10.0, 30.0)  # lat min, lat max, lon min, lon max

# (name, lat, lon): dense clusters of recordings around large cities.
CITIES: tuple[tuple[str, float, float], ...] = (
    ("New York", 40.71, -74.00), ("Los Angeles", 34.05, -118.25), ("Chicago", 41.88, -87.63),
    ("Houston", 29.76, -95.37), ("San Francisco", 37.77, -122.42), ("Seattle", 47.61, -122.33),
    ("Boston", 42.36, -71.06), ("Atlanta", 33.75, -84.39), ("Denver", 39.74, -104.99), ("Miami", 25.76, -80.19),
    ("Washington", 38.90, -77.04), ("Toronto", 43.65, -79.38), ("Mexico City", 19.43, -99.13),
    ("London", 51.51, -0.13), ("Paris", 48.86, 2.35), ("Berlin", 52.52, 13.40), ("Madrid", 40.42, -3.70),
    ("Rome", 41.90, 12.50), ("Amsterdam", 52.37, 4.90), ("Vienna", 48.21, 16.37), ("Stockholm", 59.33, 18.07),
    ("Tokyo", 35.68, 139.69), ("Sydney", -33.87, 151.21), ("Sao Paulo", -23.55, -46.63), ("Mumbai", 19.08, 72.88),
    ("Cairo", 30.04, 31.24),
)
CITY_SIGMA_DEG = 0.08
# Share of samples from each part of the mixture.
MIXTURE: tuple[tuple[str, float], ...] = (("usa", 0.42), ("europe", 0.24), ("cities", 0.12), ("world", 0.22))
# Thinning of land classes GeoSound rarely records in: accept probability.
_ACCEPT = {landcover.SNOW: 0.15, landcover.BARREN: 0.4}
_COAST_ACCEPT = 0.6


def in_polygon(lon: float, lat: float, poly: Sequence[tuple[float, float]] = CONUS) -> bool:
    """Even-odd ray casting."""
    inside = False
    n = len(poly)
    for i in range(n):
        x1, y1 = poly[i]
        x2, y2 = poly[(i + 1) % n]
        if (y1 > lat) != (y2 > lat) and lon < (x2 - x1) * (lat - y1) / (y2 - y1) + x1:
            inside = not inside
    return inside


def _acceptable(lat: float, lon: float, rng: np.random.Generator) -> bool:
    cls = int(landcover.landcover_class(lat, lon))
    if cls == landcover.WATER:
        near = landcover.neighbourhood_fractions(lat, lon, radius=1)
        return near[landcover.WATER] < 1.0 and rng.random() < _COAST_ACCEPT  # a shore: keep some
    return rng.random() < _ACCEPT.get(cls, 1.0)


def sample_location(rng: np.random.Generator) -> tuple[float, float, str]:
    """(lat, lon, region) of one recording, by rejection from the mixture."""
    names = [m[0] for m in MIXTURE]
    probs = np.array([m[1] for m in MIXTURE])
    region = names[int(rng.choice(len(names), p=probs / probs.sum()))]
    lon_min, lon_max = min(p[0] for p in CONUS), max(p[0] for p in CONUS)
    lat_min, lat_max = min(p[1] for p in CONUS), max(p[1] for p in CONUS)
    for _ in range(10_000):
        if region == "usa":
            lat, lon = rng.uniform(lat_min, lat_max), rng.uniform(lon_min, lon_max)
            if not in_polygon(lon, lat):
                continue
        elif region == "europe":
            z = rng.uniform(math.sin(math.radians(EUROPE[0])), math.sin(math.radians(EUROPE[1])))
            lat, lon = math.degrees(math.asin(z)), rng.uniform(EUROPE[2], EUROPE[3])
        elif region == "cities":
            _, clat, clon = CITIES[int(rng.integers(len(CITIES)))]
            lat = clat + rng.normal(0.0, CITY_SIGMA_DEG)
            lon = clon + rng.normal(0.0, CITY_SIGMA_DEG) / max(math.cos(math.radians(clat)), 0.2)
        else:
            z = rng.uniform(math.sin(math.radians(-56.0)), math.sin(math.radians(72.0)))
            lat, lon = math.degrees(math.asin(z)), rng.uniform(-180.0, 180.0)
        lat, lon = float(np.clip(lat, -89.9, 89.9)), float((lon + 180.0) % 360.0 - 180.0)
        if _acceptable(lat, lon, rng):
            return round(lat, 6), round(lon, 6), region
    raise RuntimeError("location sampling did not converge")  # pragma: no cover - land is never that rare


def cell_of(lat: float, lon: float, cell_deg: float) -> tuple[int, int]:
    return int(math.floor((lat + 90.0) / cell_deg)), int(math.floor((lon + 180.0) / cell_deg))


def assign_splits(lats: Sequence[float], lons: Sequence[float], cell_deg: float,
                  fractions: Sequence[float], seed: int) -> list[str]:
    """Split of each sample such that every cell belongs to one split and counts follow ``fractions``.

    Cells are visited in a seeded random order and each goes to the split furthest below its target; with at least
    three cells every split gets one.
    """
    if not (cell_deg > 0):
        raise ConfigError(f"cell_deg must be positive, got {cell_deg}")
    fr = np.asarray(fractions, np.float64)
    if fr.shape != (3,) or np.any(fr < 0) or fr.sum() <= 0:
        raise ConfigError(f"split_fractions must be three non-negative numbers, got {list(fractions)}")
    fr = fr / fr.sum()
    cells: dict[tuple[int, int], list[int]] = {}
    for i, (la, lo) in enumerate(zip(lats, lons)):
        cells.setdefault(cell_of(la, lo, cell_deg), []).append(i)
    keys = sorted(cells)
    order = np.random.default_rng([int(seed), 7]).permutation(len(keys))
    total = len(lats)
    counts = np.zeros(3)
    out = [""] * total
    for step, j in enumerate(order):
        members = cells[keys[j]]
        empty = [k for k in range(3) if counts[k] == 0 and fr[k] > 0]
        remaining = len(keys) - step
        if empty and remaining <= len(empty):
            k = empty[0]  # make sure no wanted split ends up empty
        else:
            k = int(np.argmax(fr * total - counts))
        counts[k] += len(members)
        for i in members:
            out[i] = SPLITS[k]
    return out
