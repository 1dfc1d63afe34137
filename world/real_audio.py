"""Real recordings as the world's sound sources: each source in a scene is an excerpt of a real clip of it
(``world.recordings``, source material only), at a random offset and gain, where one is installed; the
synthesiser plays the sources that have none.

A scene is still a pure function of (seed, sample): the clip, its offset and the gain are drawn from the scene's
random stream. Clips shorter than the scene are looped (ambience loops are made for it; a short event such as a
horn repeats after a random pause). Only clips that hold one source are used, so the ground truth of a
recording stays exact; the two clips that carry a second source (rain with birds, a truck that sounds its horn)
are not world material.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from world import recordings
from world.recordings import RealClip
from world.sounds import TARGET_RMS


class RealSources:
    """The source-material clips per world source, decoded once per sample rate (about 40 MB at 16 kHz)."""

    def __init__(self, clips: Sequence[RealClip] | None = None):
        pool = recordings.catalogue() if clips is None else list(clips)
        self.by_source: dict[str, tuple[RealClip, ...]] = {}
        for clip in sorted(pool, key=lambda c: c.key):
            if clip.split == recordings.SOURCE_SPLIT and len(clip.sources) == 1 and clip.seconds > 0.05:
                self.by_source.setdefault(clip.source, ())
                self.by_source[clip.source] += (clip,)
        self.missing_packages = recordings.missing_packages() if clips is None else []

    @property
    def sources(self) -> tuple[str, ...]:
        """The world sources that are played from real recordings, in name order."""
        return tuple(sorted(self.by_source))

    def has(self, source: str) -> bool:
        return source in self.by_source

    def record(self) -> dict:
        """What a world build records about its real material: which sources, from which clips."""
        return {"real_sources": list(self.sources),
                "clips": {s: [c.key for c in clips] for s, clips in sorted(self.by_source.items())},
                "missing_packages": list(self.missing_packages)}

    def decode_all(self, sample_rate: int) -> None:
        """Decode every clip at ``sample_rate`` now (a build does it before forking its workers)."""
        for clips in self.by_source.values():
            for clip in clips:
                _decoded(clip, int(sample_rate))

    def excerpt(self, source: str, n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` samples of a real recording of ``source`` at ``sample_rate``: clip, offset and gain drawn from
        ``rng``; float32 at RMS 0.1 (the mix sets the levels)."""
        clips = self.by_source[source]
        wave = _decoded(clips[int(rng.integers(len(clips)))], int(sample_rate))
        if wave.size >= n:
            start = int(rng.integers(0, wave.size - n + 1))
            x = wave[start:start + n].copy()
        else:  # loop it: the whole clip, a random pause of up to a quarter of its length, again
            gap = np.zeros(int(rng.integers(0, wave.size // 4 + 1)), np.float32)
            period = np.concatenate([wave, gap])
            reps = -(-(n + period.size) // period.size)
            start = int(rng.integers(0, period.size))
            x = np.tile(period, reps)[start:start + n].copy()
        rms = float(np.sqrt(np.mean(x * x)))
        gain = 10.0 ** (rng.uniform(-2.0, 2.0) / 20.0)
        return x * np.float32(gain * TARGET_RMS / rms) if rms > 1e-6 else x


@functools.lru_cache(maxsize=64)
def _decoded(clip: RealClip, sample_rate: int) -> np.ndarray:
    return recordings.decode_clip(clip, sample_rate)


@functools.lru_cache(maxsize=1)
def installed() -> RealSources:
    """The real sources on this machine (one catalogue read per process)."""
    return RealSources()
