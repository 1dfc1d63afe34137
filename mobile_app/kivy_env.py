"""Kivy's environment, set before Kivy is first imported (Kivy reads it at import time and cannot change later).

The app parses its own arguments (KIVY_NO_ARGS), keeps Kivy's console/file logs quiet unless asked, and on a machine
without a display or sound card (tests, CI, a kiosk being set up over ssh) runs SDL offscreen with a dummy audio
driver: the window still renders for real (EGL), so screenshots and taps work.

Standard library only.
"""

from __future__ import annotations

import os
import sys


def headless_wanted() -> bool:
    """No display to open a window on (Linux without DISPLAY / WAYLAND_DISPLAY), or asked for explicitly."""
    if os.environ.get("SAT2SOUND_HEADLESS") == "1":
        return True
    return sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) \
        and "ANDROID_ARGUMENT" not in os.environ


def dummy_audio() -> bool:
    """SDL's audio goes nowhere (the dummy driver of a headless run): sound can only be rendered, not heard."""
    return os.environ.get("SDL_AUDIODRIVER") == "dummy"


def configure(*, headless: bool | None = None, kivy_home: str | None = None, size: tuple[int, int] | None = None,
              fullscreen: bool = False, log: bool = False) -> None:
    """Set Kivy's environment and window config. Call before anything imports kivy."""
    if "kivy" in sys.modules:
        return  # too late to change; whoever imported it first has decided
    env = os.environ
    env.setdefault("KIVY_NO_ARGS", "1")
    env.setdefault("KIVY_USE_DEFAULTCONFIG", "1")
    if not log:
        env.setdefault("KIVY_NO_CONSOLELOG", "1")
        env.setdefault("KIVY_NO_FILELOG", "1")
    if kivy_home:
        os.makedirs(kivy_home, exist_ok=True)
        env.setdefault("KIVY_HOME", kivy_home)
    if headless if headless is not None else headless_wanted():
        env.setdefault("SDL_VIDEODRIVER", "offscreen")
        env.setdefault("SDL_AUDIODRIVER", "dummy")
    env.setdefault("KIVY_AUDIO", "sdl2")
    from kivy.config import Config

    if size is not None:
        Config.set("graphics", "width", str(int(size[0])))
        Config.set("graphics", "height", str(int(size[1])))
    Config.set("graphics", "fullscreen", "auto" if fullscreen else "0")
    Config.set("input", "mouse", "mouse,disable_multitouch")
    Config.set("kivy", "exit_on_escape", "0" if fullscreen else "1")
