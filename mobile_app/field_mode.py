"""Field mode (``--field``): AR audio. The soundscape around the listener, each place from its own direction.

The position comes from plyer's GPS where the platform has one (Android, iOS), else from a pin the user taps or
coordinates typed into the panel; a GPS move shorter than ``move_m`` (jitter) is ignored. The heading comes from
plyer's compass where it exists, else from the dial in the panel or the left/right arrow keys.

With an audio stream (mobile_app.audio_out: AudioTrack on Android, sounddevice on a desktop that has it, a buffer
headless) the app mixes the place where the listener stands (centred, loudest) with its neighbours on the model's
grid (mobile_app.surround), and turning or walking retargets their gains with short ramps. The map shows the
listener, a cone where they face and the places that sound; the panel says what is around them. Without a stream
(``--flat``, or a desktop without sounddevice) it plays the place's own soundscape and crossfades (equal-power
volume ramps on two Kivy Sounds) when that changes, as before.

Kivy and numpy; imported after the app has set up Kivy's environment. Never torch.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
from kivy.clock import Clock, mainthread
from kivy.core.window import Window
from kivy.metrics import dp, sp
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.textinput import TextInput
from kivy.uix.widget import Widget

from contracts.errors import ConfigError, Sat2SoundError
from mobile_app import kivy_env, mercator
from mobile_app.audio_out import open_output
from mobile_app.heading import Compass, HeadingDial, compass_word, smooth_heading
from mobile_app.surround import CENTRE, SpatialScene, check_heading
from mobile_app.widgets import ACCENT, ACCENT_DIM, CARD, MUTED, TEXT, WrapLabel, flat_button, section

if TYPE_CHECKING:
    from mobile_app.app import Sat2SoundApp

KEY_LEFT, KEY_RIGHT = 276, 275  # SDL keycodes of the arrow keys
HAND_OVERRIDE_S = 10.0  # after a turn of the dial (or a key), the compass is not followed for this long
PUMP_S = 1 / 30  # how often a buffer output renders (headless)
DIRECTIONS = ("ahead", "ahead-right", "right", "behind-right", "behind", "behind-left", "left", "ahead-left")


def direction_word(azimuth: float) -> str:
    """'left', 'behind-right' ... for an azimuth relative to the heading."""
    return DIRECTIONS[int((azimuth % 360.0) / 45.0 + 0.5) % 8]


class FieldMode:
    """Follows the device's position and heading for ``app``. ``position_source``: "none" before ``start()``, then
    "gps" or "manual"; ``heading_source``: "compass", "dial" (also the arrow keys) or "none"."""

    def __init__(self, app: Sat2SoundApp, *, move_m: float = 30.0, spatial: bool = True, key_step: float = 15.0):
        self.app = app
        self.move_m = float(move_m)
        self.spatial = spatial
        self.key_step = float(key_step)
        self.position_source = "none"
        self.heading_source = "none"
        self.heading = 0.0
        self.scene: SpatialScene | None = None
        self.output = None
        self.compass = Compass()
        self.has_compass = False
        self._hand_until = 0.0
        self.timings: dict[str, float] = {}
        self.coord_input: TextInput | None = None
        self.go_button: Button | None = None
        self.dial: HeadingDial | None = None
        self.heading_label: WrapLabel | None = None
        self.around_label: WrapLabel | None = None

    # ------------------------------------------------------------------------------------------------ screen

    def controls(self) -> list[Widget]:
        """The panel's Position row (a box for 'lat, lon' and Go) and, for AR audio, the Heading dial."""
        s = self.app.scale
        row = BoxLayout(size_hint_y=None, height=dp(40), spacing=dp(6))
        self.coord_input = TextInput(hint_text="lat, lon", multiline=False, font_size=sp(14), background_color=CARD,
                                     foreground_color=TEXT, cursor_color=ACCENT)
        self.coord_input.bind(on_text_validate=lambda _w: self.goto_typed())
        self.go_button = flat_button(text="Go", size_hint_x=None, width=dp(60), background_color=ACCENT_DIM)
        self.go_button.bind(on_press=lambda _b: self.goto_typed())
        row.add_widget(self.coord_input)
        row.add_widget(self.go_button)
        widgets: list[Widget] = [section("Position", s), row]
        if self.spatial:
            heading_row = BoxLayout(size_hint_y=None, height=dp(96 * s), spacing=dp(12))
            self.dial = HeadingDial(size_hint=(None, None), size=(dp(96 * s), dp(96 * s)))
            self.dial.bind(on_turn=lambda _w, deg: self.set_heading(deg, source="dial"))
            self.heading_label = WrapLabel(text="", font_size=sp(13 * s), color=TEXT)
            heading_row.add_widget(self.dial)
            heading_row.add_widget(self.heading_label)
            self.around_label = WrapLabel(text="", font_size=sp(12 * s), color=MUTED, markup=True)
            widgets += [section("Heading and what is around you", s), heading_row, self.around_label]
        return widgets

    def start(self) -> None:
        """Listen to the GPS and the compass where there are; open the spatial mix's audio output."""
        try:
            from plyer import gps  # type: ignore[import-not-found]  # optional: only where the platform has it

            gps.configure(on_location=self._on_gps, on_status=lambda *a: None)
            gps.start(minTime=2000, minDistance=5)
            self.position_source = "gps"
        except Exception:  # no plyer, or no GPS on this platform (desktop): manual pin / typed coordinates
            self.position_source = "manual"
        if not self.spatial:
            return
        app = self.app
        scene = SpatialScene(app.engine, zoom=app.zoom, audio_source=app.style, when=app.when(), k=3,
                             requery_m=self.move_m)  # the centre is asked again where the app asks again
        self.output = open_output(scene.render, scene.sample_rate, headless=kivy_env.dummy_audio())
        if self.output is None:
            self.spatial = False
            app.say("No audio stream on this device (install sounddevice on a desktop): playing each place's own "
                    "soundscape without directions.", "error")
            return
        self.scene = scene
        self.output.start()
        if hasattr(self.output, "write"):  # a buffer: render in step with the clock
            Clock.schedule_interval(lambda _dt: self.output.pump(), PUMP_S)
        if self.compass.start():
            self.has_compass = True
            self.heading_source = "compass"
            Clock.schedule_interval(self._poll_compass, 0.1)
        else:
            self.heading_source = "dial"
        Window.bind(on_key_down=self._on_key)
        self._show_heading()

    def stop(self) -> None:
        """The app closes: stop the stream and the sensors."""
        if self.output is not None:
            self.output.stop()
        self.compass.stop()

    # ------------------------------------------------------------------------------------------------ position

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
        """A new device position: follow it; the soundscape (or the mix around it) follows too."""
        app = self.app
        if not (np.isfinite(lat) and np.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
            app.say(f"{lat}, {lon} is not a position on Earth", "error")
            return
        app.mapview.center_on(lat, lon)
        if app.place is not None and distance_m(app.place, (lat, lon)) < self.move_m and source == "gps":
            if self.scene is not None:  # the mix still follows small moves; no new question to the model
                self.timings = {"move": self.scene.move(lat, lon)["total"]}
                self._show_around()
            return
        previous = app.playing_hit.id if app.playing_hit is not None else None
        answer = app.look_at(lat, lon)
        if answer is None:
            return
        if self.scene is not None:
            self.timings = {"move": self.scene.move(lat, lon, centre=answer)["total"]}
            centre = self.scene.centre
            app.playing_hit = next((h for h in answer.hits if centre and h.id == centre.item_id), None)
            if app.playing_hit is not None:
                app.panel.show_caption(app.playing_hit)
            app.show_alternatives()
            app.say(app.where_text() if app.playing_hit is not None else
                    "None of the nearest soundscapes of this place can be played.",
                    "info" if app.playing_hit is not None else "error")
            self._show_around()
            return
        if previous is not None and answer.top.id == previous:
            app.show_alternatives()
            app.say(app.where_text() + " - same soundscape here")
            return
        app.play_from(answer.hits, 0, crossfade=previous is not None)
        app.show_alternatives()

    def refresh(self) -> None:
        """Zoom or style changed: ask again about the current place (and, for AR audio, its neighbours)."""
        app = self.app
        if self.scene is not None:
            self.scene.configure(zoom=app.zoom, audio_source=app.style, when=app.when())
        if app.place is not None:
            self.set_position(*app.place, source="refresh")

    def play_alternative(self, index: int) -> None:
        """One of the place's other hits becomes what the listener hears where they stand."""
        app = self.app
        hit = app.answer.hits[index]
        try:
            self.scene.play_centre(hit)
        except Sat2SoundError as exc:
            app.say(str(exc), "error")
            return
        app.playing_hit = hit
        app.panel.show_caption(hit)
        app.show_alternatives()
        self._show_around()

    def stop_sound(self) -> None:
        if self.scene is not None:
            self.scene.stop()
            self._show_around()

    # ------------------------------------------------------------------------------------------------ heading

    def set_heading(self, deg: object, *, source: str = "dial") -> None:
        """The listener now faces ``deg`` (compass degrees). NaN or outside 0-360 is refused with a message."""
        try:
            heading = check_heading(deg)
        except ConfigError as exc:
            self.app.say(str(exc), "error")
            return
        self.heading = heading
        self.heading_source = "compass" if source == "compass" else "dial"
        if source != "compass":  # a hand on the dial overrides the compass for a while
            self._hand_until = time.monotonic() + HAND_OVERRIDE_S
        if self.scene is not None:
            self.timings = {"turn": self.scene.turn(heading)}
        self._show_heading()
        self._show_around()

    def _poll_compass(self, _dt: float) -> None:
        reading = self.compass.read()
        if reading is not None and time.monotonic() >= self._hand_until:
            self.set_heading(smooth_heading(self.heading, reading), source="compass")

    def _on_key(self, _window, key: int, *_args) -> bool:
        if key in (KEY_LEFT, KEY_RIGHT) and self.scene is not None:
            step = -self.key_step if key == KEY_LEFT else self.key_step
            self.set_heading((self.heading + step) % 360.0, source="keys")
            return True
        return False

    # ------------------------------------------------------------------------------------------------ showing

    def _show_heading(self) -> None:
        if self.dial is not None:
            self.dial.heading = self.heading
        if self.heading_label is not None:
            how = {"compass": "from the compass", "dial": "from the dial" + (" (the compass takes over again in "
                   f"{HAND_OVERRIDE_S:.0f} s)" if self.has_compass else "; or use the arrow keys")}.get(
                self.heading_source, "")
            self.heading_label.text = f"Facing {self.heading:.0f}\u00b0 {compass_word(self.heading)}\n{how}"

    def _show_around(self) -> None:
        """The map's listener layer and the panel's list of the loudest neighbours, with where they are."""
        if self.scene is None:
            return
        sounding = self.scene.sounding()
        rows = [s.as_dict() for s in sounding]
        if self.app.listener_layer is not None:
            self.app.listener_layer.show(self.scene.listener, self.heading, rows, self.scene.spacing_m)
        if self.around_label is not None:
            lines = [f"[b]{direction_word(s.azimuth_deg)}[/b], {s.distance_m:.0f} m: {_short(s.sounds)}"
                     for s in sounding if s.key != CENTRE][:4]
            self.around_label.text = "\n".join(lines) if lines else "Nothing sounds around you here."

    def snapshot(self) -> dict[str, Any]:
        return {"heading": self.heading, "heading_source": self.heading_source, "spatial": self.scene is not None,
                "scene": self.scene.snapshot() if self.scene is not None else None,
                "audio": self.output.stats() if self.output is not None else None,
                "timings_ms": dict(self.timings)}


def _short(text: str, n: int = 48) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Metres between two (lat, lon) places (equirectangular: plenty for the few hundred metres used here)."""
    lat = np.radians((a[0] + b[0]) / 2.0)
    dx = (b[1] - a[1]) * np.cos(lat) * mercator.EQUATOR_M / 360.0
    dy = (b[0] - a[0]) * mercator.EQUATOR_M / 360.0
    return float(np.hypot(dx, dy))
