"""The shared codebook of soundscape concepts (FDT-style) and the per-modality query maps.

scores = tokens @ C^T / sqrt(d) (B,T,M), padded tokens score 0; max over tokens -> (B,M); divide by the fixed
temperature; sparsemax over the M codes -> weights w; embedding f = w @ C. The raw scores are returned so grounding
can read, for a word's best code, that code's score on every image patch. In training the max over tokens takes a
backward through each code's winning token only (``core.model.token_max``): the same gradients in less time.

The ``global`` head is the baseline the paper compares against (GeoCLAP/PSM style): the same query-mapped tokens,
mean-pooled, no codebook.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from core.config import CodebookConfig
from core.model.sparsemax import sparsemax
from core.model.token_max import dense_token_scores, token_max


@dataclass
class Encoded:
    """One modality's output. ``embedding`` is L2-normalised; ``raw`` is not."""

    embedding: torch.Tensor
    raw: torch.Tensor
    scores: torch.Tensor | None = None  # (B,T,M) raw token-code scores (codebook head only)
    weights: torch.Tensor | None = None  # (B,M) sparsemax weights (codebook head only)
    token_mask: torch.Tensor | None = None  # (B,T) True = padded


def query_map(in_dim: int, d: int) -> nn.Sequential:
    """LayerNorm -> Linear(in, d) -> GELU -> LayerNorm -> Linear(d, d), one per modality (captions share one)."""
    return nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, d), nn.GELU(), nn.LayerNorm(d), nn.Linear(d, d))


def _keep(pad_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return None if pad_mask is None else (~pad_mask).to(dtype)


class CodebookHead(nn.Module):
    def __init__(self, cfg: CodebookConfig):
        super().__init__()
        self.kind = cfg.head
        self.dim = cfg.dim
        self.temperature = cfg.temperature
        if cfg.head == "codebook":
            self.codebook = nn.Parameter(torch.randn(cfg.size, cfg.dim))
        elif cfg.head != "global":
            raise ValueError(f"unknown head {cfg.head!r}; expected 'codebook' or 'global'")

    def token_scores(self, tokens: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        return dense_token_scores(tokens, self.codebook, _keep(pad_mask, tokens.dtype), self.dim ** -0.5)

    def forward(self, tokens: torch.Tensor, pad_mask: torch.Tensor | None = None) -> Encoded:
        if self.kind == "global":
            if pad_mask is None:
                pooled = tokens.mean(dim=1)
            else:
                keep = (~pad_mask).unsqueeze(-1).to(tokens.dtype)
                pooled = (tokens * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1.0)
            return Encoded(nn.functional.normalize(pooled, dim=-1), pooled, token_mask=pad_mask)
        if self.training and torch.is_grad_enabled():  # same values, a backward through the winning tokens only
            pooled, scores = token_max(tokens, self.codebook, _keep(pad_mask, tokens.dtype), self.dim ** -0.5)
        else:  # evaluation and export: plain ops
            scores = self.token_scores(tokens, pad_mask)
            pooled = scores.max(dim=1).values
        weights = sparsemax(pooled / self.temperature, dim=-1)
        raw = weights @ self.codebook
        return Encoded(nn.functional.normalize(raw, dim=-1), raw, scores, weights, pad_mask)
