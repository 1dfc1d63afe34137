"""MBTiles 1.3 files: read views of the ground out of a raster tile pyramid (device side).

bundle.mbtiles_writer writes them on the build side.

An MBTiles file is one SQLite database with two tables (https://github.com/mapbox/mbtiles-spec, version 1.3):

    metadata (name TEXT, value TEXT)   name, format (jpg|png), bounds "W,S,E,N", center "LON,LAT,LEVEL",
                                       minzoom, maxzoom, plus type / version / description / attribution
    tiles (zoom_level, tile_column, tile_row, tile_data)   rows counted from the south (TMS)

The map widget (mobile_app.mapwidgets, on kivy_garden.mapview's MBTilesMapSource, which crashes without ``center``)
draws its tiles through this reader; the app also reads it to cut the model's view of a tapped place: the square
of ground a model zoom level sees, stitched from the tiles around the place at the level whose pixels match that
view, then resized to the model's input size exactly as training resized its crops (contracts.image_prep.resize:
Pillow bicubic with antialiasing).

Device-side: sqlite3, numpy, Pillow only.
"""

from __future__ import annotations

import io
import math
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mobile_app import mercator
from mobile_app.closing import Closing
from mobile_app.errors import BundleError, PlaceError

FORMATS = ("jpg", "png")
REQUIRED_METADATA = ("name", "format", "bounds", "center", "minzoom", "maxzoom")
_SQLITE_MAGIC = b"SQLite format 3\x00"


# ---------------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class MapInfo:
    """What an MBTiles file says about itself."""

    name: str
    format: str
    bounds: mercator.Bounds
    center: tuple[float, float, int]  # lon, lat, level
    minzoom: int
    maxzoom: int
    metadata: dict[str, str]


def _parse_metadata(meta: dict[str, str], path: Path) -> MapInfo:
    missing = [k for k in REQUIRED_METADATA if not str(meta.get(k, "")).strip()]
    if missing:
        raise BundleError(f"map {path} lacks required MBTiles metadata: {', '.join(missing)} "
                          "(the map view needs all of name, format, bounds, center, minzoom, maxzoom); "
                          "rebuild the bundle")
    fmt = meta["format"].strip().lower()
    fmt = "jpg" if fmt == "jpeg" else fmt
    if fmt not in FORMATS:
        raise BundleError(f"map {path} holds {meta['format']!r} tiles; the app reads raster jpg or png only")
    try:
        bounds = mercator.parse_bounds(meta["bounds"])
    except ValueError as exc:
        raise BundleError(f"map {path} has unusable bounds: {exc}") from None
    try:
        lon, lat, level = (float(v) for v in meta["center"].split(","))
        minzoom, maxzoom = int(meta["minzoom"]), int(meta["maxzoom"])
    except ValueError:
        raise BundleError(f"map {path}: center must be 'LON,LAT,LEVEL' and minzoom/maxzoom integers; got center="
                          f"{meta['center']!r}, minzoom={meta['minzoom']!r}, maxzoom={meta['maxzoom']!r}") from None
    if not 0 <= minzoom <= maxzoom <= mercator.MAX_LEVEL:
        raise BundleError(f"map {path}: minzoom {minzoom} / maxzoom {maxzoom} are not a valid level range")
    return MapInfo(name=meta["name"], format=fmt, bounds=bounds, center=(lon, lat, int(level)), minzoom=minzoom,
                   maxzoom=maxzoom, metadata=dict(meta))


