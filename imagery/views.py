"""The model's view of a place cut out of real imagery: a square of ground, north up, at the model's input size.

The view is defined on a local azimuthal equidistant plane centred on the place (metres, north up), so a view has
the same ground extent in any source CRS. For each band the source window under the view is found, read decimated
by averaging to about twice the output size (so a 0.1 m scene is never read at full resolution for a 900 m view,
and overviews are used where the file has them), then reprojected bilinearly onto the view's grid. Pixels outside
the scene or marked no-data stay NaN; ``View.valid`` is the share of the view that holds data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from imagery.scene import Scene, gdal_errors, read_band

OVERSAMPLE = 2  # the source window is read at about this many times the output size before reprojection


@dataclass(frozen=True)
class View:
    rgb: np.ndarray  # (S, S, 3) uint8, no-data pixels filled with the mean colour of the valid ones (0 if none)
    valid: np.ndarray  # (S, S) bool, True where the scene has data
    gsd_m: float  # the scene's native ground sample distance

    @property
    def valid_fraction(self) -> float:
        return float(self.valid.mean())


def local_grid(lat: float, lon: float, ground_m: float, size: int):
    """(CRS, affine transform) of a size x size grid covering ground_m metres centred on (lat, lon), north up."""
    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    crs = CRS.from_proj4(f"+proj=aeqd +lat_0={lat:.9f} +lon_0={lon:.9f} +datum=WGS84 +units=m")
    half = ground_m / 2.0
    return crs, from_origin(-half, half, ground_m / size, ground_m / size)


def _band_view(scene: Scene, ds, index: int, dst_crs, dst_tf, ground_m: float, size: int) -> np.ndarray:
    from affine import Affine
    from rasterio.enums import Resampling
    from rasterio.warp import reproject, transform_bounds
    from rasterio.windows import Window, from_bounds

    out = np.full((size, size), np.nan, np.float32)
    half = ground_m / 2.0
    try:
        bounds = transform_bounds(dst_crs, ds.crs, -half, -half, half, half, densify_pts=21)
    except (*gdal_errors(), ValueError):
        return out
    win = from_bounds(*bounds, transform=ds.transform)
    col0, row0 = max(0, math.floor(win.col_off) - 1), max(0, math.floor(win.row_off) - 1)
    col1 = min(ds.width, math.ceil(win.col_off + win.width) + 1)
    row1 = min(ds.height, math.ceil(win.row_off + win.height) + 1)
    if col1 <= col0 or row1 <= row0:
        return out  # the view lies outside the scene
    window = Window(col0, row0, col1 - col0, row1 - row0)
    # Decimate so the read is at most OVERSAMPLE x the view's pixels across the window's share of the view.
    cover = max(window.width / max(win.width, 1e-9), window.height / max(win.height, 1e-9), 1e-9)
    target = max(4, int(math.ceil(OVERSAMPLE * size * min(cover, 1.0))))
    factor = max(1.0, min(window.width, window.height) / target)
    out_shape = None
    src_tf = ds.window_transform(window)
    if factor > 1.0:
        out_shape = (max(1, int(round(window.height / factor))), max(1, int(round(window.width / factor))))
        src_tf = src_tf @ Affine.scale(window.width / out_shape[1], window.height / out_shape[0])
    data = read_band(ds, index, window, out_shape, scene.zero_is_nodata, scene.path)
    try:
        reproject(data, out, src_transform=src_tf, src_crs=ds.crs, src_nodata=np.nan, dst_transform=dst_tf,
                  dst_crs=dst_crs, dst_nodata=np.nan, resampling=Resampling.bilinear)
    except (*gdal_errors(), ValueError) as exc:
        from contracts.errors import DataError

        raise DataError(f"cannot reproject the imagery onto the view ({exc})", path=scene.path) from None
    return out


def read_view(scene: Scene, lat: float, lon: float, ground_m: float, size: int) -> View:
    """The view of (lat, lon): ground_m metres a side at size x size pixels, stretched to 8-bit RGB."""
    if not (ground_m > 0 and math.isfinite(ground_m)):
        raise ValueError(f"a view's ground extent must be a positive number of metres, got {ground_m}")
    dst_crs, dst_tf = local_grid(lat, lon, ground_m, size)
    cache: dict[tuple[int, int], np.ndarray] = {}
    planes = []
    for ds, index in scene.bands:
        key = (id(ds), index)
        if key not in cache:
            cache[key] = _band_view(scene, ds, index, dst_crs, dst_tf, ground_m, size)
        planes.append(cache[key])
    data = np.stack(planes)
    valid = np.isfinite(data).all(axis=0)
    rgb = scene.stretch.apply(data)
    if not valid.all():
        fill = rgb[valid].mean(axis=0).round().astype(np.uint8) if valid.any() else np.zeros(3, np.uint8)
        rgb[~valid] = fill
    return View(rgb, valid, scene.gsd_m)
