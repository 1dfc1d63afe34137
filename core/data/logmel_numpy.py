"""The log-mel front end in numpy alone: the device computes exactly what the model was trained on, without torch.

Definition (the paper's audio front end): STFT with a periodic Hann window of ``n_fft`` samples, hop ``hop_length``,
centred (the signal is reflect-padded by ``n_fft // 2`` on both sides, as ``torch.stft(center=True)`` does),
power spectrogram ``|X|^2``, a Slaney mel filterbank with Slaney area normalisation (what
``librosa.filters.mel(htk=False, norm='slaney')`` builds), then ``10 * log10(max(mel, amin))`` with no top_db clip.
A clip of ``n_samples`` gives ``1 + n_samples // hop_length`` frames: (1001, 64) at 32 kHz / 10 s / hop 320.

The torch twin (``core.data.audio_frontend.LogMel``) takes its filterbank and window from here, so both sides
share one set of numbers. Everything is computed in float64 and returned as float32.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

from contracts.errors import ConfigError
from core.config import AudioConfig

# Slaney's mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above (27 mels per factor 6.4).
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney mel of a frequency in Hz (the scale librosa uses with ``htk=False``)."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _F_SP
    log = _MIN_LOG_MEL + np.log(np.maximum(hz, 1e-300) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(hz >= _MIN_LOG_HZ, log, linear)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of ``hz_to_mel``."""
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * _F_SP
    log = _MIN_LOG_HZ * np.exp(_LOGSTEP * (mel - _MIN_LOG_MEL))
    return np.where(mel >= _MIN_LOG_MEL, log, linear)


def check_audio_config(cfg: AudioConfig) -> None:
    """Refuse front-end settings that cannot describe a spectrogram (a config mistake, not a data one)."""
    if cfg.sample_rate <= 0 or cfg.n_fft <= 1 or cfg.hop_length <= 0 or cfg.n_mels <= 0:
        raise ConfigError(f"audio config needs positive sample_rate, n_fft > 1, hop_length, n_mels; got {cfg}")
    if not 0.0 <= cfg.f_min < cfg.f_max <= cfg.sample_rate / 2:
        raise ConfigError(f"audio config needs 0 <= f_min < f_max <= sample_rate/2 ({cfg.sample_rate / 2:g} Hz); "
                          f"got f_min={cfg.f_min:g}, f_max={cfg.f_max:g}")
    if cfg.n_samples <= cfg.n_fft // 2:
        raise ConfigError(f"audio clip of {cfg.n_samples} samples is too short for n_fft={cfg.n_fft} "
                          "(centred STFT reflect-pads n_fft//2 samples)")


@functools.lru_cache(maxsize=16)
def _mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    n_bins = n_fft // 2 + 1
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_bins)
    # n_mels + 2 edges equally spaced in mel: filter i rises on [e_i, e_i+1] and falls on [e_i+1, e_i+2].
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    # Slaney normalisation: every triangle has unit area in Hz, so wide high bands do not dominate.
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    empty = np.flatnonzero(weights.max(axis=1) <= 0)
    if empty.size:
        warnings.warn(f"{empty.size} mel band(s) fall between FFT bins (n_fft={n_fft}, n_mels={n_mels}); "
                      "they are always empty", stacklevel=3)
    weights.setflags(write=False)
    return weights


def mel_filterbank(cfg: AudioConfig) -> np.ndarray:
    """(n_mels, n_fft//2 + 1) float64 Slaney filterbank, read-only (shared; copy before changing)."""
    check_audio_config(cfg)
    return _mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, float(cfg.f_min), float(cfg.f_max))


@functools.lru_cache(maxsize=16)
def _hann(n: int) -> np.ndarray:
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)
    w.setflags(write=False)
    return w


@functools.lru_cache(maxsize=16)
def _band_segments(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float):
    fb = _mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max)
    bins, weights, starts = [], [], []
    for row in fb:
        nz = np.flatnonzero(row)
        if nz.size == 0:  # an empty band still needs a segment: one zero-weight bin
            nz = np.array([0])
        starts.append(sum(len(b) for b in bins))
        bins.append(nz)
        weights.append(row[nz])
    return np.concatenate(bins), np.concatenate(weights), np.asarray(starts)


def mel_project(power: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """power (..., n_fft//2 + 1) -> mel (..., n_mels): the filterbank product, computed sparsely.

    Each bin feeds at most two triangles, so a gather and a segmented sum do the work of the dense matmul
    without BLAS, whose thread pool makes this small product slow and erratic on a busy 2-core machine.
    """
    check_audio_config(cfg)
    bins, weights, starts = _band_segments(cfg.sample_rate, cfg.n_fft, cfg.n_mels, float(cfg.f_min), float(cfg.f_max))
    return np.add.reduceat(power[..., bins] * weights, starts, axis=-1)


def hann_window(n_fft: int) -> np.ndarray:
    """Periodic Hann window (``torch.hann_window(n)`` / ``scipy.signal.get_window('hann', n)``), float64."""
    return _hann(int(n_fft))


def n_frames(n_samples: int, hop_length: int) -> int:
    """Frames of a centred STFT: one per hop, plus the frame centred on the last sample."""
    return 1 + n_samples // hop_length


def power_spectrogram(wave: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    """Centred (reflect-padded) STFT power, (..., frames, n_fft//2 + 1) float64."""
    x = np.asarray(wave, dtype=np.float64)
    pad = n_fft // 2
    if x.shape[-1] <= pad:
        raise ValueError(f"signal of {x.shape[-1]} samples is too short to reflect-pad by {pad}")
    widths = [(0, 0)] * (x.ndim - 1) + [(pad, pad)]
    padded = np.pad(x, widths, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=-1)[..., ::hop_length, :]
    spec = np.fft.rfft(frames * hann_window(n_fft), axis=-1)
    return spec.real**2 + spec.imag**2


def log_mel_numpy(wave: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """Log-mel (dB) of a wave (n,) -> (frames, n_mels), or a batch (B, n) -> (B, frames, n_mels); float32."""
    wave = np.asarray(wave)
    if wave.ndim not in (1, 2):
        raise ValueError(f"expected a wave of shape (n,) or (B, n), got {wave.shape}")
    power = power_spectrogram(wave, cfg.n_fft, cfg.hop_length)
    mel = mel_project(power, cfg)
    return (10.0 * np.log10(np.maximum(mel, cfg.amin))).astype(np.float32)