class MBTiles(Closing):
    """A read-only MBTiles file. ``MBTiles(path)`` checks its structure and metadata; tiles are read on demand.

    Safe to share between threads: each thread gets its own read-only connection (sqlite3 connections are not).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise BundleError(f"map file {self.path} is missing")
        with open(self.path, "rb") as f:
            if f.read(16) != _SQLITE_MAGIC:
                raise BundleError(f"map file {self.path} is not an MBTiles (SQLite) file")
        self._local = threading.local()
        try:
            conn = self._conn()
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
            if not {"metadata", "tiles"} <= tables:
                raise BundleError(f"map file {self.path} is not an MBTiles file (needs tables metadata and tiles)")
            meta = {str(k): str(v) for k, v in conn.execute("SELECT name, value FROM metadata")}
            self.levels = tuple(r[0] for r in conn.execute("SELECT DISTINCT zoom_level FROM tiles ORDER BY 1"))
        except sqlite3.DatabaseError as exc:
            raise BundleError(f"map file {self.path} is damaged ({exc}); rebuild the bundle") from None
        self.info = _parse_metadata(meta, self.path)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def tile_bytes(self, level: int, col: int, row_xyz: int) -> bytes | None:
        """Encoded tile at (level, column, XYZ row), or None when the file has no such tile."""
        return self.tms_tile_bytes(level, col, mercator.tms_row(level, row_xyz))

    def tms_tile_bytes(self, level: int, col: int, row_tms: int) -> bytes | None:
        """Encoded tile at (level, column, TMS row: the file's own count, which map widgets use), or None."""
        try:
            row = self._conn().execute(
                "SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?",
                (int(level), int(col), int(row_tms))).fetchone()
        except sqlite3.DatabaseError as exc:
            raise BundleError(f"map file {self.path} is damaged ({exc}); rebuild the bundle") from None
        return None if row is None else bytes(row[0])

    def tile_rgb(self, level: int, col: int, row_xyz: int) -> np.ndarray:
        """Decoded tile, RGB uint8 (256, 256, 3); a missing or undecodable tile is a PlaceError naming it."""
        return self.tile_rgba(level, col, row_xyz)[0]

    def tile_rgba(self, level: int, col: int, row_xyz: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(RGB uint8 (256, 256, 3), alpha (256, 256) or None): a bundle drawn from real imagery marks its no-data
        pixels with alpha 0. A missing or undecodable tile is a PlaceError naming it."""
        data = self.tile_bytes(level, col, row_xyz)
        where = f"level {level}, column {col}, row {row_xyz}"
        if data is None:
            raise PlaceError(f"the map has no imagery tile at {where} ({self.path.name}): no data there (past the "
                             "edge of a bundle's real imagery, or not built); this place cannot be heard")
        try:
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
                alpha = np.asarray(img.getchannel("A"), dtype=np.uint8) if img.mode in ("RGBA", "LA") else None
        except (OSError, ValueError, UnidentifiedImageError):
            raise PlaceError(f"the map's imagery tile at {where} is damaged; rebuild the bundle") from None
        if rgb.shape[:2] != (mercator.TILE_PX, mercator.TILE_PX):
            raise PlaceError(f"the map's imagery tile at {where} is {rgb.shape[1]}x{rgb.shape[0]} px, not "
                             f"{mercator.TILE_PX}x{mercator.TILE_PX}")
        return rgb, alpha

    def read_view(self, lon: float, lat: float, ground_m: float, level: int) -> np.ndarray:
        """The square of ground ``ground_m`` metres wide centred on (lon, lat), north up, at ``level``'s pixels.

        Returns RGB uint8 (n, n, 3) with n = round(ground_m / resolution): the stitched tiles under the square,
        cropped on whole pixels (half a pixel of shift at most, well under a metre at the levels used).
        """
        if ground_m <= 0:
            raise ValueError(f"ground extent must be positive, got {ground_m}")
        res = mercator.ground_resolution(lat, level)
        side = max(1, int(round(ground_m / res)))
        cx, cy = mercator.lonlat_to_pixel(lon, lat, level)
        left = int(math.floor(cx - side / 2.0 + 0.5))
        top = int(math.floor(cy - side / 2.0 + 0.5))
        t = mercator.TILE_PX
        c0, c1 = left // t, (left + side - 1) // t
        r0, r1 = top // t, (top + side - 1) // t
        canvas = np.empty(((r1 - r0 + 1) * t, (c1 - c0 + 1) * t, 3), dtype=np.uint8)
        opaque = np.ones(canvas.shape[:2], dtype=bool)
        for r in range(r0, r1 + 1):
            for c in range(c0, c1 + 1):
                rgb, alpha = self.tile_rgba(level, c, r)
                canvas[(r - r0) * t:(r - r0 + 1) * t, (c - c0) * t:(c - c0 + 1) * t] = rgb
                if alpha is not None:
                    opaque[(r - r0) * t:(r - r0 + 1) * t, (c - c0) * t:(c - c0 + 1) * t] = alpha > 0
        y, x = top - r0 * t, left - c0 * t
        if not opaque[y:y + side, x:x + side].all():
            raise PlaceError(f"the imagery has no data for part of the {ground_m:.0f} m view around {lat:.5f}, "
                             f"{lon:.5f} (the scene's edge); this place cannot be heard - tap further inside")
        return canvas[y:y + side, x:x + side]
