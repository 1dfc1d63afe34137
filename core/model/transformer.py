"""A plain transformer encoder built from matmul/softmax/layernorm/GELU only, pre-norm by default.

Written out instead of nn.MultiheadAttention so every export target (ONNX, Core ML, TFLite) sees the same simple ops,
with an optional key padding mask (True = padded) applied as a large negative bias. ``norm_first=False`` gives the
post-norm block of ``torch.nn.TransformerEncoderLayer`` (the published model's metadata fusion), with the same
parameter layout: its ``in_proj`` is this ``qkv`` (q, k, v stacked), ``out_proj`` is ``proj``, ``linear1/2`` are
``mlp.0/2``.
"""

from __future__ import annotations

import torch
from torch import nn

MASK_BIAS = -1e4  # large enough to zero a softmax weight, small enough for float16


class Attention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.head_dim = width // heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, w = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = (q @ k.transpose(-2, -1)) * (self.head_dim ** -0.5)
        if pad_mask is not None:
            att = att + pad_mask.to(att.dtype).reshape(b, 1, 1, n) * MASK_BIAS
        att = att.softmax(dim=-1)
        out = (att @ v).transpose(1, 2).reshape(b, n, w)
        return self.proj(out)


class Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, *, norm_first: bool = True,
                 hidden: int = 0, eps: float = 1e-5):
        super().__init__()
        self.norm_first = norm_first
        self.norm1 = nn.LayerNorm(width, eps=eps)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=eps)
        hidden = hidden or int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.norm_first:
            x = x + self.attn(self.norm1(x), pad_mask)
            return x + self.mlp(self.norm2(x))
        x = self.norm1(x + self.attn(x, pad_mask))
        return self.norm2(x + self.mlp(x))


class Encoder(nn.Module):
    """``depth`` blocks; no final norm (the paper removes the ViT's final norm and head)."""

    def __init__(self, width: int, depth: int, heads: int, mlp_ratio: float = 4.0, *, norm_first: bool = True,
                 hidden: int = 0, eps: float = 1e-5):
        super().__init__()
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio, norm_first=norm_first, hidden=hidden, eps=eps)
                                    for _ in range(depth))

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, pad_mask)
        return x
