"""The app's look: its colours, the few widget helpers every part of the screen uses, and the error screen.

Kivy only; imported after the app has set up Kivy's environment (mobile_app.kivy_env). Never torch.
"""

from __future__ import annotations

from kivy.graphics import Color, Rectangle, RoundedRectangle
from kivy.metrics import dp, sp
from kivy.uix.anchorlayout import AnchorLayout
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.label import Label
from kivy.uix.togglebutton import ToggleButton
from kivy.uix.widget import Widget

# Colours: a dark panel beside the imagery, one accent.
BG = (0.082, 0.098, 0.118, 1)
CARD = (0.13, 0.155, 0.18, 1)
ACCENT = (0.20, 0.78, 0.70, 1)
ACCENT_DIM = (0.16, 0.36, 0.36, 1)
BUTTON = (0.19, 0.22, 0.26, 1)
TEXT = (0.93, 0.95, 0.96, 1)
MUTED = (0.62, 0.68, 0.72, 1)
WARN = (1.0, 0.62, 0.42, 1)


def panel_bg(widget: Widget, colour: tuple[float, ...], radius: float = 0.0) -> None:
    """Paint ``widget``'s background in ``colour`` (rounded by ``radius``), following its position and size."""
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


def section(text: str, scale: float = 1.0) -> Label:
    """A small upper-case heading above a group of controls."""
    return WrapLabel(text=text.upper(), font_size=sp(11.5 * scale), color=MUTED, bold=True)


def flat_button(cls: type[Button] = Button, **kwargs) -> Button:
    """A flat button with wrapping text; a ToggleButton shows the accent while it is down."""
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
        panel_bg(self, BG)
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
