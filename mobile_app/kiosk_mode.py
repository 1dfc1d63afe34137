"""Exhibit mode (``--kiosk``): after ``idle_s`` seconds without a touch the app resets and tours the region by itself.

The tour visits the bundle's tour places (gallery items recorded inside the region; a 3 x 3 grid over the region
when there are none), one every ``tour_s`` seconds, crossfading between them under a "Touch the map" banner. Any
touch ends the tour and hands the screen back to the visitor. Fullscreen and the larger touch targets are the app's
part (its ``scale``).

Kivy; imported after the app has set up Kivy's environment. Never torch.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from kivy.clock import Clock
from kivy.core.window import Window

if TYPE_CHECKING:
    from kivy.clock import ClockEvent

    from mobile_app.app import Sat2SoundApp

BANNER = "Touch the map to hear any place"
IDLE_CHECK_S = 0.25  # how often the idle timer looks at the time of the last touch


class KioskMode:
    """The idle timer and the attract tour for ``app``. ``attract`` is True while the app tours by itself."""

    def __init__(self, app: Sat2SoundApp, *, idle_s: float = 90.0, tour_s: float = 14.0):
        self.app = app
        self.idle_s = float(idle_s)
        self.tour_s = float(tour_s)
        self.attract = False
        self.tour_index = 0
        self._last_touch = time.monotonic()
        self._tour_event: ClockEvent | None = None

    def start(self) -> None:
        """Watch every touch on the window and start the idle timer."""
        Window.bind(on_touch_down=self._on_any_touch)
        Clock.schedule_interval(self._idle_check, IDLE_CHECK_S)

    def _on_any_touch(self, _window, _touch) -> None:
        self._last_touch = time.monotonic()
        if self.attract:
            self.stop_attract()

    def _idle_check(self, _dt: float) -> None:
        if not self.attract and time.monotonic() - self._last_touch >= self.idle_s:
            self.start_attract()

    def tour_places(self) -> list[tuple[float, float]]:
        """(lat, lon) of the places the tour visits, in order."""
        bundle = self.app.engine.bundle
        places = [(float(p["lat"]), float(p["lon"])) for p in bundle.tour
                  if bundle.region.contains(float(p["lon"]), float(p["lat"]))]
        if places:
            return places
        r = bundle.region
        return [(r.south + (r.north - r.south) * fy, r.west + (r.east - r.west) * fx)
                for fy in (0.25, 0.5, 0.75) for fx in (0.25, 0.5, 0.75)]

    def start_attract(self) -> None:
        """Reset the screen, show the banner and tour: the first place now, the next every ``tour_s`` seconds."""
        self.app.reset()
        self.attract = True
        self.app.banner.text = BANNER
        self.app.banner.opacity = 1
        self._tour_step(0)
        self._tour_event = Clock.schedule_interval(self._tour_step, self.tour_s)

    def stop_attract(self) -> None:
        self.attract = False
        self.app.banner.opacity = 0
        if self._tour_event is not None:
            self._tour_event.cancel()
            self._tour_event = None

    def _tour_step(self, _dt: float) -> None:
        places = self.tour_places()
        lat, lon = places[self.tour_index % len(places)]
        self.tour_index += 1
        self.app.mapview.center_on(lat, lon)
        self.app.listen_at(lat, lon, source="tour", crossfade=True)
