"""The offline Sat2Sound app (Kivy): tap the map, hear the place.

Three ways to run it (``python -m mobile_app --bundle DIR``):
- plain: tap a place; the app cuts the model's view of it out of the bundle's map at the chosen zoom, runs the
  on-device image+metadata tower with the device clock's month and hour and the chosen recording style, searches
  the gallery and plays the nearest soundscape, with its caption and the next few as buttons to play instead.
- ``--field``: follows the device's position (GPS through plyer where it exists, else a pin you tap or coordinates
  you type) and crossfades to the new place's soundscape as you move.
- ``--kiosk``: an exhibit. Fullscreen, large touch targets, no keyboard or network; after a while without touches
  it resets and tours interesting places of the region by itself until someone touches the screen.

Whatever goes wrong is shown as one clear message (a bad bundle, a tap outside the region, a tile missing from the
map, a clip that does not decode: that one is skipped and the next nearest plays). Never torch.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from kivy.app import App
from kivy.clock import Clock, mainthread
from kivy.core.window import Window
from kivy.graphics import Color, Rectangle, RoundedRectangle
from kivy.graphics.texture import Texture
from kivy.metrics import dp, sp
from kivy.uix.anchorlayout import AnchorLayout
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.gridlayout import GridLayout
from kivy.uix.image import Image
from kivy.uix.label import Label
from kivy.uix.relativelayout import RelativeLayout
from kivy.uix.scrollview import ScrollView
from kivy.uix.textinput import TextInput
from kivy.uix.togglebutton import ToggleButton

from contracts.errors import Sat2SoundError
from contracts.schema import AUDIO_SOURCES
from mobile_app import mercator
from mobile_app.engine import Answer, Soundscape
from mobile_app.errors import PlaybackError
from mobile_app.mapwidgets import BundleMapSource, FootprintLayer, RegionLayer, TapMapView
from mobile_app.place import When
from mobile_app.player import ClipPlayer

# Colours: a dark panel beside the imagery, one accent.
BG = (0.082, 0.098, 0.118, 1)
CARD = (0.13, 0.155, 0.18, 1)
ACCENT = (0.20, 0.78, 0.70, 1)
ACCENT_DIM = (0.16, 0.36, 0.36, 1)
BUTTON = (0.19, 0.22, 0.26, 1)
TEXT = (0.93, 0.95, 0.96, 1)
MUTED = (0.62, 0.68, 0.72, 1)
WARN = (1.0, 0.62, 0.42, 1)

STYLE_LABELS: dict[str, str] = {  # recording styles = the model's audio-source field
    "yfcc": "Everyday\n(Flickr)",
    "inaturalist": "Wildlife\n(iNaturalist)",
    "aporee": "Ambience\n(radio aporee)",
    "freesound": "Sound fx\n(Freesound)",
}


def _panel_bg(widget, colour, radius: float = 0.0) -> None:
    with widget.canvas.before:
        Color(*colour)
        rect = RoundedRectangle(radius=[radius]) if radius else Rectangle()
    widget.bind(pos=lambda w, p: setattr(rect, "pos", p), size=lambda w, s: setattr(rect, "size", s))


class WrapLabel(Label):
    """A label that wraps to its width and grows to its text's height."""

    def __init__(self, **kwargs):
        kwargs.setdefault("halign", "left")
        kwargs.setdefault("valign", "top")
        kwargs.setdefault("size_hint_y", None)
        kwargs.setdefault("color", TEXT)
        super().__init__(**kwargs)
        self.bind(width=lambda w, v: setattr(w, "text_size", (v, None)))
        self.bind(texture_size=lambda w, s: setattr(w, "height", s[1]))


def flat_button(cls=Button, **kwargs):
    kwargs.setdefault("background_normal", "")
    kwargs.setdefault("background_down", "")
    kwargs.setdefault("background_color", BUTTON)
    kwargs.setdefault("color", TEXT)
    kwargs.setdefault("halign", "center")
    kwargs.setdefault("valign", "middle")
    b = cls(**kwargs)
    b.bind(size=lambda w, s: setattr(w, "text_size", (s[0] - dp(10), None)))
    if cls is ToggleButton:
        b.bind(state=lambda w, st: setattr(w, "background_color", ACCENT_DIM if st == "down" else BUTTON))
        b.background_color = ACCENT_DIM if b.state == "down" else BUTTON
    return b


