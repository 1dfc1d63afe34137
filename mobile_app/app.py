"""The offline Sat2Sound app (Kivy): tap the map, hear the place.

Three ways to run it (``python -m mobile_app --bundle DIR``):
- plain: tap a place; the app cuts the model's view of it out of the bundle's map at the chosen zoom, runs the
  on-device image+metadata tower with the device clock's month and hour and the chosen recording style, searches
  the gallery and plays the nearest soundscape, with its caption and the next few as buttons to play instead.
- ``--field`` (mobile_app.field_mode): AR audio. Follows the device's position (GPS through plyer where it exists,
  else a pin you tap or coordinates you type) and heading (compass, else a dial or the arrow keys) and mixes the
  place you stand on with its neighbours, each from its direction (``--flat``: only the place's own soundscape,
  crossfading as you move).
- ``--kiosk`` (mobile_app.kiosk_mode): an exhibit. Fullscreen, large touch targets, no keyboard or network; after a
  while without touches it resets and tours interesting places of the region by itself until someone touches it.

This module is the screen all three share: the map (mobile_app.mapwidgets) beside the panel (mobile_app.panel),
and what a place, a zoom, a style or an alternative does. Whatever goes wrong is shown as one clear message (a bad
bundle, a tap outside the region, a tile missing from the map, a clip that does not decode: that one is skipped and
the next nearest plays). A tap starts the sound before the screen is updated: the caption, the model's view and the
alternatives are drawn on the next frame (Clock), which is what the eye sees anyway. Never torch.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kivy.app import App
from kivy.clock import Clock
from kivy.core.window import Window
from kivy.metrics import dp, sp
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.label import Label
from kivy.uix.relativelayout import RelativeLayout

from contracts.errors import Sat2SoundError
from mobile_app.engine import Answer, Soundscape
from mobile_app.errors import PlaybackError
from mobile_app.field_mode import FieldMode
from mobile_app.kiosk_mode import KioskMode
from mobile_app.mapwidgets import BundleMapSource, FootprintLayer, ListenerLayer, RegionLayer, TapMapView
from mobile_app.panel import Panel
from mobile_app.place import When
from mobile_app.player import ClipPlayer
from mobile_app.widgets import BG, TEXT, ErrorScreen, panel_bg

if TYPE_CHECKING:
    from gallery.query import Hit

DEFAULT_STYLE = "aporee"  # the recording style the app opens with (and a kiosk resets to)


class Sat2SoundApp(App):
    """The app. ``snapshot()`` returns its state as plain data (tests and the autopilot read it).

    ``field_mode`` / ``kiosk_mode`` hold the behaviour of ``--field`` / ``--kiosk`` (None when not in that mode).
    """

    title = "Sat2Sound"

    def __init__(self, bundle: str | Path, *, runtime: str = "onnx", kiosk: bool = False, field: bool = False,
                 data_dir: str | Path | None = None, verify: bool = True, k: int = 5, idle_s: float = 90.0,
                 tour_s: float = 14.0, fade_s: float = 2.5, move_m: float = 30.0, threads: int = 2,
                 clock: dt.datetime | None = None, flat: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.bundle_dir = Path(bundle)
        self.runtime = runtime
        self.kiosk = kiosk
        self.field = field
        self.verify = verify
        self.k = max(2, int(k))
        self.fade_s = float(fade_s)
        self.threads = threads
        self.clock = clock  # a fixed "device clock" (demos, tests); None = the real one
        self._data_dir = Path(data_dir) if data_dir else None
        self.scale = 1.3 if kiosk else 1.0
        self.kiosk_mode = KioskMode(self, idle_s=idle_s, tour_s=tour_s) if kiosk else None
        self.field_mode = FieldMode(self, move_m=move_m, spatial=not flat) if field else None
        self.engine: Soundscape | None = None
        self.player: ClipPlayer | None = None
        self.panel: Panel | None = None
        self.mapview: TapMapView | None = None
        self.footprint: FootprintLayer | None = None
        self.listener_layer: ListenerLayer | None = None
        self.banner: Label | None = None
        self.home: tuple[float, float, int] | None = None  # lat, lon, map level of the opening view
        self.error: str | None = None
        self.message = ""
        self.message_kind = "info"
        self.zoom = 1
        self.style: str | None = DEFAULT_STYLE
        self.place: tuple[float, float] | None = None
        self.answer: Answer | None = None
        self.playing_hit: Hit | None = None
        self.skipped: list[dict[str, str]] = []
        self.timings: dict[str, float] = {}
        self.tap_count = 0
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
        portrait = Window.height > Window.width * 1.1
        root = BoxLayout(orientation="vertical" if portrait else "horizontal")
        root.add_widget(self._build_map())
        extra = self.field_mode.controls() if self.field_mode is not None and not self.kiosk else []
        self.panel = Panel(self, portrait=portrait, extra=extra)
        root.add_widget(self.panel)
        for mode in (self.kiosk_mode, self.field_mode):
            if mode is not None:
                mode.start()
        self.cold_start_ms = (time.perf_counter() - self._t_start) * 1e3
        if self.message_kind != "error":  # a mode's own warning (e.g. no audio stream) stays on screen
            self.say("Tap a place inside the outlined region to hear it." if not self.field else
                     "Field mode: your position is followed; tap or type coordinates to move the pin.")
        return root

    def on_stop(self):
        if self.field_mode is not None:
            self.field_mode.stop()
        if self.player is not None:
            self.player.close()
        if self.engine is not None:
            self.engine.close()

    def _build_map(self) -> RelativeLayout:
        b = self.engine.bundle
        info = self.engine.map.info
        cache = self.data_dir / "map-cache"
        cache.mkdir(exist_ok=True)
        source = BundleMapSource(self.engine.map, cache_dir=str(cache))
        lon, lat = b.region.center
        self.home = (lat, lon, int(info.center[2]))
        self.mapview = TapMapView(map_source=source, lat=lat, lon=lon, zoom=int(info.center[2]),
                                  cache_dir=str(cache), double_tap_zoom=False, background_color=(0.12, 0.14, 0.16, 1))
        self.mapview.add_layer(RegionLayer(b.region), mode="window")
        self.footprint = FootprintLayer()
        self.mapview.add_layer(self.footprint, mode="window")
        if self.field:
            self.listener_layer = ListenerLayer()
            self.mapview.add_layer(self.listener_layer, mode="window")
        self.mapview.bind(on_tap=lambda _w, la, lo: self.tap(la, lo))
        # mapview draws as if it sat at the window's origin; a RelativeLayout gives it its own origin, so the map
        # works wherever the layout puts it (beside the panel, or above it on a portrait phone).
        holder = RelativeLayout(size_hint=(1, 1))
        holder.add_widget(self.mapview)
        self.banner = Label(text="", size_hint=(None, None), font_size=sp(22 * self.scale), bold=True, color=TEXT,
                            pos_hint={"center_x": 0.5, "y": 0.04}, opacity=0)
        self.banner.bind(texture_size=lambda w, s: setattr(w, "size", (s[0] + dp(36), s[1] + dp(20))))
        panel_bg(self.banner, (0.05, 0.07, 0.09, 0.82), dp(12))
        holder.add_widget(self.banner)
        return holder

    # ------------------------------------------------------------------------------------------------ messages

    def say(self, text: str, kind: str = "info") -> None:
        self.message, self.message_kind = text, kind
        if self.panel is not None:
            self.panel.set_status(text, kind)

    # ------------------------------------------------------------------------------------------------ controls

    def select_zoom(self, zoom: int) -> None:
        """Make ``zoom`` the current one without asking the model again."""
        self.zoom = int(zoom)
        self.panel.select_zoom(self.zoom)

    def set_zoom(self, zoom: int) -> None:
        self.select_zoom(zoom)
        self._ask_again("zoom")

    def set_style(self, style: str) -> None:
        self.style = style
        self.panel.select_style(style)
        self._ask_again("style")

    def _ask_again(self, source: str) -> None:
        """The question changed (zoom, style): ask it again about the current place."""
        if self.field_mode is not None and self.field_mode.spatial:
            self.field_mode.refresh()
        elif self.place is not None:
            self.listen_at(*self.place, source=source)

    def stop_sound(self) -> None:
        if self.player is not None:
            self.player.stop()
        if self.field_mode is not None:
            self.field_mode.stop_sound()
        self.say("Stopped. Tap a place to listen again.")

    def tap(self, lat: float, lon: float) -> None:
        """A tap on the map (the map widget reports it with the place under the finger)."""
        self.tap_count += 1
        if self.field_mode is not None:
            self.field_mode.set_position(lat, lon, source="pin")
        else:
            self.listen_at(lat, lon, source="tap")

    def reset(self) -> None:
        """Back to the opening state: default zoom and style, the whole region in view, nothing selected."""
        self.select_zoom(self.engine.zooms[0])
        self.style = DEFAULT_STYLE
        self.panel.select_style(self.style)
        lat, lon, level = self.home
        self.mapview.zoom = level
        self.mapview.center_on(lat, lon)
        self.footprint.clear()
        self.place = None

    # ------------------------------------------------------------------------------------------------ listening

    def _ask(self, lat: float, lon: float) -> Answer | None:
        """Ask the model and the gallery about a place (nothing shown, nothing played); None with a message when
        the place cannot be heard."""
        try:
            answer = self.engine.listen(lon, lat, self.zoom, audio_source=self.style, when=self.when(), k=self.k)
        except Sat2SoundError as exc:
            self.say(str(exc), "error")
            return None
        self.place = (lat, lon)
        self.answer = answer
        return answer

    def _show_place(self, answer: Answer) -> None:
        self.footprint.show(answer.lat, answer.lon, self.engine.bundle.views[answer.zoom].ground_m)
        self.panel.show_view(answer.view)

    def look_at(self, lat: float, lon: float) -> Answer | None:
        """Ask the model and the gallery about a place and show the place and the view the model saw.

        None (with the message shown) when the place cannot be heard; nothing plays yet.
        """
        answer = self._ask(lat, lon)
        if answer is not None:
            self._show_place(answer)
        return answer

    def listen_at(self, lat: float, lon: float, *, source: str = "tap", crossfade: bool = False) -> bool:
        """Embed the place, search the gallery, play the nearest playable clip. False (with a message) on failure.

        The sound starts first; the place, the view, the caption and the alternatives are drawn on the next frame.
        """
        t0 = time.perf_counter()
        answer = self._ask(lat, lon)
        if answer is None:
            return False
        t1 = time.perf_counter()
        played = self.play_from(answer.hits, 0, crossfade=crossfade, show=False)
        t2 = time.perf_counter()
        self.timings = {**answer.ms, "play": (t2 - t1) * 1e3, "total": (t2 - t0) * 1e3,
                        **{f"play_{k}": v for k, v in self.player.last_ms.items()}}
        Clock.schedule_once(lambda _dt: self._show_answer(answer, played), 0)
        return played is not None

    def _show_answer(self, answer: Answer, played: Hit | None) -> None:
        t0 = time.perf_counter()
        if answer is not self.answer:  # a newer answer arrived before this frame: that one is shown
            return
        self._show_place(answer)
        if played is not None:
            self.panel.show_caption(played)
            self.show_alternatives()
        self.timings["ui_after_sound"] = (time.perf_counter() - t0) * 1e3

    def play_from(self, hits: list[Hit], start: int, *, crossfade: bool = False, show: bool = True) -> Hit | None:
        """Play hits[start], or the next one that plays; skipped clips are reported. Returns the hit played.
        ``show``: put its caption on screen now (else the caller does, after the sound has started)."""
        self.skipped = []
        for hit in hits[start:]:
            try:
                data, fmt = self.engine.clip(hit.id)
                self.player.play(hit.id, data, fmt, crossfade=crossfade)
            except PlaybackError as exc:
                self.skipped.append({"id": hit.id, "reason": str(exc)})
                continue
            self.playing_hit = hit
            if show:
                self.panel.show_caption(hit)
            if self.skipped:
                n = len(self.skipped)
                self.say(f"{n} nearer clip{'s' if n > 1 else ''} could not be played ({self.skipped[0]['reason']}); "
                         "playing the next nearest instead.", "error")
            else:
                self.say(self.where_text())
            return hit
        self.say("None of the nearest soundscapes can be played: " + (self.skipped[0]["reason"] if self.skipped
                                                                      else "the gallery returned nothing"), "error")
        return None

    def play_alternative(self, index: int) -> None:
        if self.answer is None or index >= len(self.answer.hits):
            return
        if self.field_mode is not None and self.field_mode.scene is not None:
            self.field_mode.play_alternative(index)
            return
        t0 = time.perf_counter()
        self.play_from(self.answer.hits, index, crossfade=self.field)
        self.timings = {"play": (time.perf_counter() - t0) * 1e3}
        self.show_alternatives()

    def show_alternatives(self) -> None:
        """The current answer's other hits as buttons (none before the first answer)."""
        hits = self.answer.hits if self.answer is not None else []
        self.panel.show_alternatives(hits, self.playing_hit.id if self.playing_hit is not None else None)

    def now(self) -> dt.datetime:
        return self.clock or dt.datetime.now()

    def when(self) -> When:
        """The month and hour the model hears: the device clock's."""
        now = self.now()
        return When(now.month, now.hour)

    def where_text(self) -> str:
        if self.place is None:
            return ""
        lat, lon = self.place
        now = self.now()
        ground = self.engine.bundle.views[self.zoom].ground_m
        return f"{lat:.5f}, {lon:.5f} - {now:%B}, {now.hour:02d}:00 - {ground:.0f} m view"

    # ------------------------------------------------------------------------------------------------ state

    def snapshot(self) -> dict[str, Any]:
        """The app's state as plain data."""
        hits = [{"id": h.id, "score": h.score, "caption": h.caption} for h in (self.answer.hits if self.answer else [])]
        panel = self.panel
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
            "caption_shown": panel.caption.text if panel is not None else None,
            "alternatives": panel.alternative_ids() if panel is not None else [],
            "skipped": list(self.skipped),
            "player": self.player.state.as_dict() if self.player else None,
            "timings_ms": dict(self.timings),
            "cold_start_ms": self.cold_start_ms,
            "open_ms": dict(self.engine.open_ms) if self.engine else None,
            "attract": self.kiosk_mode.attract if self.kiosk_mode is not None else False,
            "kiosk": self.kiosk,
            "field": self.field,
            "position_source": self.field_mode.position_source if self.field_mode is not None else "none",
            "field_mode": self.field_mode.snapshot() if self.field_mode is not None else None,
            "runtime": self.engine.tower.name if self.engine else None,
            "window": list(Window.size),
            "fullscreen": Window.fullscreen,
            "taps": self.tap_count,
            "ui": {"zoom_button_px": list(panel.zoom_buttons[self.engine.zooms[0]].size) if panel is not None
                   else None,
                   "scale": self.scale,
                   "banner": self.banner.text if self.banner is not None and self.banner.opacity > 0 else ""},
        }
