"""Renderers turn a caption into the clip the gallery plays for it.

- ``procedural`` (the embedded default): the world's own scene mixer plays the sources a caption names
  (``world.sources.sources_in_text`` + ``render_scene``), seeded from the caption's content id, so the same
  caption always renders the same clip. With ``audio="real"`` each source is an excerpt of a real recording of
  it where one is installed (the world's source material, never a held-out clip), else synthesised. This
  stands in for the paper's TangoFlux, which needs a GPU and weights we lack.
- ``import``: clips made elsewhere (e.g. TangoFlux, 10 s at 44.1 kHz), mapped to captions by a CSV or a folder; they
  are decoded, mixed to mono, resampled to the gallery rate and cut to at most ``seconds``. A record from the
  public demo's HDF5 gallery (``audio_item`` set) reads its ``synth_audio_zl{z}`` row (44.1 kHz) from the file
  instead of decoding an audio file, then goes the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from contracts.errors import DataError
from gallery.captions import CaptionRecord
from gallery.errors import GalleryError


@dataclass
class RenderedClip:
    wave: np.ndarray  # mono float32 in [-1, 1] at the gallery's sample rate
    sources: list[str]  # the sound sources the clip plays (empty when unknown, e.g. imported clips)


class Renderer(Protocol):
    name: str

    def prepare(self, records: list[CaptionRecord]) -> None: ...

    def render(self, record: CaptionRecord) -> RenderedClip: ...


def caption_seed(record: CaptionRecord) -> int:
    """64-bit seed from the caption's content id (sha1 hex): deterministic per caption, independent of order."""
    return int(record.id[:16], 16)


class ProceduralRenderer:
    name = "procedural"

    def __init__(self, seconds: float, sample_rate: int, audio: str = "synthetic"):
        if audio not in ("synthetic", "real"):
            raise GalleryError(f"unknown audio {audio!r} for the procedural renderer; expected synthetic or real")
        self.seconds = float(seconds)
        self.sample_rate = int(sample_rate)
        self.audio = audio
        self._sounds()  # fail at once, not in the first batch, when the world's synthesis is missing

    @staticmethod
    def _sounds():
        # Imported on use (not stored): the renderer is pickled into worker processes.
        try:
            from world import sounds
        except ImportError as exc:
            raise GalleryError(f"the procedural renderer needs world.sounds ({exc})") from None
        return sounds

    def prepare(self, records: list[CaptionRecord]) -> None:
        return None

    def render(self, record: CaptionRecord) -> RenderedClip:
        from world.sources import sources_in_text

        sounds = self._sounds()
        sources = list(sources_in_text(record.caption))
        rng = np.random.default_rng(caption_seed(record))
        # A caption that names no known source gets the scene's quiet noise floor alone (explicit empty levels:
        # render_scene's default level list assumes at least one source).
        real = None
        if self.audio == "real":
            from world.real_audio import installed

            real = installed()
        wave = sounds.render_scene(sources, self.seconds, self.sample_rate, rng, levels=None if sources else [],
                                   real=real)
        return RenderedClip(np.asarray(wave, dtype=np.float32), sources)


class ImportRenderer:
    name = "import"

    def __init__(self, seconds: float | None, sample_rate: int):
        self.seconds = seconds
        self.sample_rate = int(sample_rate)

    def prepare(self, records: list[CaptionRecord]) -> None:
        """Every caption must name an existing audio file: fail before any work, naming the row."""
        for rec in records:
            if rec.audio_path is None:
                raise DataError("no audio file for this caption (the import renderer needs audio_path)",
                                path=rec.origin)
            if not rec.audio_path.is_file():
                raise DataError(f"audio file {rec.audio_path} does not exist", path=rec.origin, field="audio_path")

    def render(self, record: CaptionRecord) -> RenderedClip:
        from core.config import AudioConfig
        from core.data.audio_io import load_audio, resample

        if record.audio_item is not None:  # a row of an HDF5 gallery: read by row, not decoded from a file
            from gallery.demo_hdf5 import read_demo_clip

            raw, rate = read_demo_clip(record.audio_path, *record.audio_item)
            wave = resample(raw, rate, self.sample_rate)
        else:
            cfg = replace(AudioConfig(), sample_rate=self.sample_rate)
            wave = load_audio(record.audio_path, cfg, name_for_errors=f"{record.audio_path} ({record.origin})",
                              field="audio_path")
        if self.seconds is not None:
            wave = wave[: int(round(self.seconds * self.sample_rate))]
        peak = float(np.max(np.abs(wave))) if wave.size else 0.0
        if peak > 1.0:  # resampling can overshoot a full-scale clip a little: scale back instead of clipping
            wave = wave / peak
        return RenderedClip(wave.astype(np.float32), [])


RENDERERS = ("procedural", "import")


def get_renderer(name: str, *, seconds: float, sample_rate: int, audio: str = "synthetic") -> Renderer:
    if name == "procedural":
        return ProceduralRenderer(seconds, sample_rate, audio)
    if name == "import":
        return ImportRenderer(seconds, sample_rate)
    raise GalleryError(f"unknown renderer {name!r}; expected one of {', '.join(RENDERERS)}")
