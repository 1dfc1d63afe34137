"""The distillation objective: match the teacher's embeddings, its similarity structure, and the labels.

    L = w_cos * [ (1 - cos(s_img, t_img)) + (1 - cos(s_aud, t_aud)) ]                 (feature distillation)
      + w_aff * mean over pairs of 1/2 [ KL(P_t || P_s) rows + KL(P_t^T || P_s^T) columns ]   (affinity)
      + w_label * Sat2Sound's own contrastive loss on the student (core/losses.py)

Affinity distillation (TinyCLIP, MobileCLIP): for a pair (query side u, gallery side v) of a batch,
P = softmax over the batch of scale * u v^T; the student is pulled toward the teacher's distribution of
similarities, i.e. toward which other items of the batch the teacher finds close, not only toward its own point.
Pairs: image -> audio, image -> image caption, audio -> audio caption. Caption embeddings are the same for teacher
and student (copied frozen text path), so for the caption pairs only the query side differs. The scale of each pair
is the teacher's learned logit scale, used for both distributions (a fixed target temperature).

Why all three terms: cosine alone copies points but lets small errors reorder near neighbours, which is what
R@10% counts; affinity alone is blind to a global rotation-free drift; the label loss keeps the student honest
where the teacher is wrong (the teacher is far from perfect on retrieval).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from core.losses import sat2sound_loss

# affinity pair -> (query key, gallery key, teacher logit-scale name)
AFFINITY_PAIRS: dict[str, tuple[str, str, str]] = {
    "image_audio": ("image", "audio", "image_audio"),
    "image_imagecap": ("image", "image_caption", "image_imagecap"),
    "audio_audiocap": ("audio", "audio_caption", "audio_audiocap"),
}


@dataclass(frozen=True)
class DistillWeights:
    """Loss weights and the metadata schedule of a distillation run (recorded in the student's manifest).

    Chosen on the default world (teacher 8 epochs, student-default 12 epochs, validation split): label weight 0.1
    kept 95.4% of the teacher's I2A R@10% and 100.6% of its image->text R@10%; 1.0 kept 100.3% and 100.3%.
    With no label loss at all (cosine 10, on a 1000-sample subset) I2A retention was 84%: the teacher's own errors
    are worth correcting with the labels.
    """

    cosine: float = 5.0
    affinity: float = 1.0
    label: float = 1.0
    all_meta_prob: float = 0.5  # share of samples shown every metadata field; the rest get their cached subset

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def cosine_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - cos over the batch."""
    return (1.0 - F.cosine_similarity(student, teacher, dim=-1)).mean()


def affinity_kl(s_query: torch.Tensor, s_gallery: torch.Tensor, t_query: torch.Tensor, t_gallery: torch.Tensor,
                scale: float) -> torch.Tensor:
    """1/2 [KL(P_t || P_s) over rows + over columns] of the batch similarity distributions at ``scale``."""
    s = scale * F.normalize(s_query, dim=-1) @ F.normalize(s_gallery, dim=-1).t()
    with torch.no_grad():
        t = scale * F.normalize(t_query, dim=-1) @ F.normalize(t_gallery, dim=-1).t()
    rows = F.kl_div(F.log_softmax(s, dim=1), F.log_softmax(t, dim=1), log_target=True, reduction="batchmean")
    cols = F.kl_div(F.log_softmax(s.t(), dim=1), F.log_softmax(t.t(), dim=1), log_target=True,
                    reduction="batchmean")
    return 0.5 * (rows + cols)


def distill_loss(student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor], teacher_scales: dict[str, float],
                 student_logit_scale: torch.nn.ParameterDict, weights: DistillWeights,
                 alpha: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss and its detached parts.

    ``student``: image, audio (the student's), audio_caption, image_caption (the shared frozen text path);
    ``teacher``: the same four keys from the cached targets. All (B, d).
    """
    if student["image"].shape[0] < 2:
        raise ValueError("distillation batches need at least 2 samples")
    parts: dict[str, torch.Tensor] = {}
    total = torch.zeros((), dtype=student["image"].dtype, device=student["image"].device)
    if weights.cosine:
        parts["cos_image"] = cosine_distance(student["image"], teacher["image"])
        parts["cos_audio"] = cosine_distance(student["audio"], teacher["audio"])
        total = total + weights.cosine * (parts["cos_image"] + parts["cos_audio"])
    if weights.affinity:
        kls = []
        for name, (q, g, scale_name) in AFFINITY_PAIRS.items():
            parts[f"kl_{name}"] = affinity_kl(student[q], student[g], teacher[q], teacher[g],
                                              teacher_scales[scale_name])
            kls.append(parts[f"kl_{name}"])
        total = total + weights.affinity * torch.stack(kls).mean()
    if weights.label:
        label, _ = sat2sound_loss(student, student_logit_scale, alpha)
        parts["label"] = label
        total = total + weights.label * label
    logged = {k: v.detach() for k, v in parts.items()}
    logged["total"] = total.detach()
    return total, logged
