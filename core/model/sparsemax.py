"""Sparsemax without sort or top-k, so the graph exports to ONNX, Core ML and TFLite alike.

sparsemax(z) = relu(z - tau) with tau chosen so the result sums to 1 (Martins & Astudillo, 2016). The usual
implementation sorts z to find tau; TFLite cannot run sort (PLATFORM.md). Here tau is bracketed by bisection:
f(t) = sum(relu(z - t)) is decreasing, f(max z - 1) >= 1 and f(max z) = 0. After a fixed number of halvings the
support S = {z > t_lo} is known, and tau is recomputed exactly from it, tau = (sum_S z - 1) / |S|. That last step is
differentiable, so autograd yields the true sparsemax Jacobian (diag(s) - s s^T / |S|) with no custom backward.
"""

from __future__ import annotations

import torch


def sparsemax(z: torch.Tensor, dim: int = -1, n_iter: int = 30) -> torch.Tensor:
    """Sparsemax along ``dim``; only max, comparisons, sums and relu (no sort/topk)."""
    if dim != -1 and dim != z.dim() - 1:
        z = z.transpose(dim, -1)
        return sparsemax(z, -1, n_iter).transpose(dim, -1)
    z_max = z.max(dim=-1, keepdim=True).values
    with torch.no_grad():
        lo = z_max - 1.0
        hi = z_max
        for _ in range(n_iter):
            mid = (lo + hi) * 0.5
            mass = torch.relu(z - mid).sum(dim=-1, keepdim=True)
            above = mass >= 1.0
            lo = torch.where(above, mid, lo)
            hi = torch.where(above, hi, mid)
        support = (z > lo).to(z.dtype)
    k = support.sum(dim=-1, keepdim=True).clamp_min(1.0)
    tau = ((z * support).sum(dim=-1, keepdim=True) - 1.0) / k
    return torch.relu(z - tau)


def sparsemax_reference(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """The textbook sort-based sparsemax, for tests only."""
    z = z.transpose(dim, -1)
    zs, _ = torch.sort(z, dim=-1, descending=True)
    k = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype, device=z.device)
    cssv = zs.cumsum(dim=-1) - 1.0
    cond = (zs - cssv / k) > 0
    k_z = cond.to(z.dtype).sum(dim=-1, keepdim=True)
    tau = cssv.gather(-1, k_z.long() - 1) / k_z
    return torch.relu(z - tau).transpose(dim, -1)
