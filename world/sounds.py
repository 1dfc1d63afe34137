"""Clips of the embedded world: one source at a time (synthesize) and scenes that mix several over a noise floor
(render_scene), float32 mono in numpy.

The sources themselves are synthesised in world.synths from the building blocks in world.audio_blocks; their names
and caption words are in world.sources. Nothing here imports torch: the gallery's procedural renderer runs it on
the build side, and it is cheap enough to run anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from contracts.errors import DataError
from world.audio_blocks import shaped_noise
from world.sources import check_source
from world.synths import SYNTHS

if TYPE_CHECKING:
    from world.real_audio import RealSources

TARGET_RMS = 0.1  # the level every source enters the mix at


def _length(seconds: float, sample_rate: int) -> int:
    if not (seconds > 0 and np.isfinite(seconds)):
        raise DataError(f"clip length must be a positive number of seconds, got {seconds}", field="seconds")
    if int(sample_rate) != sample_rate or sample_rate < 2000:
        raise DataError(f"sample rate must be an integer of at least 2000 Hz, got {sample_rate}", field="sample_rate")
    return int(round(seconds * sample_rate))


def synthesize(source: str, seconds: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """One source, ``seconds`` long at ``sample_rate``: float32 mono, RMS about 0.1 (levels are set by the mix)."""
    check_source(source)
    n = _length(seconds, sample_rate)
    x = SYNTHS[source](n, int(sample_rate), rng).astype(np.float32, copy=False)
    rms = float(np.sqrt(np.mean(x * x)))
    return x * np.float32(TARGET_RMS / rms) if rms > 0 else x


def render_scene(sources: Sequence[str], seconds: float, sample_rate: int, rng: np.random.Generator,
                 levels: Sequence[float] | None = None, real: RealSources | None = None) -> np.ndarray:
    """Mix sources at ``levels`` (dB, default: the first loudest, the rest 3-14 dB below) over a quiet noise floor
    (microphone hiss + distant hum); float32 in [-1, 1], peak at most 0.89 (headroom for lossy coding, whose
    decoded waveform can overshoot the original peaks by several percent). With ``real``, each source that has
    real recordings is an excerpt of one of them instead of the synthesiser's."""
    for s in sources:
        check_source(s)
    n = _length(seconds, sample_rate)
    if levels is None:  # no sources at all renders just the room: the noise floor
        levels = ([0.0] if sources else []) + [-float(rng.uniform(3.0, 14.0)) for _ in sources[1:]]
    if len(levels) != len(sources):
        raise DataError(f"got {len(levels)} levels for {len(sources)} sources", field="levels")
    mix = np.zeros(n, np.float32)
    for s, level in zip(sources, levels):
        x = real.excerpt(s, n, sample_rate, rng) if real is not None and real.has(s) else \
            synthesize(s, seconds, sample_rate, rng)
        mix += x * np.float32(10.0 ** (level / 20.0))
    floor_db = rng.uniform(-42.0, -32.0)
    floor = shaped_noise(n, sample_rate, rng, 30.0, 0.45 * sample_rate, tilt=-3.0) * TARGET_RMS
    mix += floor * np.float32(10.0 ** (floor_db / 20.0))
    peak = float(np.max(np.abs(mix)))
    gain = np.float32(10.0 ** (rng.uniform(-8.0, 0.0) / 20.0))
    mix *= gain
    if peak * gain > 0.89:
        mix *= np.float32(0.89 / (peak * gain))
    return mix
