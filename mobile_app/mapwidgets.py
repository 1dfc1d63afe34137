"""Map pieces for the app: the bundle's MBTiles as a map source, a map that reports taps, and overlay layers (the
region's outline with everything outside dimmed; the tapped place with the square of ground the model saw; in field
mode the listener, where they face, and the neighbouring places that sound).

Kivy + kivy_garden.mapview; imported only after the app has set up Kivy's environment. Never torch.
"""

from __future__ import annotations

import io
import math
import sqlite3
import time
from typing import TYPE_CHECKING

from kivy.core.image import Image as CoreImage
from kivy.graphics import Color, Ellipse, Line, Mesh, Rectangle
from kivy.metrics import dp
from kivy_garden.mapview import MapLayer, MapView
from kivy_garden.mapview.downloader import Downloader
from kivy_garden.mapview.mbtsource import MBTilesMapSource

from mobile_app import mercator
from mobile_app.errors import BundleError

if TYPE_CHECKING:
    from mobile_app.mbtiles import MBTiles


class BundleMapSource(MBTilesMapSource):
    """mapview's MBTiles source, reading its tiles through the app's own reader (mobile_app.mbtiles), with three
    fixes for an offline device.

    - one read-only SQLite connection per loader thread, kept (the stock source opens a new one for every tile);
    - tiles decoded with the extension the file declares (jpg or png) instead of always 'png';
    - ``bounds`` kept as a tuple (the stock source stores a one-shot ``map`` iterator that breaks the second pan).
    A tile the file lacks is left empty (the map shows its background colour there) rather than failing.
    """

    def __init__(self, tiles: MBTiles, *, cache_dir: str, **kwargs):
        super().__init__(str(tiles.path), cache_dir=cache_dir, **kwargs)
        self.db.close()
        self.db = None
        self.tiles = tiles
        self.image_ext = tiles.info.format  # "jpg" or "png": the reader accepts nothing else
        self.bounds = None  # the app outlines the region itself; panning stays free

    def fill_tile(self, tile):
        if tile.state == "done":
            return
        Downloader.instance(self.cache_dir).submit(self._load_tile, tile)

    def _load_tile(self, tile):
        try:  # mapview counts tile rows as MBTiles stores them (TMS)
            data = self.tiles.tms_tile_bytes(tile.zoom, tile.tile_x, tile.tile_y)
        except (BundleError, sqlite3.Error):
            data = None
        if not data:
            tile.state = "done"
            return None
        try:
            im = CoreImage(io.BytesIO(data), ext=self.image_ext,
                           filename=f"{tile.zoom}.{tile.tile_x}.{tile.tile_y}.{self.image_ext}")
        except Exception:  # an undecodable tile stays empty instead of killing the loader thread
            tile.state = "done"
            return None
        return self._load_tile_done, (tile, im)


class TapMapView(MapView):
    """A MapView that tells a tap (a touch that barely moved) from a pan, and reports it as ``on_tap(lat, lon)``."""

    __events__ = ("on_tap",)
    tap_slop_dp = 12.0
    tap_max_s = 0.8

    def on_touch_down(self, touch):
        if self.collide_point(*touch.pos) and not touch.is_mouse_scrolling:
            touch.ud["s2s_tap"] = (touch.pos, time.monotonic())
        return super().on_touch_down(touch)

    def on_touch_up(self, touch):
        handled = super().on_touch_up(touch)
        start = touch.ud.get("s2s_tap")
        if start is not None and self.collide_point(*touch.pos):
            (x0, y0), t0 = start
            moved = ((touch.x - x0) ** 2 + (touch.y - y0) ** 2) ** 0.5
            if moved <= dp(self.tap_slop_dp) and time.monotonic() - t0 <= self.tap_max_s and self._touch_count == 0:
                coord = self.get_latlon_at(touch.x - self.x, touch.y - self.y, self.zoom)
                self.dispatch("on_tap", float(coord.lat), float(coord.lon))
        return handled

    def on_tap(self, lat: float, lon: float) -> None:
        pass

    def window_xy(self, lat: float, lon: float) -> tuple[float, float]:
        """Window coordinates of a place at the current zoom (what a finger would touch)."""
        return self.to_window(*self.get_window_xy_from(lat, lon, self.zoom))

    def tiles_loading(self) -> int:
        """How many tiles on screen are still loading (tests wait for 0 before a screenshot)."""
        return sum(1 for t in self._tiles if t.state == "loading")


class RegionLayer(MapLayer):
    """Dims everything outside the bundle's region and outlines it: the area where a tap can be heard."""

    def __init__(self, bounds: mercator.Bounds, **kwargs):
        super().__init__(**kwargs)
        self.bounds = bounds

    def reposition(self):
        mv = self.parent
        if mv is None:
            return
        b = self.bounds
        x0, y0 = mv.get_window_xy_from(b.south, b.west, mv.zoom)
        x1, y1 = mv.get_window_xy_from(b.north, b.east, mv.zoom)
        left, bottom, right, top = mv.x, mv.y, mv.right, mv.top
        self.canvas.clear()
        with self.canvas:
            Color(0.02, 0.04, 0.06, 0.55)
            for rx, ry, rw, rh in ((left, bottom, x0 - left, top - bottom), (x1, bottom, right - x1, top - bottom),
                                   (x0, bottom, x1 - x0, y0 - bottom), (x0, y1, x1 - x0, top - y1)):
                if rw > 0 and rh > 0:
                    Rectangle(pos=(rx, ry), size=(rw, rh))
            Color(1.0, 0.85, 0.35, 0.9)
            Line(rectangle=(x0, y0, x1 - x0, y1 - y0), width=dp(1.4))


