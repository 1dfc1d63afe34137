"""The panel beside the map: what the model looks at (zoom), the recording style, what plays with the view the
model saw, the other soundscapes near the place, and a status line.

The panel shows; the app decides: every button calls back into the app, and the app tells the panel what to show.
Kivy and numpy; imported after the app has set up Kivy's environment. Never torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from kivy.core.window import Window
from kivy.graphics.texture import Texture
from kivy.metrics import dp, sp
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.gridlayout import GridLayout
from kivy.uix.image import Image
from kivy.uix.scrollview import ScrollView
from kivy.uix.togglebutton import ToggleButton
from kivy.uix.widget import Widget

from contracts.schema import AUDIO_SOURCES
from mobile_app.widgets import BG, CARD, MUTED, WARN, WrapLabel, flat_button, panel_bg, section

if TYPE_CHECKING:
    from gallery.query import Hit
    from mobile_app.app import Sat2SoundApp

STYLE_LABELS: dict[str, str] = {  # recording styles = the model's audio-source field
    "yfcc": "Everyday\n(Flickr)",
    "inaturalist": "Wildlife\n(iNaturalist)",
    "aporee": "Ambience\n(radio aporee)",
    "freesound": "Sound fx\n(Freesound)",
}


class Panel(BoxLayout):
    """The side panel (below the map on a portrait phone). ``extra`` widgets go after the style buttons."""

    def __init__(self, app: Sat2SoundApp, *, portrait: bool = False, extra: Sequence[Widget] = (), **kwargs):
        s = app.scale
        # The panel scrolls as a whole when a small screen cannot hold it; the status line stays in view.
        super().__init__(orientation="vertical", size_hint=(None, 1), padding=dp(16 * s), spacing=dp(8 * s),
                         width=max(dp(360), min(dp(360 * s), Window.width * 0.42)), **kwargs)
        if portrait:
            self.size_hint, self.height = (1, None), Window.height * 0.48
        panel_bg(self, BG)
        self._app = app
        self._scale = s
        engine = app.engine
        body = BoxLayout(orientation="vertical", size_hint_y=None, spacing=dp(10 * s), padding=(0, 0, dp(8), 0))
        body.bind(minimum_height=body.setter("height"))
        body.add_widget(WrapLabel(text="Sat2Sound", font_size=sp(26 * s), bold=True))
        about = ("Touch any place on the map to hear what it sounds like." if app.kiosk else
                 f"Hear any place of this map. {len(engine.gallery)} soundscapes, {engine.bundle.model.variant} "
                 f"model on {engine.tower.name}, offline.")
        body.add_widget(WrapLabel(text=about, font_size=sp(13 * s), color=MUTED))
        # Zoom: how much ground the model looks at.
        body.add_widget(section("What the model looks at", s))
        row = BoxLayout(size_hint_y=None, height=dp(48 * s), spacing=dp(6))
        self.zoom_buttons: dict[int, ToggleButton] = {}
        for z in engine.zooms:
            ground = engine.bundle.views[z].ground_m
            btn = flat_button(ToggleButton, text=f"{ground:.0f} m", group="zoom", allow_no_selection=False,
                              state="down" if z == app.zoom else "normal", font_size=sp(15 * s))
            btn.bind(on_press=lambda _b, z=z: app.set_zoom(z))
            self.zoom_buttons[z] = btn
            row.add_widget(btn)
        body.add_widget(row)
        # Recording style: the audio-source metadata field.
        body.add_widget(section("Recording style", s))
        grid = GridLayout(cols=2, size_hint_y=None, height=dp(2 * 50 * s + 6), spacing=dp(6))
        self.style_buttons: dict[str, ToggleButton] = {}
        for name in AUDIO_SOURCES:
            btn = flat_button(ToggleButton, text=STYLE_LABELS.get(name, name), group="style",
                              allow_no_selection=False, state="down" if name == app.style else "normal",
                              font_size=sp(12.5 * s))
            btn.bind(on_press=lambda _b, n=name: app.set_style(n))
            self.style_buttons[name] = btn
            grid.add_widget(btn)
        body.add_widget(grid)
        for widget in extra:
            body.add_widget(widget)
        body.add_widget(section("Now playing", s))
        body.add_widget(self._now_playing_card())
        controls = BoxLayout(size_hint_y=None, height=dp(40 * s), spacing=dp(6))
        self.stop_button = flat_button(text="Stop", font_size=sp(14 * s))
        self.stop_button.bind(on_press=lambda _b: app.stop_sound())
        controls.add_widget(self.stop_button)
        body.add_widget(controls)
        body.add_widget(section("Also near this place", s))
        self.alt_box = BoxLayout(orientation="vertical", size_hint_y=None, spacing=dp(6))
        self.alt_box.bind(minimum_height=self.alt_box.setter("height"))
        body.add_widget(self.alt_box)
        scroll = ScrollView(size_hint=(1, 1), do_scroll_x=False, bar_width=dp(4))
        scroll.add_widget(body)
        self.add_widget(scroll)
        self.status = WrapLabel(text="", font_size=sp(13 * s), color=MUTED)
        self.add_widget(self.status)

    def _now_playing_card(self) -> BoxLayout:
        """The model's view of the place beside the caption of the clip that plays."""
        s = self._scale
        card = BoxLayout(orientation="horizontal", size_hint_y=None, spacing=dp(12), padding=dp(10))
        panel_bg(card, CARD, dp(8))
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
        return card

    # ------------------------------------------------------------------------------------------------ showing

    def select_zoom(self, zoom: int) -> None:
        for z, b in self.zoom_buttons.items():
            b.state = "down" if z == zoom else "normal"

    def select_style(self, style: str | None) -> None:
        for n, b in self.style_buttons.items():
            b.state = "down" if n == style else "normal"

    def set_status(self, text: str, kind: str = "info") -> None:
        self.status.text = text
        self.status.color = WARN if kind == "error" else MUTED

    def show_caption(self, hit: Hit) -> None:
        self.caption.text = hit.caption
        parts = [f"similarity {hit.score:.3f}"]
        if hit.sources:
            parts.append("sounds: " + ", ".join(hit.sources))
        self.detail.text = " - ".join(parts)

    def show_view(self, rgb: np.ndarray) -> None:
        """The model's own view of the place (RGB uint8), drawn with its pixels visible."""
        h, w = rgb.shape[:2]
        tex = Texture.create(size=(w, h), colorfmt="rgb")
        tex.blit_buffer(np.ascontiguousarray(rgb[::-1]).tobytes(), colorfmt="rgb", bufferfmt="ubyte")
        tex.mag_filter = "nearest"
        self.view_image.texture = tex
        self.view_image.opacity = 1

    def show_alternatives(self, hits: Sequence[Hit], playing_id: str | None) -> None:
        """A button for each hit but the one playing; a press plays that hit instead."""
        self.alt_box.clear_widgets()
        s = self._scale
        for i, hit in enumerate(hits):
            if hit.id == playing_id:
                continue
            text = hit.caption if len(hit.caption) <= 110 else hit.caption[:107] + "..."
            btn = flat_button(text=f"{text}\n[size={int(sp(10.5 * s))}]similarity {hit.score:.3f}[/size]",
                              markup=True, size_hint_y=None, font_size=sp(12.5 * s), halign="left")
            btn.bind(texture_size=lambda w, ts: setattr(w, "height", max(dp(52 * s), ts[1] + dp(16))))
            btn.bind(on_press=lambda _b, i=i: self._app.play_alternative(i))
            btn.s2s_id = hit.id
            self.alt_box.add_widget(btn)

    def alternative_ids(self) -> list[str | None]:
        """The ids the alternative buttons offer, top to bottom."""
        return [getattr(w, "s2s_id", None) for w in reversed(self.alt_box.children)]
