"""The Sat2Sound training objective: symmetric InfoNCE with pseudo-positives over five modality pairs.

Per pair (u, v) with a learnable log logit scale s (clamped at log 100, as CLIP does, so the softmax cannot become
arbitrarily sharp):

    logits = exp(s) * U V^T                                     (U, V L2-normalised, (B, d))
    L_uv   = 1/2 [CE(logits, I) + CE(logits^T, I)]              (identity targets, both directions)
    L_uv^pseudo: the same with soft targets: in row i of a direction's logit matrix every j with
                 logit_ij >= logit_ii is a positive, targets uniform over those positives (row-normalised)
    L_uv^+ = L_uv + alpha * L_uv^pseudo                          (alpha = cfg.train.pseudo_alpha, 0.1)

Total = (L_image,audio + L_image,audiocap + L_audio,audiocap) / 3 + L_image,composed + L_image,imagecap,
with composed = normalise(norm(audio) + norm(audio_caption)) (paper Eq. 8-9).

Design notes (why, where the paper leaves room):
- Pseudo-positives are found per direction on that direction's own rows (row i of S for u->v, row j of S^T for
  v->u), so each query direction gets PCME++'s "anything at least as close as my match" rule. The authors' code
  derives both directions from the u->v rows and does not row-normalise (a multi-hot target in cross-entropy);
  the brief asks for row-normalised targets, which keeps the pseudo term a proper cross-entropy (its minimum is 0
  only for a uniform split among the positives) and bounds it like the identity term.
- The targets are built from detached logits: which items count as positives is a selection, not something the
  gradient should move.
- With DDP each rank computes the loss on its own batch (no all-gather of embeddings): the in-batch negatives are
  the rank's batch only. See core/train.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MAX_LOG_SCALE = math.log(100.0)

# pair name -> (first embedding key, second embedding key); the names are the model.logit_scale keys.
PAIRS: dict[str, tuple[str, str]] = {
    "image_audio": ("image", "audio"),
    "image_audiocap": ("image", "audio_caption"),
    "audio_audiocap": ("audio", "audio_caption"),
    "image_composed": ("image", "composed"),
    "image_imagecap": ("image", "image_caption"),
}
TRI_PAIRS: tuple[str, ...] = ("image_audio", "image_audiocap", "audio_audiocap")
REQUIRED_EMBEDDINGS: tuple[str, ...] = ("image", "audio", "audio_caption", "image_caption")


def normalise(x: torch.Tensor) -> torch.Tensor:
    """Rows to unit length (safe for zero rows)."""
    return F.normalize(x, dim=-1, eps=1e-12)


def composed_embedding(audio: torch.Tensor, audio_caption: torch.Tensor) -> torch.Tensor:
    """normalise(norm(audio) + norm(audio_caption)): an audio query that comes with its caption."""
    return normalise(normalise(audio) + normalise(audio_caption))


def pseudo_targets(logits: torch.Tensor) -> torch.Tensor:
    """Row-normalised soft targets: in row i, every j with logits[i, j] >= logits[i, i] is a positive.

    The diagonal is always a positive, so every row has at least one and sums to 1.
    """
    if logits.dim() != 2 or logits.shape[0] != logits.shape[1]:
        raise ValueError(f"pseudo targets need a square logit matrix, got shape {tuple(logits.shape)}")
    with torch.no_grad():
        diag = logits.diagonal().unsqueeze(1)
        positives = (logits >= diag).to(logits.dtype)
        return positives / positives.sum(dim=1, keepdim=True)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -sum_j targets_ij log softmax(logits_i)_j."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def clip_loss(logits: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE with identity targets: 1/2 [CE(logits, I) + CE(logits^T, I)]."""
    labels = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


def pseudo_clip_loss(logits: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE whose targets are each direction's pseudo-positives (see module docstring)."""
    lt = logits.t()
    return 0.5 * (soft_cross_entropy(logits, pseudo_targets(logits)) + soft_cross_entropy(lt, pseudo_targets(lt)))


def scaled_logits(u: torch.Tensor, v: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """exp(clamp(log_scale, max=log 100)) * norm(u) @ norm(v)^T."""
    if u.shape != v.shape or u.dim() != 2:
        raise ValueError(f"paired embeddings must share one (B, d) shape, got {tuple(u.shape)} and {tuple(v.shape)}")
    return log_scale.clamp(max=MAX_LOG_SCALE).exp() * (normalise(u) @ normalise(v).t())


def pair_loss(u: torch.Tensor, v: torch.Tensor, log_scale: torch.Tensor, alpha: float) -> torch.Tensor:
    """L_uv + alpha * L_uv^pseudo for one modality pair."""
    logits = scaled_logits(u, v, log_scale)
    loss = clip_loss(logits)
    if alpha:
        loss = loss + alpha * pseudo_clip_loss(logits)
    return loss


def sat2sound_loss(emb: dict[str, torch.Tensor], logit_scale: torch.nn.ParameterDict | dict[str, torch.Tensor],
                   alpha: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss and its detached parts (one per pair, plus "tri" and "total") for logging.

    ``emb`` holds (B, d) embeddings "image", "audio", "audio_caption", "image_caption" (normalised or not);
    ``logit_scale`` holds a log scale per PAIRS name.
    """
    missing = [k for k in REQUIRED_EMBEDDINGS if k not in emb]
    if missing:
        raise KeyError(f"embeddings missing for the loss: {', '.join(missing)}")
    missing_scales = [k for k in PAIRS if k not in logit_scale]
    if missing_scales:
        raise KeyError(f"logit scales missing for the loss: {', '.join(missing_scales)}")
    if emb["image"].shape[0] < 2:
        raise ValueError("a contrastive batch needs at least 2 samples")
    embs = dict(emb)
    embs["composed"] = composed_embedding(emb["audio"], emb["audio_caption"])
    parts: dict[str, torch.Tensor] = {}
    for name, (a, b) in PAIRS.items():
        parts[name] = pair_loss(embs[a], embs[b], logit_scale[name], alpha)
    tri = sum(parts[n] for n in TRI_PAIRS) / len(TRI_PAIRS)
    total = tri + parts["image_composed"] + parts["image_imagecap"]
    logged = {k: v.detach() for k, v in parts.items()}
    logged["tri"] = tri.detach()
    logged["total"] = total.detach()
    return total, logged
