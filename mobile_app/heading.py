"""Which way the listener faces: the phone's compass where there is one, else a dial on screen (or the arrow keys).

- ``heading_from_field``: a magnetometer reading (device axes: x to the right of the screen, y to its top, z out of
  it) -> compass heading of where the listener faces: the screen's top for a phone held flat, the back of the
  phone (where its camera looks) for one held upright; tilt-compensated with the gravity vector when the
  accelerometer gives one. Magnetic, not true north: the declination (a few degrees in Europe) is not corrected.
- ``Compass``: plyer's compass + accelerometer, polled; ``read()`` is None until they give a finite reading.
- ``HeadingDial``: a round dial; touching or dragging on it fires ``on_turn(deg)`` (the app then moves the needle).

Kivy (the dial) and plyer (optional); never torch.
"""

from __future__ import annotations

import math

from kivy.graphics import Color, Ellipse, Line, Triangle
from kivy.metrics import dp, sp
from kivy.properties import NumericProperty
from kivy.uix.label import Label
from kivy.uix.widget import Widget

from mobile_app.widgets import ACCENT, CARD, MUTED, TEXT

SECTORS = ("N", "NE", "E", "SE", "S", "SW", "W", "NW")


def compass_word(heading: float) -> str:
    """N, NE, E ... for a heading in degrees."""
    return SECTORS[int((heading % 360.0) / 45.0 + 0.5) % 8]


def heading_from_field(mx: float, my: float, mz: float,
                       gravity: tuple[float, float, float] | None = None) -> float | None:
    """Compass heading (deg, 0 = magnetic north, clockwise) the listener faces, or None for a useless reading.

    Without gravity the phone is taken to lie flat. With it, east = field x up (cross product with gravity) and
    north = up x east (as Android's SensorManager.getRotationMatrix builds them), and the heading is the angle in
    that frame of the device's y axis (flat: gravity mostly along z) or of its -z axis (upright: mostly along y).
    """
    vals = (mx, my, mz)
    if not all(v is not None and math.isfinite(v) for v in vals):
        return None
    if gravity is None or not all(g is not None and math.isfinite(g) for g in gravity):
        if mx == 0 and my == 0:
            return None
        return math.degrees(math.atan2(-mx, my)) % 360.0
    ax, ay, az = gravity
    # east = m x g ... (Android's convention: gravity points up out of a screen lying face up)
    ex, ey, ez = my * az - mz * ay, mz * ax - mx * az, mx * ay - my * ax
    norm_e = math.sqrt(ex * ex + ey * ey + ez * ez)
    norm_g = math.sqrt(ax * ax + ay * ay + az * az)
    if norm_e < 1e-6 or norm_g < 1e-6:
        return None
    ex, ey, ez = ex / norm_e, ey / norm_e, ez / norm_e
    gx, gy, gz = ax / norm_g, ay / norm_g, az / norm_g
    north = (gy * ez - gz * ey, gz * ex - gx * ez, gx * ey - gy * ex)  # g x e
    if abs(gy) > abs(gz):  # upright: the listener faces the phone's back (-z)
        return math.degrees(math.atan2(-ez, -north[2])) % 360.0
    return math.degrees(math.atan2(ey, north[1])) % 360.0


class Compass:
    """plyer's compass (and accelerometer for tilt), where the platform has them."""

    def __init__(self):
        self._compass = None
        self._accel = None

    def start(self) -> bool:
        """True when a compass could be switched on (Android, iOS); False on a desktop."""
        try:
            from plyer import compass  # type: ignore[import-not-found]  # optional: only where the platform has it

            compass.enable()
            self._compass = compass
        except Exception:  # no plyer, or no compass on this platform
            return False
        try:
            from plyer import accelerometer  # type: ignore[import-not-found]

            accelerometer.enable()
            self._accel = accelerometer
        except Exception:  # the compass alone still works for a phone held flat
            self._accel = None
        return True

    def read(self) -> float | None:
        if self._compass is None:
            return None
        try:
            field = self._compass.field
            gravity = self._accel.acceleration if self._accel is not None else None
        except Exception:  # a sensor that stopped answering
            return None
        if not field or len(field) < 3:
            return None
        return heading_from_field(*field[:3], gravity=tuple(gravity[:3]) if gravity and len(gravity) >= 3 else None)

    def stop(self) -> None:
        for sensor in (self._compass, self._accel):
            try:
                if sensor is not None:
                    sensor.disable()
            except Exception:  # disabling a sensor must never take the app down
                pass


def smooth_heading(previous: float | None, new: float, alpha: float = 0.3) -> float:
    """Exponential smoothing on the circle (a compass jitters by a few degrees)."""
    if previous is None:
        return new % 360.0
    d = (new - previous + 180.0) % 360.0 - 180.0
    return (previous + alpha * d) % 360.0


class HeadingDial(Widget):
    """A compass rose; the needle shows ``heading``; a touch (or drag) on it dispatches ``on_turn(deg)``."""

    __events__ = ("on_turn",)
    heading = NumericProperty(0.0)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._north = Label(text="N", font_size=sp(11), color=MUTED, size_hint=(None, None), size=(dp(14), dp(14)))
        self.add_widget(self._north)
        self.bind(pos=self._redraw, size=self._redraw, heading=self._redraw)

    def angle_at(self, x: float, y: float) -> float:
        """The compass angle of a window point seen from the dial's centre."""
        cx, cy = self.center
        return math.degrees(math.atan2(x - cx, y - cy)) % 360.0

    def point_at(self, deg: float, frac: float = 0.8) -> tuple[float, float]:
        """Window point at compass angle ``deg``, ``frac`` of the radius out (what a finger would touch)."""
        r = min(self.width, self.height) / 2.0 * frac
        cx, cy = self.center
        return cx + r * math.sin(math.radians(deg)), cy + r * math.cos(math.radians(deg))

    def on_touch_down(self, touch):
        if self.collide_point(*touch.pos):
            touch.grab(self)
            self.dispatch("on_turn", self.angle_at(*touch.pos))
            return True
        return super().on_touch_down(touch)

    def on_touch_move(self, touch):
        if touch.grab_current is self:
            self.dispatch("on_turn", self.angle_at(*touch.pos))
            return True
        return super().on_touch_move(touch)

    def on_touch_up(self, touch):
        if touch.grab_current is self:
            touch.ungrab(self)
            return True
        return super().on_touch_up(touch)

    def on_turn(self, deg: float) -> None:
        pass

    def _redraw(self, *_args) -> None:
        r = min(self.width, self.height) / 2.0
        cx, cy = self.center
        self._north.center = (cx, cy + r - dp(9))
        self.canvas.before.clear()
        with self.canvas.before:
            Color(*CARD)
            Ellipse(pos=(cx - r, cy - r), size=(2 * r, 2 * r))
            Color(*MUTED[:3], 0.8)
            Line(circle=(cx, cy, r - dp(1)), width=dp(1))
            for deg in range(0, 360, 45):
                x0, y0 = self.point_at(deg, 0.86)
                x1, y1 = self.point_at(deg, 0.96)
                Line(points=[x0, y0, x1, y1], width=dp(1))
            h = math.radians(self.heading)
            tip = (cx + 0.72 * r * math.sin(h), cy + 0.72 * r * math.cos(h))
            side = dp(6)
            left = (cx - side * math.cos(h), cy + side * math.sin(h))
            right = (cx + side * math.cos(h), cy - side * math.sin(h))
            Color(*ACCENT)
            Triangle(points=[*tip, *left, *right])
            Color(*TEXT)
            Ellipse(pos=(cx - dp(3), cy - dp(3)), size=(dp(6), dp(6)))
