"""Metadata early fusion: five tokens (lat/lon, month, hour, audio source, caption source) for the image tokens.

Encodings as the paper's public code: lat/lon -> sin/cos of pi*lat/90 and pi*lon/180; month -> 2*pi*m/12;
hour -> 2*pi*h/23 (the public code divides by 23). Continuous fields go through Linear(k, 64)-GELU-Linear(64, d);
sources are embeddings. A missing field, or one dropped in training, is zeroed and padding-masked. ``fields`` picks
which tokens exist (the published SoundingEarth models have no audio-source token); the order stays META_FIELDS'.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from contracts.schema import AUDIO_SOURCES, CAPTION_SOURCES, META_FIELDS

N_META = len(META_FIELDS)


def _mlp(k: int, hidden: int, d: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(k, hidden), nn.GELU(), nn.Linear(hidden, d))


class MetadataTokens(nn.Module):
    def __init__(self, d: int, hidden: int, drop_prob: float = 0.5, fields: tuple[str, ...] = META_FIELDS):
        super().__init__()
        unknown = sorted(set(fields) - set(META_FIELDS))
        if unknown or not fields:
            raise ValueError(f"metadata fields must be a non-empty subset of {META_FIELDS}, got {fields}")
        self.fields = tuple(f for f in META_FIELDS if f in fields)
        self.columns = [META_FIELDS.index(f) for f in self.fields]  # which meta_mask columns are read
        makers = {"latlon": lambda: _mlp(4, hidden, d), "month": lambda: _mlp(2, hidden, d),
                  "hour": lambda: _mlp(2, hidden, d), "audio_source": lambda: nn.Embedding(len(AUDIO_SOURCES), d),
                  "caption_source": lambda: nn.Embedding(len(CAPTION_SOURCES), d)}
        for name in self.fields:
            self.add_module(name, makers[name]())
        self.drop_prob = drop_prob

    def _token(self, name: str, meta: dict[str, torch.Tensor]) -> torch.Tensor:
        if name == "latlon":
            lat = meta["lat"].float() * (math.pi / 90.0)
            lon = meta["lon"].float() * (math.pi / 180.0)
            return self.latlon(torch.stack([torch.sin(lat), torch.cos(lat), torch.sin(lon), torch.cos(lon)], dim=-1))
        if name in ("month", "hour"):
            angle = meta[name].float() * (2 * math.pi / (12.0 if name == "month" else 23.0))
            return getattr(self, name)(torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1))
        n = len(AUDIO_SOURCES) if name == "audio_source" else len(CAPTION_SOURCES)
        return getattr(self, name)(meta[name].long().clamp(0, n - 1))

    def forward(self, meta: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> tokens (B, F, d) and pad mask (B, F), True where the field is missing or dropped (F fields)."""
        tokens = torch.stack([self._token(name, meta) for name in self.fields], dim=1)
        keep = meta["meta_mask"].float()
        if len(self.fields) != keep.shape[1]:
            keep = keep[:, self.columns]
        if self.training and self.drop_prob > 0:
            keep = keep * self._drop_half(keep)
        tokens = tokens * keep.unsqueeze(-1)
        return tokens, keep < 0.5

    def _drop_half(self, keep: torch.Tensor) -> torch.Tensor:
        """For each field independently, drop it for a random drop_prob share of the batch (exactly, not in mean)."""
        b, f = keep.shape
        n_drop = int(round(self.drop_prob * b))
        ranks = torch.rand(b, f, device=keep.device).argsort(dim=0).argsort(dim=0)
        return (ranks >= n_drop).to(keep.dtype)
