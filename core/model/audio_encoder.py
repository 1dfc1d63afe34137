"""Audio tower: log-mel (B, frames, mels) -> frame-level tokens (B, T, width).

A small conv stem turns time_patch x freq_patch blocks of the spectrogram into tokens, then a transformer with a
1-D sin-cos time encoding. (The paper uses HTSAT from MGA-CLAP; no such weights ship offline, so the tower is
trained from scratch and sized per preset; the `paper` preset matches HTSAT's width and parameter budget.)
"""

from __future__ import annotations

import torch
from torch import nn

from core.config import AudioConfig, AudioEncoderConfig
from core.model.posenc import time_encoding
from core.model.transformer import Encoder


class AudioEncoder(nn.Module):
    def __init__(self, audio: AudioConfig, enc: AudioEncoderConfig):
        super().__init__()
        tp, fp = enc.time_patch, min(enc.freq_patch, audio.n_mels)
        if tp % 4 or fp % 4 or audio.n_mels % fp:
            raise ValueError(f"time_patch {tp} and freq_patch {fp} must be multiples of 4 and freq_patch must divide "
                             f"n_mels ({audio.n_mels})")
        # two stride-2 3x3 convs, then one conv over the rest of the patch: cheap, and local detail is kept
        self.stem = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(32, 64, kernel_size=3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(64, enc.width, kernel_size=(tp // 4, fp // 4), stride=(tp // 4, fp // 4)),
        )
        def after_stem(n: int, patch: int) -> int:
            for _ in range(2):  # the two stride-2, padding-1 convs
                n = (n - 1) // 2 + 1
            return n // (patch // 4)

        self.n_time = after_stem(audio.n_frames, tp)
        self.n_freq = after_stem(audio.n_mels, fp)
        self.width = enc.width
        self.input_norm = nn.BatchNorm2d(1)  # per-dataset level normalisation of the log-mel, learned
        self.encoder = Encoder(enc.width, enc.depth, enc.heads, enc.mlp_ratio)
        self.norm = nn.LayerNorm(enc.width)

    @property
    def n_tokens(self) -> int:
        return self.n_time * self.n_freq

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.input_norm(mel.unsqueeze(1))  # (B,1,F,M)
        x = self.stem(x)  # (B,W,T,Fq)
        b, w, t, f = x.shape
        x = x.permute(0, 2, 3, 1).reshape(b, t * f, w)
        pos = time_encoding(t, w, x.device).repeat_interleave(f, dim=0)
        return self.norm(self.encoder(x + pos))
