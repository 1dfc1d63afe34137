"""The audio front end as an exportable torch module, plus the torch-free pieces it shares with the device.

``LogMel`` computes the same log-mel as ``log_mel_numpy`` (core/data/logmel_numpy.py) from ops every export
target runs: the STFT is a strided conv1d whose fixed kernels are the Hann-windowed real and imaginary DFT rows,
and the centring is an explicit reflect pad built from slices and a constant-index gather. ``torch.stft`` is
avoided on purpose: it does not convert to TFLite. The kernels and the mel matrix are buffers, so an exported
audio tower carries its own front end.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from core.config import AudioConfig
from core.data.audio_io import crop_or_pad, load_audio, load_clip, resample
from core.data.logmel_numpy import check_audio_config, hann_window, log_mel_numpy, mel_filterbank, n_frames

__all__ = [
    "LogMel", "crop_or_pad", "dft_kernels", "load_audio", "load_clip", "log_mel_numpy", "mel_filterbank",
    "n_frames", "resample",
]


def dft_kernels(n_fft: int) -> np.ndarray:
    """(2K, 1, n_fft) float64: rows 0..K-1 are window*cos, rows K..2K-1 are -window*sin (K = n_fft//2 + 1)."""
    n = np.arange(n_fft)
    k = np.arange(n_fft // 2 + 1)
    # Reduce k*n modulo n_fft in integers first: the angle stays exact for large n_fft.
    angle = 2.0 * np.pi * ((k[:, None] * n[None, :]) % n_fft) / n_fft
    window = hann_window(n_fft)
    real = window * np.cos(angle)
    imag = -window * np.sin(angle)
    return np.concatenate([real, imag], axis=0)[:, None, :]


class LogMel(nn.Module):
    """Wave (B, n_samples) float -> log-mel (B, frames, n_mels) in dB, the torch twin of ``log_mel_numpy``.

    In float32 it agrees with the float64 numpy twin to ~1e-5 dB on broadband audio and in every band within
    ~40 dB of a frame's peak; bands 80-100 dB below a pure tone differ by up to ~0.05 dB, the float32 rounding
    floor (``torch.stft`` in float32 shows the same). Built with ``dtype=torch.float64`` it agrees to ~1e-5 dB
    everywhere.
    """

    def __init__(self, cfg: AudioConfig, dtype: torch.dtype = torch.float32):
        super().__init__()
        check_audio_config(cfg)
        self.n_fft, self.hop_length, self.n_mels = cfg.n_fft, cfg.hop_length, cfg.n_mels
        self.n_bins = cfg.n_fft // 2 + 1
        self.pad = cfg.n_fft // 2
        self.amin = float(cfg.amin)
        self.register_buffer("kernels", torch.from_numpy(dft_kernels(cfg.n_fft)).to(dtype),
                             persistent=False)
        self.register_buffer("mel_matrix", torch.from_numpy(np.ascontiguousarray(mel_filterbank(cfg).T)).to(dtype),
                             persistent=False)
        # Reversal indices for the reflect pad: gathering with a constant index exports everywhere (unlike flip).
        self.register_buffer("reverse", torch.arange(self.pad - 1, -1, -1, dtype=torch.long), persistent=False)

    def reflect_pad(self, wave: torch.Tensor) -> torch.Tensor:
        """Pad by n_fft//2 on both sides, mirroring without repeating the edge sample (numpy/torch 'reflect')."""
        p = self.pad
        left = wave[:, 1: p + 1].index_select(1, self.reverse)
        right = wave[:, -p - 1: -1].index_select(1, self.reverse)
        return torch.cat([left, wave, right], dim=1)

    def power(self, wave: torch.Tensor) -> torch.Tensor:
        """STFT power (B, n_bins, frames)."""
        spec = F.conv1d(self.reflect_pad(wave).unsqueeze(1), self.kernels, stride=self.hop_length)
        real, imag = spec[:, : self.n_bins], spec[:, self.n_bins:]
        return real * real + imag * imag

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        mel = torch.matmul(self.power(wave).transpose(1, 2), self.mel_matrix)
        # 10*log10(x) as ln(x) * (10/ln 10): Log is in every target's op set.
        return torch.log(torch.clamp(mel, min=self.amin)) * (10.0 / math.log(10.0))

    def extra_repr(self) -> str:
        return f"n_fft={self.n_fft}, hop_length={self.hop_length}, n_mels={self.n_mels}, amin={self.amin:g}"