class FootprintLayer(MapLayer):
    """The tapped place: a pin and the square of ground the model looked at for the chosen zoom."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.place: tuple[float, float] | None = None  # lat, lon
        self.ground_m = 0.0
        self.colour = (0.35, 0.95, 0.85)

    def show(self, lat: float, lon: float, ground_m: float) -> None:
        self.place = (lat, lon)
        self.ground_m = float(ground_m)
        self.reposition()

    def clear(self) -> None:
        self.place = None
        self.canvas.clear()

    def reposition(self):
        mv = self.parent
        self.canvas.clear()
        if mv is None or self.place is None:
            return
        lat, lon = self.place
        cx, cy = mv.get_window_xy_from(lat, lon, mv.zoom)
        level = int(mv.zoom)
        px, py = mercator.lonlat_to_pixel(lon, lat, level)
        half = self.ground_m / mercator.ground_resolution(lat, level) / 2.0
        lon0, lat0 = mercator.pixel_to_lonlat(px - half, py + half, level)
        lon1, lat1 = mercator.pixel_to_lonlat(px + half, py - half, level)
        x0, y0 = mv.get_window_xy_from(lat0, lon0, mv.zoom)
        x1, y1 = mv.get_window_xy_from(lat1, lon1, mv.zoom)
        r = dp(7)
        with self.canvas:
            Color(*self.colour, 0.18)
            Rectangle(pos=(x0, y0), size=(x1 - x0, y1 - y0))
            Color(*self.colour, 1.0)
            Line(rectangle=(x0, y0, x1 - x0, y1 - y0), width=dp(1.6))
            Color(0, 0, 0, 0.6)
            Ellipse(pos=(cx - r - dp(1.5), cy - r - dp(1.5)), size=(2 * r + dp(3), 2 * r + dp(3)))
            Color(*self.colour, 1.0)
            Ellipse(pos=(cx - r, cy - r), size=(2 * r, 2 * r))


class ListenerLayer(MapLayer):
    """Field mode: the listener with a cone pointing where they face, and the neighbouring places that sound, as
    discs sized by loudness and tinted by ear (blue: more in the left ear, orange: more in the right)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.listener: tuple[float, float] | None = None  # lat, lon
        self.heading = 0.0
        self.sources: list[dict] = []  # Sounding.as_dict() rows (key, lat, lon, gain, left, right, ...)
        self.spacing_m = 180.0

    def show(self, listener: tuple[float, float] | None, heading: float, sources: list[dict],
             spacing_m: float) -> None:
        self.listener, self.heading, self.sources, self.spacing_m = listener, float(heading), sources, spacing_m
        self.reposition()

    def reposition(self):
        mv = self.parent
        self.canvas.clear()
        if mv is None or self.listener is None:
            return
        lat, lon = self.listener
        cx, cy = mv.get_window_xy_from(lat, lon, mv.zoom)
        east_100m = lon + 100.0 / (mercator.EQUATOR_M / 360.0 * math.cos(math.radians(lat)))
        px_per_m = abs(mv.get_window_xy_from(lat, east_100m, mv.zoom)[0] - cx) / 100.0
        with self.canvas:
            for s in self.sources:
                if s["key"] == "centre":
                    continue
                x, y = mv.get_window_xy_from(s["lat"], s["lon"], mv.zoom)
                r = max(dp(4), 0.45 * self.spacing_m * px_per_m * math.sqrt(min(1.0, s["gain"] / 0.5)))
                right = s["right"] / max(1e-9, s["left"] + s["right"])  # 0 left ... 1 right
                tint = (0.35 + 0.6 * right, 0.55, 1.0 - 0.65 * right)
                Color(*tint, 0.32)
                Ellipse(pos=(x - r, y - r), size=(2 * r, 2 * r))
                Color(*tint, 0.95)
                Line(circle=(x, y, r), width=dp(1.3))
            h = math.radians(self.heading)
            reach = max(dp(46), 0.8 * self.spacing_m * px_per_m)
            half = math.radians(30)
            pts = [cx, cy]
            for a in (h - half, h - half / 2, h, h + half / 2, h + half):
                pts += [cx + reach * math.sin(a), cy + reach * math.cos(a)]
            Color(1.0, 0.95, 0.55, 0.30)
            Mesh(vertices=[v for i in range(0, len(pts), 2) for v in (pts[i], pts[i + 1], 0, 0)],
                 indices=list(range(len(pts) // 2)), mode="triangle_fan")
            Color(1.0, 0.95, 0.55, 0.95)
            Line(points=pts + [cx, cy], width=dp(1.4))
            r = dp(8)
            Color(0, 0, 0, 0.6)
            Ellipse(pos=(cx - r - dp(2), cy - r - dp(2)), size=(2 * r + dp(4), 2 * r + dp(4)))
            Color(1.0, 0.95, 0.55, 1.0)
            Ellipse(pos=(cx - r, cy - r), size=(2 * r, 2 * r))
