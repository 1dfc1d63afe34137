"""The acoustic building blocks the sound sources are made of: shaped noise, envelopes, filters, tones, pulse
trains and event placement, all float32 numpy (scipy for the FFT and the filters).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import scipy.fft as sfft
from scipy import signal


@functools.lru_cache(maxsize=1)
def noise_bank() -> np.ndarray:
    """Four million samples of white Gaussian noise, drawn once per process from a fixed seed. Clips take random
    windows of it (the window start comes from the clip's rng), which is much cheaper than fresh draws."""
    bank = np.random.default_rng(0x5A75).standard_normal(1 << 22, dtype=np.float32)
    bank.setflags(write=False)
    return bank


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """n samples of unit white Gaussian noise: a window of the bank, or fresh draws when n is too long for it."""
    bank = noise_bank()
    if n > len(bank) // 2:
        return rng.standard_normal(n, dtype=np.float32)
    start = int(rng.integers(0, len(bank) - n))
    return bank[start:start + n].copy()


def shaped_noise(n: int, sr: int, rng: np.random.Generator, lo: float, hi: float, tilt: float = 0.0) -> np.ndarray:
    """Noise with a raised-cosine band lo..hi Hz and a spectral tilt (dB per octave above lo), RMS 1."""
    spec = sfft.rfft(white_noise(n, rng))
    f = np.fft.rfftfreq(n, 1.0 / sr).astype(np.float32)
    hi = min(hi, 0.48 * sr)
    lo = min(lo, 0.5 * hi)
    width_lo, width_hi = max(lo * 0.3, 5.0), max(hi * 0.15, 5.0)
    gain = np.clip((f - (lo - width_lo)) / width_lo, 0.0, 1.0) * np.clip(((hi + width_hi) - f) / width_hi, 0.0, 1.0)
    if tilt:
        gain = gain * (np.maximum(f, lo) / max(lo, 1.0)) ** (tilt / 6.02)
    x = sfft.irfft(spec * gain.astype(np.float32), n).astype(np.float32)
    return x / (np.sqrt(np.mean(x * x)) + 1e-9)


def smooth_env(n: int, sr: int, rng: np.random.Generator, rate_hz: float, depth: float, floor: float = 0.0
               ) -> np.ndarray:
    """A slowly varying positive envelope in [floor, 1]: random knots every 1/rate s, smoothstep-interpolated."""
    knots = max(int(n / sr * rate_hz) + 1, 1)
    vals = (1.0 - depth * rng.random(knots + 1)).astype(np.float32)
    pos = np.arange(n, dtype=np.float32) * np.float32(knots / n)
    i = pos.astype(np.int64)
    f = pos - i
    f = f * f * (3.0 - 2.0 * f)
    env = vals[i] + (vals[i + 1] - vals[i]) * f
    return np.maximum(env, np.float32(floor))


def gate_env(n: int, sr: int, gate: Callable[[np.ndarray], np.ndarray], smooth_s: float = 0.004,
             rate: int = 1000) -> np.ndarray:
    """An on/off envelope evaluated at a low control rate (``gate(t)`` -> bool), softened, then stretched to n."""
    m = int(n / sr * rate) + 2
    t = np.arange(m) / rate
    g = gate(t).astype(np.float32)
    k = max(int(smooth_s * rate), 1)
    if k > 1:
        g = np.convolve(g, np.ones(k, np.float32) / k, mode="same")
    return np.interp(np.arange(n, dtype=np.float32) * np.float32(rate / sr), np.arange(m, dtype=np.float32),
                     g).astype(np.float32)


def bandpass(x: np.ndarray, sr: int, lo: float, hi: float, order: int = 2) -> np.ndarray:
    """Butterworth band-pass lo..hi Hz (kept below Nyquist)."""
    nyq = 0.5 * sr
    hi = min(hi, 0.95 * nyq)
    lo = min(max(lo, 10.0), 0.9 * hi)
    sos = signal.butter(order, [lo / nyq, hi / nyq], btype="band", output="sos")
    return signal.sosfilt(sos, x).astype(np.float32)


def lowpass(x: np.ndarray, sr: int, fc: float, order: int = 2) -> np.ndarray:
    """Butterworth low-pass at fc Hz (at most 0.45 of the sample rate)."""
    sos = signal.butter(order, min(fc, 0.45 * sr) / (0.5 * sr), btype="low", output="sos")
    return signal.sosfilt(sos, x).astype(np.float32)


def tone(freq: np.ndarray | float, n: int, sr: int, phase0: float = 0.0) -> np.ndarray:
    """Sine following an instantaneous-frequency track (Hz), phase-continuous."""
    if np.ndim(freq) == 0:
        phase = np.arange(n, dtype=np.float64) * (2.0 * np.pi * float(freq) / sr) + phase0
    else:
        phase = np.cumsum(np.asarray(freq, np.float64)) * (2.0 * np.pi / sr) + phase0
    return np.sin(np.mod(phase, 2.0 * np.pi).astype(np.float32))


def pulses(f0: np.ndarray, sr: int) -> np.ndarray:
    """A unit pulse at every period of a (time-varying) f0 track: the glottal/striking source of voices and engines."""
    phase = np.cumsum(np.asarray(f0, np.float64)) / sr
    out = np.zeros(len(phase), np.float32)
    out[1:][np.floor(phase[1:]) > np.floor(phase[:-1])] = 1.0
    return out


def window(n: int, attack: float = 0.1, release: float = 0.3) -> np.ndarray:
    """Attack/release envelope over n samples (fractions of n), raised-cosine edges."""
    env = np.ones(n, np.float32)
    a = max(int(n * attack), 1)
    r = max(int(n * release), 1)
    env[:a] = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, a))
    env[n - r:] *= 0.5 + 0.5 * np.cos(np.linspace(0, np.pi, r))
    return env


def add_event(out: np.ndarray, event: np.ndarray, start: int) -> None:
    """Add an event into out at sample ``start`` (clipped at both ends)."""
    n = len(out)
    if start >= n or start + len(event) <= 0:
        return
    s0 = max(start, 0)
    e0 = s0 - start
    m = min(len(event) - e0, n - s0)
    out[s0:s0 + m] += event[e0:e0 + m]


def onsets(n: int, sr: int, rng: np.random.Generator, rate: float, min_gap: float = 0.0) -> np.ndarray:
    """Poisson event start times (samples) at ``rate`` per second, at least one, optionally with a minimum gap."""
    count = max(1, rng.poisson(rate * n / sr))
    times = np.sort(rng.random(count)) * n
    if min_gap > 0 and count > 1:
        keep = np.concatenate([[True], np.diff(times) > min_gap * sr])
        times = times[keep]
    return times.astype(np.int64)


def fmax(sr: int) -> float:
    """The highest frequency a source may put a tone at (0.45 of the sample rate)."""
    return 0.45 * sr

