"""Metadata early fusion: five tokens (lat/lon, month, hour, audio source, caption source) for the image tokens.

Encodings as the paper's public code: lat/lon -> sin/cos of pi*lat/90 and pi*lon/180; month -> 2*pi*m/12;
hour -> 2*pi*h/23 (the public code divides by 23). Continuous fields go through Linear(k, 64)-GELU-Linear(64, d);
sources are embeddings. A missing field, or one dropped in training, is zeroed and padding-masked.
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
    def __init__(self, d: int, hidden: int, drop_prob: float = 0.5):
        super().__init__()
        self.latlon = _mlp(4, hidden, d)
        self.month = _mlp(2, hidden, d)
        self.hour = _mlp(2, hidden, d)
        self.audio_source = nn.Embedding(len(AUDIO_SOURCES), d)
        self.caption_source = nn.Embedding(len(CAPTION_SOURCES), d)
        self.drop_prob = drop_prob

    def forward(self, meta: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> tokens (B, 5, d) and pad mask (B, 5), True where the field is missing or dropped."""
        lat = meta["lat"].float() * (math.pi / 90.0)
        lon = meta["lon"].float() * (math.pi / 180.0)
        month = meta["month"].float() * (2 * math.pi / 12.0)
        hour = meta["hour"].float() * (2 * math.pi / 23.0)
        latlon = torch.stack([torch.sin(lat), torch.cos(lat), torch.sin(lon), torch.cos(lon)], dim=-1)
        tokens = torch.stack(
            [
                self.latlon(latlon),
                self.month(torch.stack([torch.sin(month), torch.cos(month)], dim=-1)),
                self.hour(torch.stack([torch.sin(hour), torch.cos(hour)], dim=-1)),
                self.audio_source(meta["audio_source"].long().clamp(0, len(AUDIO_SOURCES) - 1)),
                self.caption_source(meta["caption_source"].long().clamp(0, len(CAPTION_SOURCES) - 1)),
            ],
            dim=1,
        )
        keep = meta["meta_mask"].float()
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
