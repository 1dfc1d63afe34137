"""Opening a scene: georeference, band mapping, bit depth, no-data and the stretch to 8-bit RGB.

A scene is one raster (GeoTIFF, COG, JPEG 2000, a GDAL VRT, an MBTiles file) or a folder of single-band files named
by band (a Sentinel-2 granule: ``*B04*``, ``*B03*``, ``*B02*`` are red, green, blue). rasterio (GDAL) reads all of
them in any CRS. Nothing is read whole: the stretch is estimated on a fixed sample of small windows spread over the
scene (the same sample also proves the file can be decoded, so a truncated file fails here), and views are cut with
windowed, decimated reads (``imagery.views``).

Bad input is one clear error: a path that is missing or that GDAL cannot open, a raster with no georeference (or
only ground control points), a CRS that cannot be reprojected to WGS84, one band or more than four with no band
mapping, an MBTiles file without its metadata table, data that cannot be decoded.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from contracts.errors import ConfigError, DataError

logger = logging.getLogger("sat2sound.imagery")

RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".j2k", ".vrt", ".mbtiles", ".img")
SENTINEL_RGB = ("B04", "B03", "B02")  # red, green, blue of a Sentinel-2 granule
STRETCH_PERCENTILES = (2.0, 98.0)
SAMPLE_GRID = 5  # the stretch sample: SAMPLE_GRID x SAMPLE_GRID windows ...
SAMPLE_WINDOW = 256  # ... of at most this many pixels a side
# GDAL's block cache defaults to 5% of RAM; decimated reads of a huge scene without overviews would fill it. Cap it
# (the user's own GDAL_CACHEMAX wins), so reading views stays within a few hundred MB whatever the scene's size.
os.environ.setdefault("GDAL_CACHEMAX", "128")


@dataclass(frozen=True)
class Stretch:
    """How data values become 8-bit: ``none`` for 8-bit data, else a linear map of [low, high] per band to 0-255."""

    kind: str  # "none" | "percentile"
    low: tuple[float, float, float] = (0.0, 0.0, 0.0)
    high: tuple[float, float, float] = (255.0, 255.0, 255.0)
    percentiles: tuple[float, float] | None = None

    def apply(self, data: np.ndarray) -> np.ndarray:
        """(3, H, W) float values -> (H, W, 3) uint8 (NaN, i.e. no data, becomes 0)."""
        lo = np.asarray(self.low, np.float32).reshape(3, 1, 1)
        hi = np.asarray(self.high, np.float32).reshape(3, 1, 1)
        x = (np.nan_to_num(data, nan=0.0) - lo) / np.maximum(hi - lo, 1e-6) * 255.0
        return np.ascontiguousarray(np.moveaxis(np.clip(np.rint(x), 0, 255).astype(np.uint8), 0, -1))

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind != "none":
            out.update(low=[round(v, 3) for v in self.low], high=[round(v, 3) for v in self.high],
                       percentiles=list(self.percentiles or ()))
        return out


@dataclass
class Scene:
    """One opened scene: its red/green/blue sources, footprint, ground sample distance and stretch."""

    path: Path
    bands: list[tuple[Any, int]]  # (open rasterio dataset, 1-based band index) for red, green, blue
    bounds_wgs84: tuple[float, float, float, float]  # west, south, east, north (degrees)
    gsd_m: float  # native ground sample distance at the scene's centre (metres per pixel)
    dtype: str
    zero_is_nodata: bool  # integer data above 8 bits with no declared no-data: 0 marks no data (Sentinel-2 L1C)
    stretch: Stretch = field(default_factory=lambda: Stretch("none"))
    band_names: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        ds0 = self.bands[0][0]
        return {"path": str(self.path), "driver": ds0.driver, "crs": ds0.crs.to_string(),
                "size_px": [ds0.width, ds0.height], "bounds_wgs84": [round(v, 6) for v in self.bounds_wgs84],
                "gsd_m": round(self.gsd_m, 4), "dtype": self.dtype, "bands": list(self.band_names),
                "nodata": _nodata_text(ds0, self.zero_is_nodata), "stretch": self.stretch.describe()}

    def overlaps(self, west: float, south: float, east: float, north: float) -> bool:
        w, s, e, n = self.bounds_wgs84
        return w < east and west < e and s < north and south < n

    def close(self) -> None:
        for ds in {id(ds): ds for ds, _ in self.bands}.values():
            ds.close()


def _nodata_text(ds: Any, zero_is_nodata: bool) -> str:
    if ds.nodata is not None:
        return f"value {ds.nodata:g}"
    if any(str(m).lower().endswith("alpha") or "per_dataset" in str(m).lower() for m in ds.mask_flag_enums[0]):
        return "mask band"
    return "0 (integer data, none declared)" if zero_is_nodata else "none"


def parse_bands(text: str | None) -> tuple[int, int, int] | None:
    """'R,G,B' 1-based band numbers (e.g. '4,3,2', or '1,1,1' for greyscale) -> a tuple; None stays None."""
    if text is None or str(text).strip() == "":
        return None
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--bands must be three band numbers R,G,B such as 4,3,2 (or 1,1,1), got {text!r}") from None
    if len(values) != 3 or min(values) < 1:
        raise ConfigError(f"--bands must be three band numbers R,G,B, each 1 or more, got {text!r}")
    return values  # type: ignore[return-value]


def gdal_errors() -> tuple[type[BaseException], ...]:
    """The exceptions rasterio raises for GDAL failures (its own, and GDAL's CPLE_* errors passed through)."""
    from rasterio._err import CPLE_BaseError
    from rasterio.errors import RasterioError

    return (RasterioError, CPLE_BaseError, OSError)


def _gdal_detail(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def _open_raster(path: Path) -> Any:
    import rasterio

    if path.suffix.lower() == ".mbtiles":
        check_mbtiles(path)
    try:
        return rasterio.open(path)
    except gdal_errors() as exc:
        raise DataError(f"cannot open the imagery ({_gdal_detail(exc)})", path=path) from None


def check_mbtiles(path: Path) -> None:
    """An MBTiles file must hold its metadata table with a format and tiles: GDAL needs them to place the tiles."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table','view')")}
            if "metadata" not in tables:
                raise DataError("the MBTiles file has no metadata table (name, format, bounds, minzoom, maxzoom); "
                                "export it again from your GIS with metadata", path=path)
            meta = dict(conn.execute("SELECT name, value FROM metadata").fetchall())
            if "tiles" not in tables:
                raise DataError("the MBTiles file has no tiles table", path=path)
    except sqlite3.DatabaseError as exc:
        raise DataError(f"not a readable MBTiles (SQLite) file ({_gdal_detail(exc)})", path=path) from None
    missing = [k for k in ("format",) if not str(meta.get(k, "")).strip()]
    if missing:
        raise DataError(f"the MBTiles metadata lacks {', '.join(missing)}", path=path)
    if str(meta["format"]).lower() not in ("png", "jpg", "jpeg", "webp"):
        raise DataError(f"the MBTiles holds {meta['format']!r} tiles; imagery needs png, jpg or webp", path=path)


def _check_georeference(ds: Any, path: Path) -> None:
    from affine import Affine

    if ds.crs is None:
        if ds.gcps[0]:
            raise DataError("the raster is placed by ground control points only; warp it to a CRS first "
                            "(gdalwarp -t_srs EPSG:4326 in.tif out.tif)", path=path)
        raise DataError("the raster has no georeference (no CRS): give a GeoTIFF, JPEG 2000 or MBTiles that says "
                        "where it lies", path=path)
    if ds.transform == Affine.identity():
        raise DataError("the raster has a CRS but no geotransform (pixel positions unknown)", path=path)


def _footprint(ds: Any, path: Path) -> tuple[float, float, float, float]:
    from rasterio.warp import transform_bounds

    try:
        west, south, east, north = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21)
    except (*gdal_errors(), ValueError) as exc:
        raise DataError(f"its CRS cannot be reprojected to WGS84 ({_gdal_detail(exc)}); reproject the scene to a "
                        "known CRS first", path=path) from None
    values = (west, south, east, north)
    if not all(math.isfinite(v) for v in values) or not (-180.5 <= west < east <= 180.5 and -90.5 <= south < north
                                                         <= 90.5):
        raise DataError(f"its CRS cannot be reprojected to WGS84 (footprint {values} is not on the globe)", path=path)
    return values


def native_gsd_m(ds: Any, centre_lat: float, centre_lon: float) -> float:
    """Metres per pixel at the scene's centre, measured by projecting one pixel step to a local metric plane."""
    from rasterio.crs import CRS
    from rasterio.warp import transform

    local = CRS.from_proj4(f"+proj=aeqd +lat_0={centre_lat} +lon_0={centre_lon} +datum=WGS84 +units=m")
    col, row = ds.width / 2.0, ds.height / 2.0
    pts = [ds.transform @ (col, row), ds.transform @ (col + 1, row), ds.transform @ (col, row + 1)]
    xs, ys = transform(ds.crs, local, [p[0] for p in pts], [p[1] for p in pts])
    dx = math.hypot(xs[1] - xs[0], ys[1] - ys[0])
    dy = math.hypot(xs[2] - xs[0], ys[2] - ys[0])
    return float(math.sqrt(dx * dy))


def _rgb_indices(ds: Any, bands: tuple[int, int, int] | None, path: Path) -> tuple[int, int, int]:
    from rasterio.enums import ColorInterp

    if bands is not None:
        bad = [b for b in bands if b > ds.count]
        if bad:
            raise ConfigError(f"--bands {','.join(map(str, bands))}: {path} has {ds.count} band(s), no band {bad[0]}")
        return bands
    interp = list(ds.colorinterp)
    if all(c in interp for c in (ColorInterp.red, ColorInterp.green, ColorInterp.blue)):
        return (interp.index(ColorInterp.red) + 1, interp.index(ColorInterp.green) + 1,
                interp.index(ColorInterp.blue) + 1)
    if ds.count in (3, 4):
        if ds.count == 4:
            logger.info("%s: 4 bands without colour names; reading bands 1,2,3 as red, green, blue "
                        "(give --bands to choose)", path)
        return (1, 2, 3)
    raise ConfigError(f"{path} has {ds.count} band(s) and none is named red, green or blue: say which bands to show "
                      "with --bands R,G,B (e.g. --bands 1,1,1 for greyscale, --bands 4,3,2 for Sentinel-2 or "
                      "Landsat 8 bands in order)")


def _sentinel_band_files(folder: Path) -> list[Path] | None:
    found = []
    for name in SENTINEL_RGB:
        hits = sorted(p for p in folder.iterdir() if p.suffix.lower() in RASTER_SUFFIXES and name in p.stem.upper())
        if not hits:
            return None
        found.append(hits[0])
    return found


def scene_files(path: str | Path) -> list[Path | list[Path]]:
    """What a --imagery path holds: one raster, a Sentinel-2-style folder of band files, or a folder of rasters."""
    p = Path(path)
    if not p.exists():
        raise DataError("imagery not found", path=p)
    if p.is_file():
        return [p]
    bands = _sentinel_band_files(p)
    if bands:
        return [bands]
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in RASTER_SUFFIXES)
    if not files:
        raise DataError(f"the folder holds no imagery ({', '.join(RASTER_SUFFIXES)} files, or B04/B03/B02 band files)",
                        path=p)
    return list(files)


def open_scene(source: Path | list[Path], bands: tuple[int, int, int] | None = None) -> Scene:
    """Open one scene (a raster, or [red, green, blue] single-band files) and estimate its stretch."""
    if isinstance(source, list):
        if bands is not None:
            raise ConfigError("--bands applies to one multi-band file; a folder of band files is read as B04/B03/B02")
        datasets = [_open_raster(f) for f in source]
        path, names = source[0].parent, SENTINEL_RGB
        picks = [(ds, 1) for ds in datasets]
        if len({(ds.crs, ds.transform, ds.width, ds.height) for ds in datasets}) != 1:
            for ds in datasets:
                ds.close()
            raise DataError("the band files do not share one grid (CRS, transform and size)", path=path)
    else:
        ds = _open_raster(source)
        path = source
        try:
            _check_georeference(ds, path)
            idx = _rgb_indices(ds, bands, path)
        except Exception:
            ds.close()
            raise
        picks = [(ds, i) for i in idx]
        names = tuple(f"band {i}" for i in idx)
    ds0 = picks[0][0]
    try:
        _check_georeference(ds0, path)
        west, south, east, north = _footprint(ds0, path)
        gsd = native_gsd_m(ds0, (south + north) / 2, (west + east) / 2)
        dtypes = {ds.dtypes[i - 1] for ds, i in picks}
        dtype = dtypes.pop() if len(dtypes) == 1 else "mixed"
        zero_nodata = dtype in ("uint16", "int16", "uint32", "int32") and ds0.nodata is None
        scene = Scene(path, picks, (west, south, east, north), gsd, dtype, zero_nodata, band_names=names)
        scene.stretch = estimate_stretch(scene)
    except Exception:
        for d in {id(d): d for d, _ in picks}.values():
            d.close()
        raise
    return scene


def _sample_windows(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """(col, row, w, h) of a SAMPLE_GRID x SAMPLE_GRID spread of small windows (the whole raster when small)."""
    w, h = min(SAMPLE_WINDOW, width), min(SAMPLE_WINDOW, height)
    cols = np.linspace(0, width - w, SAMPLE_GRID).round().astype(int)
    rows = np.linspace(0, height - h, SAMPLE_GRID).round().astype(int)
    return sorted({(int(c), int(r), w, h) for r in rows for c in cols})


def read_band(ds: Any, index: int, window: Any, out_shape: tuple[int, int] | None, zero_is_nodata: bool,
              path: Path) -> np.ndarray:
    """float32 values of one band in a window (decimated by averaging to ``out_shape``); no data -> NaN."""
    from rasterio.enums import Resampling

    rs = Resampling.average if out_shape is not None else Resampling.nearest
    try:
        data = ds.read(index, window=window, out_shape=out_shape, resampling=rs).astype(np.float32)
        mask = ds.read_masks(index, window=window, out_shape=out_shape, resampling=Resampling.nearest)
    except (*gdal_errors(), MemoryError) as exc:
        raise DataError(f"cannot decode the imagery ({_gdal_detail(exc)}); the file may be truncated or damaged",
                        path=path) from None
    data[mask == 0] = np.nan
    if zero_is_nodata:
        data[data == 0] = np.nan
    return data


def estimate_stretch(scene: Scene) -> Stretch:
    """No stretch for 8-bit data; else each band's 2nd-98th percentile of valid values in the sample windows."""
    from rasterio.windows import Window

    samples: list[list[np.ndarray]] = [[], [], []]
    for b, (ds, idx) in enumerate(scene.bands):
        for col, row, w, h in _sample_windows(ds.width, ds.height):
            vals = read_band(ds, idx, Window(col, row, w, h), None, scene.zero_is_nodata, scene.path)
            samples[b].append(vals[np.isfinite(vals)])
    if scene.dtype == "uint8":
        return Stretch("none")
    lows, highs = [], []
    for b in range(3):
        vals = np.concatenate(samples[b]) if samples[b] else np.empty(0, np.float32)
        if vals.size < 16:
            raise DataError("the scene's sample holds no valid pixels (all no-data?)", path=scene.path)
        lo, hi = np.percentile(vals, STRETCH_PERCENTILES)
        lows.append(float(lo))
        highs.append(float(max(hi, lo + 1e-3)))
    return Stretch("percentile", tuple(lows), tuple(highs), STRETCH_PERCENTILES)  # type: ignore[arg-type]