class ErrorScreen(AnchorLayout):
    """Shown instead of the map when the bundle cannot be used: what is wrong and what to do."""

    def __init__(self, message: str, scale: float = 1.0, **kwargs):
        super().__init__(anchor_x="center", anchor_y="center", **kwargs)
        _panel_bg(self, BG)
        box = BoxLayout(orientation="vertical", size_hint=(0.8, None), spacing=dp(16))
        title = WrapLabel(text="This soundscape bundle cannot be used", font_size=sp(26 * scale), bold=True,
                          color=WARN)
        body = WrapLabel(text=message, font_size=sp(16 * scale))
        hint = WrapLabel(text="Copy the bundle to the device again, or rebuild it with `sat2sound bundle`; "
                              "`sat2sound bundle --verify DIR` lists every problem.", font_size=sp(14 * scale),
                         color=MUTED)
        for w in (title, body, hint):
            box.add_widget(w)
        box.bind(minimum_height=box.setter("height"))
        self.add_widget(box)


class Sat2SoundApp(App):
    """The app. ``snapshot()`` returns its state as plain data (tests and the autopilot read it)."""

    title = "Sat2Sound"

    def __init__(self, bundle: str | Path, *, runtime: str = "onnx", kiosk: bool = False, field: bool = False,
                 data_dir: str | Path | None = None, verify: bool = True, k: int = 5, idle_s: float = 90.0,
                 tour_s: float = 14.0, fade_s: float = 2.5, move_m: float = 30.0, threads: int = 2,
                 clock: dt.datetime | None = None, **kwargs):
        super().__init__(**kwargs)
        self.bundle_dir = Path(bundle)
        self.runtime = runtime
        self.kiosk = kiosk
        self.field = field
        self.verify = verify
        self.k = max(2, int(k))
        self.idle_s = float(idle_s)
        self.tour_s = float(tour_s)
        self.fade_s = float(fade_s)
        self.move_m = float(move_m)
        self.threads = threads
        self.clock = clock  # a fixed "device clock" (demos, tests); None = the real one
        self._data_dir = Path(data_dir) if data_dir else None
        self.scale = 1.3 if kiosk else 1.0
        self.engine: Soundscape | None = None
        self.player: ClipPlayer | None = None
        self.error: str | None = None
        self.message = ""
        self.message_kind = "info"
        self.zoom = 1
        self.style: str | None = "aporee"
        self.place: tuple[float, float] | None = None
        self.answer: Answer | None = None
        self.playing_hit = None
        self.skipped: list[dict[str, str]] = []
        self.timings: dict[str, float] = {}
        self.tap_count = 0
        self.attract = False
        self.tour_index = 0
        self._last_touch = time.monotonic()
        self._tour_event = None
        self.position_source = "none"
        self.cold_start_ms: float | None = None
        self._t_start = time.perf_counter()

    # ------------------------------------------------------------------------------------------------ set-up

    @property
    def data_dir(self) -> Path:
        d = self._data_dir or Path(self.user_data_dir)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def build(self):
        Window.clearcolor = BG
        try:
            self.engine = Soundscape.open(self.bundle_dir, runtime=self.runtime, verify=self.verify,
                                          hash_cache=self.data_dir / "bundle-hashes.json", threads=self.threads)
        except Sat2SoundError as exc:
            self.error = str(exc)
            self.message, self.message_kind = self.error, "error"
            return ErrorScreen(self.error, self.scale)
        self.player = ClipPlayer(tempfile.mkdtemp(prefix="clips-", dir=self.data_dir), fade_s=self.fade_s,
                                 cleanup=True)
        # Landscape (tablets, kiosks, desktops): map left, panel right. Portrait phones: map on top.
        self.portrait = Window.height > Window.width * 1.1
        root = BoxLayout(orientation="vertical" if self.portrait else "horizontal")
        root.add_widget(self._build_map())
        root.add_widget(self._build_panel())
        if self.kiosk:
            Window.bind(on_touch_down=self._on_any_touch)
            Clock.schedule_interval(self._idle_check, 0.25)
        if self.field:
            self._start_positioning()
        self.cold_start_ms = (time.perf_counter() - self._t_start) * 1e3
        self.say("Tap a place inside the outlined region to hear it." if not self.field else
                 "Field mode: your position is followed; tap or type coordinates to move the pin.")
        return root

    def on_stop(self):
        if self.player is not None:
            self.player.close()
        if self.engine is not None:
            self.engine.close()

    def _build_map(self):
        b = self.engine.bundle
        info = self.engine.map.info
        cache = self.data_dir / "map-cache"
        cache.mkdir(exist_ok=True)
        source = BundleMapSource(str(b.map_path), cache_dir=str(cache))
        lon, lat = b.region.center
        self.home = (lat, lon, int(info.center[2]))
        self.mapview = TapMapView(map_source=source, lat=lat, lon=lon, zoom=int(info.center[2]),
                                  cache_dir=str(cache), double_tap_zoom=False, background_color=(0.12, 0.14, 0.16, 1))
        self.mapview.add_layer(RegionLayer(b.region), mode="window")
        self.footprint = FootprintLayer()
        self.mapview.add_layer(self.footprint, mode="window")
        self.mapview.bind(on_tap=lambda _w, la, lo: self.tap(la, lo))
        # mapview draws as if it sat at the window's origin; a RelativeLayout gives it its own origin, so the map
        # works wherever the layout puts it (beside the panel, or above it on a portrait phone).
        holder = RelativeLayout(size_hint=(1, 1))
        holder.add_widget(self.mapview)
        self.banner = Label(text="", size_hint=(None, None), font_size=sp(22 * self.scale), bold=True, color=TEXT,
                            pos_hint={"center_x": 0.5, "y": 0.04}, opacity=0)
        self.banner.bind(texture_size=lambda w, s: setattr(w, "size", (s[0] + dp(36), s[1] + dp(20))))
        _panel_bg(self.banner, (0.05, 0.07, 0.09, 0.82), dp(12))
        holder.add_widget(self.banner)
        return holder

    def _section(self, text: str) -> Label:
        return WrapLabel(text=text.upper(), font_size=sp(11.5 * self.scale), color=MUTED, bold=True)

    def _build_panel(self):
        s = self.scale
        # The panel scrolls as a whole when a small screen cannot hold it; the status line stays in view.
        outer = BoxLayout(orientation="vertical", size_hint=(None, 1), padding=dp(16 * s), spacing=dp(8 * s),
                          width=max(dp(360), min(dp(360 * s), Window.width * 0.42)))
        if self.portrait:
            outer.size_hint, outer.height = (1, None), Window.height * 0.48
        _panel_bg(outer, BG)
        panel = BoxLayout(orientation="vertical", size_hint_y=None, spacing=dp(10 * s), padding=(0, 0, dp(8), 0))
        panel.bind(minimum_height=panel.setter("height"))
        panel.add_widget(WrapLabel(text="Sat2Sound", font_size=sp(26 * s), bold=True))
        m = self.engine.bundle.model
        about = ("Touch any place on the map to hear what it sounds like." if self.kiosk else
                 f"Hear any place of this map. {len(self.engine.gallery)} soundscapes, {m.variant} model on "
                 f"{self.engine.tower.name}, offline.")
        panel.add_widget(WrapLabel(text=about, font_size=sp(13 * s), color=MUTED))
        # Zoom: how much ground the model looks at.
        panel.add_widget(self._section("What the model looks at"))
        row = BoxLayout(size_hint_y=None, height=dp(48 * s), spacing=dp(6))
        self.zoom_buttons: dict[int, ToggleButton] = {}
        for z in self.engine.zooms:
            ground = self.engine.bundle.views[z].ground_m
            btn = flat_button(ToggleButton, text=f"{ground:.0f} m", group="zoom", allow_no_selection=False,
                              state="down" if z == self.zoom else "normal", font_size=sp(15 * s))
            btn.bind(on_press=lambda _b, z=z: self.set_zoom(z))
            self.zoom_buttons[z] = btn
            row.add_widget(btn)
        panel.add_widget(row)
        # Recording style: the audio-source metadata field.
        panel.add_widget(self._section("Recording style"))
        grid = GridLayout(cols=2, size_hint_y=None, height=dp(2 * 50 * s + 6), spacing=dp(6))
        self.style_buttons: dict[str, ToggleButton] = {}
        for name in AUDIO_SOURCES:
            btn = flat_button(ToggleButton, text=STYLE_LABELS.get(name, name), group="style",
                              allow_no_selection=False, state="down" if name == self.style else "normal",
                              font_size=sp(12.5 * s))
            btn.bind(on_press=lambda _b, n=name: self.set_style(n))
            self.style_buttons[name] = btn
            grid.add_widget(btn)
        panel.add_widget(grid)
        if self.field and not self.kiosk:
            panel.add_widget(self._section("Position"))
            row = BoxLayout(size_hint_y=None, height=dp(40), spacing=dp(6))
            self.coord_input = TextInput(hint_text="lat, lon", multiline=False, font_size=sp(14),
                                         background_color=CARD, foreground_color=TEXT, cursor_color=ACCENT)
            self.coord_input.bind(on_text_validate=lambda _w: self.goto_typed())
            go = flat_button(text="Go", size_hint_x=None, width=dp(60), background_color=ACCENT_DIM)
            go.bind(on_press=lambda _b: self.goto_typed())
            row.add_widget(self.coord_input)
            row.add_widget(go)
            panel.add_widget(row)
        # Now playing.
        panel.add_widget(self._section("Now playing"))
        card = BoxLayout(orientation="horizontal", size_hint_y=None, spacing=dp(12), padding=dp(10))
        _panel_bg(card, CARD, dp(8))
        self.view_image = Image(size_hint=(None, None), size=(dp(92 * s), dp(92 * s)), fit_mode="contain")
        self.view_image.opacity = 0
        texts = BoxLayout(orientation="vertical", spacing=dp(4), size_hint_y=None)
        self.caption = WrapLabel(text="Nothing yet.", font_size=sp(15.5 * s))
        self.detail = WrapLabel(text="", font_size=sp(11.5 * s), color=MUTED)
        texts.add_widget(self.caption)
        texts.add_widget(self.detail)
        texts.bind(minimum_height=texts.setter("height"))
        card.add_widget(self.view_image)
        card.add_widget(texts)

        def fit_card(*_):
            card.height = max(self.view_image.height, texts.height) + dp(20)

        texts.bind(height=fit_card)
        fit_card()
        panel.add_widget(card)
        controls = BoxLayout(size_hint_y=None, height=dp(40 * s), spacing=dp(6))
        self.stop_button = flat_button(text="Stop", font_size=sp(14 * s))
        self.stop_button.bind(on_press=lambda _b: self.stop_sound())
        controls.add_widget(self.stop_button)
        panel.add_widget(controls)
        # Alternatives.
        panel.add_widget(self._section("Also near this place"))
        self.alt_box = BoxLayout(orientation="vertical", size_hint_y=None, spacing=dp(6))
        self.alt_box.bind(minimum_height=self.alt_box.setter("height"))
        panel.add_widget(self.alt_box)
        scroll = ScrollView(size_hint=(1, 1), do_scroll_x=False, bar_width=dp(4))
        scroll.add_widget(panel)
        outer.add_widget(scroll)
        self.status = WrapLabel(text="", font_size=sp(13 * s), color=MUTED)
        outer.add_widget(self.status)
        return outer

    # ------------------------------------------------------------------------------------------------ messages

    def say(self, text: str, kind: str = "info") -> None:
        self.message, self.message_kind = text, kind
        if hasattr(self, "status"):
            self.status.text = text
            self.status.color = WARN if kind == "error" else MUTED

    # ------------------------------------------------------------------------------------------------ controls

    def set_zoom(self, zoom: int) -> None:
        self.zoom = int(zoom)
        for z, b in self.zoom_buttons.items():
            b.state = "down" if z == self.zoom else "normal"
        if self.place is not None:
            self.listen_at(*self.place, source="zoom")

    def set_style(self, style: str) -> None:
        self.style = style
        for n, b in self.style_buttons.items():
            b.state = "down" if n == style else "normal"
        if self.place is not None:
            self.listen_at(*self.place, source="style")

    def stop_sound(self) -> None:
        if self.player is not None:
            self.player.stop()
        self.say("Stopped. Tap a place to listen again.")

    def tap(self, lat: float, lon: float) -> None:
        """A tap on the map (the map widget reports it with the place under the finger)."""
        self.tap_count += 1
        if self.field:
            self.set_position(lat, lon, source="pin")
        else:
            self.listen_at(lat, lon, source="tap")

    # ------------------------------------------------------------------------------------------------ listening

    def listen_at(self, lat: float, lon: float, *, source: str = "tap", crossfade: bool = False) -> bool:
        """Embed the place, search the gallery, play the nearest playable clip. False (with a message) on failure."""
        t0 = time.perf_counter()
        try:
            answer = self.engine.listen(lon, lat, self.zoom, audio_source=self.style, when=self.when(), k=self.k)
        except Sat2SoundError as exc:
            self.say(str(exc), "error")
            return False
        self.place = (lat, lon)
        self.answer = answer
        self.footprint.show(lat, lon, self.engine.bundle.views[self.zoom].ground_m)
        self._show_view(answer.view)
        t1 = time.perf_counter()
        played = self.play_from(answer.hits, 0, crossfade=crossfade)
        t2 = time.perf_counter()
        self.timings = {**answer.ms, "play": (t2 - t1) * 1e3, "total": (t2 - t0) * 1e3}
        if played is None:
            return False
        self._show_alternatives()
        return True

    def play_from(self, hits: list, start: int, *, crossfade: bool = False):
        """Play hits[start], or the next one that plays; skipped clips are reported. Returns the hit played."""
        self.skipped = []
        for hit in hits[start:]:
            try:
                data, fmt = self.engine.clip(hit.id)
                self.player.play(hit.id, data, fmt, crossfade=crossfade)
            except PlaybackError as exc:
                self.skipped.append({"id": hit.id, "reason": str(exc)})
                continue
            self.playing_hit = hit
            self._show_caption(hit)
            if self.skipped:
                n = len(self.skipped)
                self.say(f"{n} nearer clip{'s' if n > 1 else ''} could not be played ({self.skipped[0]['reason']}); "
                         "playing the next nearest instead.", "error")
            else:
                self.say(self._where_text())
            return hit
        self.say("None of the nearest soundscapes can be played: " + (self.skipped[0]["reason"] if self.skipped
                                                                      else "the gallery returned nothing"), "error")
        return None

    def play_alternative(self, index: int) -> None:
        if self.answer is None or index >= len(self.answer.hits):
            return
        t0 = time.perf_counter()
        self.play_from(self.answer.hits, index, crossfade=self.field)
        self.timings = {"play": (time.perf_counter() - t0) * 1e3}
        self._show_alternatives()

    def now(self) -> dt.datetime:
        return self.clock or dt.datetime.now()

    def when(self) -> When:
        """The month and hour the model hears: the device clock's."""
        now = self.now()
        return When(now.month, now.hour)

    def _where_text(self) -> str:
        if self.place is None:
            return ""
        lat, lon = self.place
        now = self.now()
        ground = self.engine.bundle.views[self.zoom].ground_m
        return f"{lat:.5f}, {lon:.5f} - {now:%B}, {now.hour:02d}:00 - {ground:.0f} m view"

    def _show_caption(self, hit) -> None:
        self.caption.text = hit.caption
        parts = [f"similarity {hit.score:.3f}"]
        if hit.sources:
            parts.append("sounds: " + ", ".join(hit.sources))
        self.detail.text = " - ".join(parts)

    def _show_view(self, rgb: np.ndarray) -> None:
        h, w = rgb.shape[:2]
        tex = Texture.create(size=(w, h), colorfmt="rgb")
        tex.blit_buffer(np.ascontiguousarray(rgb[::-1]).tobytes(), colorfmt="rgb", bufferfmt="ubyte")
        tex.mag_filter = "nearest"
        self.view_image.texture = tex
        self.view_image.opacity = 1

    def _show_alternatives(self) -> None:
        self.alt_box.clear_widgets()
        if self.answer is None:
            return
        s = self.scale
        for i, hit in enumerate(self.answer.hits):
            if self.playing_hit is not None and hit.id == self.playing_hit.id:
                continue
            text = hit.caption if len(hit.caption) <= 110 else hit.caption[:107] + "..."
            btn = flat_button(text=f"{text}\n[size={int(sp(10.5 * s))}]similarity {hit.score:.3f}[/size]",
                              markup=True, size_hint_y=None, font_size=sp(12.5 * s), halign="left")
            btn.bind(texture_size=lambda w, ts: setattr(w, "height", max(dp(52 * s), ts[1] + dp(16))))
            btn.bind(on_press=lambda _b, i=i: self.play_alternative(i))
            btn.s2s_id = hit.id
            self.alt_box.add_widget(btn)

    # ------------------------------------------------------------------------------------------------ field mode

    def _start_positioning(self) -> None:
        try:
            from plyer import gps  # type: ignore[import-not-found]

            gps.configure(on_location=self._on_gps, on_status=lambda *a: None)
            gps.start(minTime=2000, minDistance=5)
            self.position_source = "gps"
        except Exception:  # no plyer, or no GPS on this platform (desktop): manual pin / typed coordinates
            self.position_source = "manual"

    @mainthread
    def _on_gps(self, **kwargs) -> None:
        if "lat" in kwargs and "lon" in kwargs:
            self.set_position(float(kwargs["lat"]), float(kwargs["lon"]), source="gps")

    def goto_typed(self) -> None:
        text = self.coord_input.text.replace(";", ",").strip()
        try:
            lat, lon = (float(v) for v in text.split(","))
        except ValueError:
            self.say(f"Type coordinates as 'lat, lon' (e.g. {self.engine.bundle.region.center[1]:.4f}, "
                     f"{self.engine.bundle.region.center[0]:.4f}); got {text!r}", "error")
            return
        self.set_position(lat, lon, source="typed")

    def set_position(self, lat: float, lon: float, *, source: str = "gps") -> None:
        """A new device position (field mode): follow it, and crossfade when the soundscape there changes."""
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            self.say(f"{lat}, {lon} is not a position on Earth", "error")
            return
        self.mapview.center_on(lat, lon)
        if self.place is not None and _distance_m(self.place, (lat, lon)) < self.move_m and source == "gps":
            return
        previous = self.playing_hit.id if self.playing_hit is not None else None
        try:
            answer = self.engine.listen(lon, lat, self.zoom, audio_source=self.style, when=self.when(), k=self.k)
        except Sat2SoundError as exc:
            self.say(str(exc), "error")
            return
        self.place = (lat, lon)
        self.answer = answer
        self.footprint.show(lat, lon, self.engine.bundle.views[self.zoom].ground_m)
        self._show_view(answer.view)
        if previous is not None and answer.top.id == previous:
            self._show_alternatives()
            self.say(self._where_text() + " - same soundscape here")
            return
        self.play_from(answer.hits, 0, crossfade=previous is not None)
        self._show_alternatives()

    # ------------------------------------------------------------------------------------------------ kiosk

    def _on_any_touch(self, _window, _touch) -> None:
        self._last_touch = time.monotonic()
        if self.attract:
            self.stop_attract()

    def _idle_check(self, _dt: float) -> None:
        if not self.attract and time.monotonic() - self._last_touch >= self.idle_s:
            self.start_attract()

    def tour_places(self) -> list[tuple[float, float]]:
        places = [(float(p["lat"]), float(p["lon"])) for p in self.engine.bundle.tour
                  if self.engine.bundle.region.contains(float(p["lon"]), float(p["lat"]))]
        if places:
            return places
        r = self.engine.bundle.region
        return [(r.south + (r.north - r.south) * fy, r.west + (r.east - r.west) * fx)
                for fy in (0.25, 0.5, 0.75) for fx in (0.25, 0.5, 0.75)]

    def reset(self) -> None:
        """Back to the opening state: default zoom and style, the whole region in view, nothing selected."""
        self.set_zoom_silently(self.engine.zooms[0])
        self.style = "aporee"
        for n, b in self.style_buttons.items():
            b.state = "down" if n == self.style else "normal"
        lat, lon, level = self.home
        self.mapview.zoom = level
        self.mapview.center_on(lat, lon)
        self.footprint.clear()
        self.place = None

    def set_zoom_silently(self, zoom: int) -> None:
        self.zoom = int(zoom)
        for z, b in self.zoom_buttons.items():
            b.state = "down" if z == self.zoom else "normal"

    def start_attract(self) -> None:
        self.reset()
        self.attract = True
        self.banner.text = "Touch the map to hear any place"
        self.banner.opacity = 1
        self._tour_step(0)
        self._tour_event = Clock.schedule_interval(self._tour_step, self.tour_s)

    def stop_attract(self) -> None:
        self.attract = False
        self.banner.opacity = 0
        if self._tour_event is not None:
            self._tour_event.cancel()
            self._tour_event = None

    def _tour_step(self, _dt: float) -> None:
        places = self.tour_places()
        lat, lon = places[self.tour_index % len(places)]
        self.tour_index += 1
        self.mapview.center_on(lat, lon)
        self.listen_at(lat, lon, source="tour", crossfade=True)

    # ------------------------------------------------------------------------------------------------ state

    def snapshot(self) -> dict[str, Any]:
        """The app's state as plain data."""
        hits = [{"id": h.id, "score": h.score, "caption": h.caption} for h in (self.answer.hits if self.answer else [])]
        return {
            "ready": self.engine is not None and self.error is None,
            "error": self.error,
            "message": self.message,
            "message_kind": self.message_kind,
            "zoom": self.zoom,
            "style": self.style,
            "place": list(self.place) if self.place else None,
            "hits": hits,
            "playing": self.playing_hit.id if self.playing_hit is not None else None,
            "caption_shown": getattr(self, "caption", None).text if hasattr(self, "caption") else None,
            "alternatives": [getattr(w, "s2s_id", None) for w in reversed(self.alt_box.children)]
            if hasattr(self, "alt_box") else [],
            "skipped": list(self.skipped),
            "player": self.player.state.as_dict() if self.player else None,
            "timings_ms": dict(self.timings),
            "cold_start_ms": self.cold_start_ms,
            "open_ms": dict(self.engine.open_ms) if self.engine else None,
            "attract": self.attract,
            "kiosk": self.kiosk,
            "field": self.field,
            "position_source": self.position_source,
            "runtime": self.engine.tower.name if self.engine else None,
            "window": list(Window.size),
            "fullscreen": Window.fullscreen,
            "taps": self.tap_count,
            "ui": {"zoom_button_px": list(self.zoom_buttons[self.engine.zooms[0]].size)
                   if hasattr(self, "zoom_buttons") else None,
                   "scale": self.scale, "banner": self.banner.text if hasattr(self, "banner") and
                   self.banner.opacity > 0 else ""},
        }


def _distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Metres between two (lat, lon) places (equirectangular: plenty for the few hundred metres used here)."""
    lat = np.radians((a[0] + b[0]) / 2.0)
    dx = (b[1] - a[1]) * np.cos(lat) * mercator.EQUATOR_M / 360.0
    dy = (b[0] - a[0]) * mercator.EQUATOR_M / 360.0
    return float(np.hypot(dx, dy))
