"""Spatial audio for a listener: where a sound comes from -> what each ear hears, and a mixer that turns smoothly.

Two parts, numpy only (a phone runs this; nothing here knows about bundles, maps or Kivy):

- **Cues** (``ear_cues``, ``distance_gain``): a source at a bearing and distance from a listener facing a heading
  becomes a gain and a delay per ear. The azimuth (clockwise from where the listener faces) sets
  * an equal-power pan: ``phi = pi/4 * (1 + width * sin(az))``, left ``cos(phi)``, right ``sin(phi)``, so the two
    ears' powers always sum to the source's power; ``width`` < 1 keeps a side source in both ears (at 90 degrees
    and the default width 0.5 the near ear is 7.7 dB louder, about what a head shadows of broadband sound);
  * an interaural time difference from Woodworth's spherical head, ``r/c * (t + sin t)`` with ``t`` the lateral
    angle ``asin(sin(az))``: 0.66 ms at 90 degrees for an 8.75 cm head; the far ear is delayed;
  * a small rear attenuation (``rear_db`` at 180 degrees), so a sound behind is a little duller than one ahead.
  The distance gain is 1/d beyond half a cell (``spacing/2``), faded in between half a cell and a cell (the place
  the listener stands on is its own centred source, not a neighbour) and faded out towards ``radius`` cells, so
  sources come and go smoothly as the listener walks.
- **Mixer**: looping mono voices, each with its own per-ear gains and delays. ``set_target`` starts a short linear
  ramp (``ramp_s``) from wherever the gains are now, so a turn of the head never clicks; ``fade`` moves a voice's
  equal-power envelope (sin of a linear ramp) in or out, which is how one clip crossfades into another. Delays are
  fractional (cubic Lagrange interpolation), ramped like the gains. ``render(n)`` returns (n, 2) float32 in [-1, 1].
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import numpy as np

HEAD_RADIUS_M = 0.0875
SPEED_OF_SOUND_M_S = 343.0
LOOP_PAD = 16384  # samples of a clip repeated after its end, so a steady block up to this long is one slice


@dataclass(frozen=True)
class EarCues:
    """Gains (linear) and delays (seconds) of one source at the left and right ear."""

    left: float
    right: float
    delay_left_s: float
    delay_right_s: float

    @property
    def ild_db(self) -> float:
        """Right minus left level in dB (positive: the right ear hears it louder)."""
        return 20.0 * math.log10(max(self.right, 1e-12) / max(self.left, 1e-12))

    @property
    def itd_s(self) -> float:
        """How much earlier the right ear hears it than the left (positive: the right ear leads)."""
        return self.delay_left_s - self.delay_right_s


def wrap_deg(angle: float) -> float:
    """An angle in degrees folded into (-180, 180]."""
    a = math.fmod(angle, 360.0)
    if a <= -180.0:
        a += 360.0
    elif a > 180.0:
        a -= 360.0
    return a


def woodworth_itd_s(azimuth_deg: float, head_radius_m: float = HEAD_RADIUS_M) -> float:
    """Interaural time difference (s) of a far source at ``azimuth_deg`` (positive: the right ear leads)."""
    lateral = math.asin(max(-1.0, min(1.0, math.sin(math.radians(azimuth_deg)))))
    return head_radius_m / SPEED_OF_SOUND_M_S * (lateral + math.sin(lateral))


def ear_cues(azimuth_deg: float, *, width: float = 0.5, rear_db: float = 3.0,
             head_radius_m: float = HEAD_RADIUS_M) -> EarCues:
    """The cues of a source at ``azimuth_deg`` (clockwise from the facing direction: 90 = on the right)."""
    az = math.radians(azimuth_deg)
    phi = math.pi / 4.0 * (1.0 + width * math.sin(az))
    rear = 10.0 ** (-rear_db * max(0.0, -math.cos(az)) / 20.0)
    itd = woodworth_itd_s(azimuth_deg, head_radius_m)
    return EarCues(math.cos(phi) * rear, math.sin(phi) * rear, max(itd, 0.0), max(-itd, 0.0))


def lagrange3(frac):
    """Weights of the samples at -1, 0, 1, 2 that interpolate a signal at ``frac`` in [0, 1) (cubic Lagrange).

    A fractional delay by linear interpolation dulls the delayed ear by up to 3 dB at high frequencies (at half a
    sample), which would add a level difference that changes as the head turns; the cubic one stays within a
    fraction of a dB over most of the band.
    """
    f = frac
    return (-f * (f - 1.0) * (f - 2.0) / 6.0, (f + 1.0) * (f - 1.0) * (f - 2.0) / 2.0,
            -(f + 1.0) * f * (f - 2.0) / 2.0, (f + 1.0) * f * (f - 1.0) / 6.0)


def _raised_cosine(x: float) -> float:
    """0 for x <= 0, 1 for x >= 1, a smooth S in between."""
    x = min(1.0, max(0.0, x))
    return 0.5 - 0.5 * math.cos(math.pi * x)


def distance_gain(distance_m: float, spacing_m: float, radius_cells: float = 2.0) -> float:
    """Loudness of a neighbouring place ``distance_m`` away on a grid of ``spacing_m`` cells (0 beyond ``radius``).

    1/d law with half a cell as the reference distance (a neighbour one cell away is at 0.5, -6 dB), faded in from
    half a cell to one cell and out over the last half cell before ``radius_cells`` cells.
    """
    s = float(spacing_m)
    d = float(distance_m)
    ref = 0.5 * s
    inner = _raised_cosine((d - 0.5 * s) / (0.5 * s))
    outer = 1.0 - _raised_cosine((d - (radius_cells - 0.5) * s) / (0.5 * s))
    return ref / max(ref, d) * inner * outer


# ---------------------------------------------------------------------------------------------------- mixer


@dataclass
class _Ramp:
    """A quantity moving linearly from ``start`` to ``end`` over ``n`` samples, ``done`` of them already played."""

    start: np.ndarray
    end: np.ndarray
    n: int
    done: int = 0

    def value(self) -> np.ndarray:
        if self.done >= self.n:
            return self.end
        return self.start + (self.end - self.start) * (self.done / self.n)

    def block(self, count: int) -> np.ndarray:
        """(count, k) values for the next ``count`` samples; advances."""
        if self.done >= self.n:
            self.done += count
            return np.broadcast_to(self.end, (count, self.end.size))
        t = np.minimum(1.0, (self.done + 1 + np.arange(count, dtype=np.float64)) / self.n)[:, None]
        self.done += count
        return self.start + (self.end - self.start) * t


@dataclass
class Voice:
    """One looping mono source in the mix: the clip, where it is read, its ear parameters and its envelope."""

    key: str
    wave: np.ndarray  # mono float32 at the mixer's rate
    item_id: str = ""
    pos: int = 0
    params: _Ramp = field(default_factory=lambda: _Ramp(np.zeros(4), np.zeros(4), 1, 1))  # gl, gr, dl, dr (samples)
    envelope: _Ramp = field(default_factory=lambda: _Ramp(np.zeros(1), np.ones(1), 1, 1))  # 0..1, heard as sin
    looped: np.ndarray = field(default=None)  # the clip followed by its own start: blocks read as plain slices

    def __post_init__(self) -> None:
        if self.looped is None:
            self.looped = np.resize(self.wave, self.wave.size + LOOP_PAD)

    @property
    def gains(self) -> tuple[float, float]:
        p = self.params.value()
        return float(p[0]), float(p[1])

    @property
    def level(self) -> float:
        """The envelope's loudness now (equal-power: sin of the ramp's position)."""
        return math.sin(float(self.envelope.value()[0]) * math.pi / 2.0)

    @property
    def silent_for_good(self) -> bool:
        """Faded out completely (the mixer drops it)."""
        return self.envelope.done >= self.envelope.n and float(self.envelope.end[0]) <= 0.0


class Mixer:
    """Mixes looping voices into stereo. Thread-safe: the UI thread sets targets while an audio thread renders."""

    def __init__(self, sample_rate: int, *, ramp_s: float = 0.05, master: float = 0.63):
        if sample_rate <= 0:
            raise ValueError(f"a sample rate must be positive, got {sample_rate}")
        self.sample_rate = int(sample_rate)
        self.ramp_n = max(1, int(round(ramp_s * self.sample_rate)))
        self.master = float(master)
        self.voices: dict[str, Voice] = {}
        self.rendered = 0  # samples rendered so far
        self.clipped = 0  # output samples that had to be clipped to [-1, 1]
        self._lock = threading.Lock()
        self._departing = 0

    def _params(self, cues: EarCues, gain: float) -> np.ndarray:
        sr = self.sample_rate
        return np.array([cues.left * gain, cues.right * gain, cues.delay_left_s * sr, cues.delay_right_s * sr])

    def add(self, key: str, wave: np.ndarray, cues: EarCues, gain: float, *, item_id: str = "", offset: int = 0,
            fade_s: float = 0.0) -> None:
        """A new voice under ``key`` with its target cues; fades in over ``fade_s``. Replaces a voice of that key
        at once (use ``crossfade`` to replace it smoothly)."""
        wave = np.ascontiguousarray(wave, dtype=np.float32)
        if wave.ndim != 1 or wave.size == 0:
            raise ValueError(f"a voice needs a non-empty mono waveform, got shape {wave.shape}")
        p = self._params(cues, gain)
        n = max(1, int(round(fade_s * self.sample_rate)))
        env = _Ramp(np.zeros(1), np.ones(1), n, 0) if fade_s > 0 else _Ramp(np.ones(1), np.ones(1), 1, 1)
        voice = Voice(key, wave, item_id, int(offset) % wave.size, _Ramp(p, p, 1, 1), env)
        with self._lock:
            self.voices[key] = voice

    def crossfade(self, key: str, wave: np.ndarray, cues: EarCues, gain: float, *, item_id: str = "",
                  offset: int = 0, fade_s: float = 1.0) -> None:
        """Replace voice ``key`` by a new clip: the old one fades out while the new one fades in (equal power)."""
        with self._lock:
            old = self.voices.pop(key, None)
            if old is not None:
                self._departing += 1
                n = max(1, int(round(fade_s * self.sample_rate)))
                old.envelope = _Ramp(old.envelope.value().copy(), np.zeros(1), n, 0)
                self.voices[f"{key}~{self._departing}"] = old
        self.add(key, wave, cues, gain, item_id=item_id, offset=offset, fade_s=fade_s)

    def set_target(self, key: str, cues: EarCues, gain: float) -> None:
        """Move voice ``key`` towards new cues over the mixer's ramp (from wherever it is now)."""
        with self._lock:
            v = self.voices.get(key)
            if v is None:
                return
            v.params = _Ramp(v.params.value().copy(), self._params(cues, gain), self.ramp_n, 0)

    def fade_out(self, key: str, fade_s: float) -> None:
        """Fade voice ``key`` out; the mixer drops it once silent."""
        with self._lock:
            v = self.voices.get(key)
            if v is not None:
                n = max(1, int(round(fade_s * self.sample_rate)))
                v.envelope = _Ramp(v.envelope.value().copy(), np.zeros(1), n, 0)

    def voice_keys(self) -> list[str]:
        with self._lock:
            return list(self.voices)

    def render(self, n: int) -> np.ndarray:
        """The next ``n`` stereo samples, (n, 2) float32."""
        out = np.zeros((n, 2), dtype=np.float64)
        if n <= 0:
            return out.astype(np.float32)
        t = np.arange(n, dtype=np.float64)
        with self._lock:
            for key in list(self.voices):
                v = self.voices[key]
                self._render_voice(v, t, out)
                if v.silent_for_good:
                    del self.voices[key]
        out *= self.master
        over = np.abs(out) > 1.0
        if over.any():
            self.clipped += int(over.sum())
            np.clip(out, -1.0, 1.0, out=out)
        self.rendered += n
        return out.astype(np.float32)

    @staticmethod
    def _render_voice(v: Voice, t: np.ndarray, out: np.ndarray) -> None:
        n = t.size
        size = v.wave.size
        if v.params.done >= v.params.n and v.envelope.done >= v.envelope.n:
            Mixer._render_steady(v, n, out)
            return
        p = v.params.block(n)  # (n, 4) or broadcast (n, 4)
        env = np.sin(v.envelope.block(n)[:, 0] * (math.pi / 2.0))
        base = v.pos + t
        for ear in (0, 1):
            idx = base - p[:, 2 + ear]
            i0 = np.floor(idx)
            c = lagrange3(idx - i0)
            first = i0.astype(np.int64) - 1
            x = sum(c[k] * np.take(v.wave, first + k, mode="wrap") for k in range(4))
            out[:, ear] += x * (p[:, ear] * env)
        v.pos = int((v.pos + n) % size)

    @staticmethod
    def _render_steady(v: Voice, n: int, out: np.ndarray) -> None:
        """A voice whose gains, delays and envelope hold still: contiguous slices of the looped clip, no gathers."""
        size = v.wave.size
        v.params.done += n
        v.envelope.done += n
        p = v.params.end
        level = math.sin(float(v.envelope.end[0]) * math.pi / 2.0)
        if level * max(abs(p[0]), abs(p[1])) > 1e-6:
            for ear in (0, 1):
                start = v.pos - float(p[2 + ear])
                i0 = math.floor(start)
                frac = start - i0
                first = (i0 - 1) % size  # the 4-point interpolation reads one sample before and two after
                if first + n + 3 <= v.looped.size:
                    seg = v.looped[first:first + n + 3]
                else:  # a block longer than the loop's padding: index with wrap-around
                    seg = np.take(v.wave, np.arange(first, first + n + 3), mode="wrap")
                if frac:
                    c = lagrange3(frac)
                    x = c[0] * seg[:n] + c[1] * seg[1:n + 1] + c[2] * seg[2:n + 2] + c[3] * seg[3:n + 3]
                else:
                    x = seg[1:n + 1]
                out[:, ear] += x * (float(p[ear]) * level)
        v.pos = int((v.pos + n) % size)
