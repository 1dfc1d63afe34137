"""Sin-cos positional encodings: the 2-D grid scaled by ground resolution (Scale-MAE's GSD encoding) and 1-D time."""

from __future__ import annotations

import torch


def _sincos(pos: torch.Tensor, dim: int) -> torch.Tensor:
    """pos (..., N) -> (..., N, dim) with dim/2 frequencies omega_k = 1 / 10000^(k / (dim/2))."""
    half = dim // 2
    omega = torch.arange(half, dtype=torch.float32, device=pos.device) / half
    omega = 1.0 / (10000.0 ** omega)
    angles = pos.unsqueeze(-1) * omega
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


def gsd_grid_encoding(grid: int, dim: int, scale: torch.Tensor, order: str = "yx") -> torch.Tensor:
    """2-D sin-cos encoding of a grid x grid patch layout, coordinates multiplied by ``scale`` (B,) = zoom x GSD.

    Rebuilt every forward, as the paper does: the same patch index stands for more ground at a higher zoom, so the
    encoder is told how far apart its patches are on the ground. Returns (B, grid*grid, dim), row-major. ``order``
    says which half comes first: the row (y) encoding here, the column (x) encoding in the published model.
    """
    if dim % 4:
        raise ValueError(f"width {dim} must be divisible by 4 for the 2-D sin-cos encoding")
    coords = torch.arange(grid, dtype=torch.float32, device=scale.device)
    yy = coords.repeat_interleave(grid)  # row index of each patch
    xx = coords.repeat(grid)  # column index
    s = scale.to(torch.float32).reshape(-1, 1)
    emb_y = _sincos(yy.unsqueeze(0) * s, dim // 2)
    emb_x = _sincos(xx.unsqueeze(0) * s, dim // 2)
    if order not in ("yx", "xy"):
        raise ValueError(f"order must be 'yx' or 'xy', got {order!r}")
    return torch.cat([emb_y, emb_x] if order == "yx" else [emb_x, emb_y], dim=-1)


def time_encoding(n: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """1-D sin-cos encoding of n token positions -> (n, dim)."""
    return _sincos(torch.arange(n, dtype=torch.float32, device=device), dim)
