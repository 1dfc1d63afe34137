"""Field mode (``--field``): the place follows the device's position and the sound crossfades as it moves.

The position comes from plyer's GPS where the platform has one (Android, iOS), else from a pin the user taps or
coordinates typed into the panel. A GPS move shorter than ``move_m`` (jitter) is ignored; at a new place whose
nearest soundscape is the one already playing, that one keeps playing; otherwise the new one fades in.

Kivy and numpy; imported after the app has set up Kivy's environment. Never torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from kivy.clock import mainthread
from kivy.metrics import dp, sp
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.textinput import TextInput
from kivy.uix.widget import Widget

from mobile_app import mercator
from mobile_app.widgets import ACCENT, ACCENT_DIM, CARD, TEXT, flat_button, section

if TYPE_CHECKING:
    from mobile_app.app import Sat2SoundApp


class FieldMode:
    """Follows the device's position for ``app``. ``position_source`` says where positions come from: "none"
    before ``start()``, then "gps" or "manual" (a tapped pin or typed coordinates)."""

    def __init__(self, app: Sat2SoundApp, *, move_m: float = 30.0):
        self.app = app
        self.move_m = float(move_m)
        self.position_source = "none"
        self.coord_input: TextInput | None = None
        self.go_button: Button | None = None

    def controls(self) -> list[Widget]:
        """The panel's Position row: a box for 'lat, lon' and a Go button (Enter in the box does the same)."""
        row = BoxLayout(size_hint_y=None, height=dp(40), spacing=dp(6))
        self.coord_input = TextInput(hint_text="lat, lon", multiline=False, font_size=sp(14), background_color=CARD,
                                     foreground_color=TEXT, cursor_color=ACCENT)
        self.coord_input.bind(on_text_validate=lambda _w: self.goto_typed())
        self.go_button = flat_button(text="Go", size_hint_x=None, width=dp(60), background_color=ACCENT_DIM)
        self.go_button.bind(on_press=lambda _b: self.goto_typed())
        row.add_widget(self.coord_input)
        row.add_widget(self.go_button)
        return [section("Position", self.app.scale), row]

    def start(self) -> None:
        """Listen to the GPS where there is one; otherwise positions come from the pin and the coordinate box."""
        try:
            from plyer import gps  # type: ignore[import-not-found]  # optional: only where the platform has it

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
        """Move to the coordinates typed into the Position box."""
        text = self.coord_input.text.replace(";", ",").strip()
        try:
            lat, lon = (float(v) for v in text.split(","))
        except ValueError:
            center = self.app.engine.bundle.region.center
            self.app.say(f"Type coordinates as 'lat, lon' (e.g. {center[1]:.4f}, {center[0]:.4f}); got {text!r}",
                         "error")
            return
        self.set_position(lat, lon, source="typed")

    def set_position(self, lat: float, lon: float, *, source: str = "gps") -> None:
        """A new device position: follow it, and crossfade when the soundscape there changes."""
        app = self.app
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            app.say(f"{lat}, {lon} is not a position on Earth", "error")
            return
        app.mapview.center_on(lat, lon)
        if app.place is not None and distance_m(app.place, (lat, lon)) < self.move_m and source == "gps":
            return
        previous = app.playing_hit.id if app.playing_hit is not None else None
        answer = app.look_at(lat, lon)
        if answer is None:
            return
        if previous is not None and answer.top.id == previous:
            app.show_alternatives()
            app.say(app.where_text() + " - same soundscape here")
            return
        app.play_from(answer.hits, 0, crossfade=previous is not None)
        app.show_alternatives()


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Metres between two (lat, lon) places (equirectangular: plenty for the few hundred metres used here)."""
    lat = np.radians((a[0] + b[0]) / 2.0)
    dx = (b[1] - a[1]) * np.cos(lat) * mercator.EQUATOR_M / 360.0
    dy = (b[0] - a[0]) * mercator.EQUATOR_M / 360.0
    return float(np.hypot(dx, dy))
