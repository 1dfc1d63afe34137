"""The optimiser and learning-rate schedule that teacher training and distillation share.

- AdamW (lr cfg.train.lr, betas cfg.train.betas, weight decay cfg.train.weight_decay) on matrices only: biases,
  norm gains, the learnable logit scales and the codebook get no weight decay. The codebook is excluded because its
  norm sets how sharp the code scores (and so the sparsemax) are; decaying it would flatten the concept weights
  rather than regularise.
- Learning rate: linear warm-up, then cosine annealing with warm restarts every ``cycle_steps``. It is a pure
  function of the global step (no scheduler object to serialise), so a resumed run gets exactly the same rates.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from core.config import Sat2SoundConfig


def lr_at(step: int, *, base_lr: float, warmup_steps: int, cycle_steps: int, min_lr: float = 0.0) -> float:
    """Linear warm-up to base_lr over warmup_steps, then cosine annealing with warm restarts every cycle_steps."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    t = (step - max(warmup_steps, 0)) % max(cycle_steps, 1)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * t / max(cycle_steps, 1)))


def no_decay(name: str, param: torch.nn.Parameter) -> bool:
    """Biases, norm gains (all 1-D/0-D), logit scales and the codebook are not weight-decayed (see module doc)."""
    return param.ndim < 2 or "logit_scale" in name or name.endswith("codebook")


def make_optimizer(model: torch.nn.Module, cfg: Sat2SoundConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters: one group with weight decay (matrices), one without (the rest)."""
    decay, keep = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (keep if no_decay(name, p) else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.train.weight_decay}, {"params": keep, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.train.lr, betas=tuple(cfg.train.betas))
