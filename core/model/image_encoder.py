"""Image tower: a ViT on square patches with the GSD positional encoding, then an MLP projector to the codebook width.

As in the paper (SatMAE ViT with CLS token, head and final norm removed) every patch token is kept: grounding needs
them. The projector maps the ViT width to d (paper: 768 -> 1024 -> 1024).
"""

from __future__ import annotations

import torch
from torch import nn

from core.config import ImageConfig, ImageEncoderConfig
from core.model.posenc import gsd_grid_encoding
from core.model.transformer import Encoder


class ImageEncoder(nn.Module):
    def __init__(self, image: ImageConfig, enc: ImageEncoderConfig, out_dim: int):
        super().__init__()
        if image.image_size % image.patch_size:
            raise ValueError(f"image size {image.image_size} is not a multiple of patch size {image.patch_size}")
        self.grid = image.grid
        self.width = enc.width
        self.patch_embed = nn.Conv2d(3, enc.width, kernel_size=image.patch_size, stride=image.patch_size)
        self.pos_order = enc.pos_order
        self.encoder = Encoder(enc.width, enc.depth, enc.heads, enc.mlp_ratio, eps=enc.ln_eps)
        self.projector = nn.Sequential(
            nn.Linear(enc.width, enc.projector_hidden), nn.GELU(), nn.Linear(enc.projector_hidden, out_dim)
        )

    def forward(self, image: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """image (B,3,S,S), scale (B,) = zoom x GSD -> patch tokens (B, grid*grid, out_dim)."""
        x = self.patch_embed(image).flatten(2).transpose(1, 2)
        x = x + gsd_grid_encoding(self.grid, self.width, scale, self.pos_order)
        return self.projector(self.encoder(x))
