"""Audio tower: log-mel (B, frames, mels) -> frame-level tokens (B, T, width).

``build_audio_encoder`` picks the tower by ``AudioEncoderConfig.kind``: "transformer" (``AudioEncoder`` below) or
"htsat" (the published MGA-CLAP HTSAT, ``core.model.htsat.HTSATEncoder``). Both take (B, frames, mels) and have
``width`` and ``n_tokens``.

A patch embedding turns time_patch x freq_patch blocks of the spectrogram into tokens, then a transformer with a
1-D sin-cos time encoding. (The paper uses HTSAT from MGA-CLAP; no such weights ship offline, so the tower is
trained from scratch and sized per preset; the `paper` preset matches HTSAT's width and parameter budget.)
"""

from __future__ import annotations

import torch
from torch import nn

from contracts.errors import ConfigError
from core.config import AudioConfig, AudioEncoderConfig
from core.model.htsat import HTSATEncoder
from core.model.posenc import time_encoding
from core.model.transformer import Encoder


class AudioEncoder(nn.Module):
    def __init__(self, audio: AudioConfig, enc: AudioEncoderConfig):
        super().__init__()
        tp, fp = enc.time_patch, min(enc.freq_patch, audio.n_mels)
        if audio.n_mels % fp:
            raise ValueError(f"freq_patch {fp} must divide n_mels ({audio.n_mels})")
        # One strided conv over time_patch x freq_patch blocks (a ViT-style patch embedding): a single matmul in
        # every runtime, and on CPU far cheaper to train than a stack of small overlapping convs.
        self.stem = nn.Conv2d(1, enc.width, kernel_size=(tp, fp), stride=(tp, fp))
        self.n_time = audio.n_frames // tp
        self.n_freq = audio.n_mels // fp
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


def build_audio_encoder(audio: AudioConfig, enc: AudioEncoderConfig) -> nn.Module:
    """The audio tower ``enc.kind`` names; ConfigError for an unknown kind or an htsat whose width is not
    ``enc.htsat.width``."""
    if enc.kind == "transformer":
        return AudioEncoder(audio, enc)
    if enc.kind == "htsat":
        if enc.width != enc.htsat.width:
            raise ConfigError(f"audio encoder width {enc.width} must equal the htsat output width "
                              f"{enc.htsat.width} (embed_dim * 2**(stages - 1)) for kind 'htsat'")
        return HTSATEncoder(audio, enc)
    raise ConfigError(f"unknown audio encoder kind {enc.kind!r}; known kinds: htsat, transformer")
