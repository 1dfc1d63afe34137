"""A student is a Sat2Sound with a smaller preset that lives in its teacher's embedding space by construction.

The student is built from its preset, then takes from the teacher:
- the codebook, frozen: an embedding is a sparse mix of codes, so with the same codes the student's embeddings are
  points of the teacher's space and a gallery embedded once by the teacher serves the student;
- the text query map, frozen: with the same frozen MiniLM, the same query map and the same codebook, the student's
  text tower IS the teacher's (caption embeddings made by one serve the other, exactly);
- the audio input normalisation (the dataset's log-mel level statistics), frozen; an HTSAT teacher normalises each
  mel bin (``bn0``), so the student's single level is pooled from those 64 bins' statistics;
- as a starting point only (trained further): the metadata token encoders and the image query map, whose shapes
  do not depend on the tower widths, and the logit scales.

What must agree for that to hold is checked before anything is built (``check_teacher_fits``); a teacher of another
preset is refused with the fields that differ.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from contracts.errors import CheckpointError
from core.config import Sat2SoundConfig, teacher_preset_of
from core.model import Sat2Sound, build_model

# The audio input normalisation is the teacher's per-dataset level statistics: taken as is, frozen (eval mode).
FROZEN_PREFIXES: tuple[str, ...] = ("head.", "text_query.", "audio_encoder.input_norm.")
INHERITED_PREFIXES: tuple[str, ...] = ("metadata.", "image_query.", "logit_scale.")


def _must_match(teacher: Sat2SoundConfig, student: Sat2SoundConfig) -> dict[str, tuple[Any, Any]]:
    """(teacher value, student value) of every setting the two must share."""
    t, s = teacher, student
    return {
        "codebook head": (t.model.codebook.head, s.model.codebook.head),
        "codebook size M": (t.model.codebook.size, s.model.codebook.size),
        "codebook dim d": (t.model.codebook.dim, s.model.codebook.dim),
        "codebook temperature": (t.model.codebook.temperature, s.model.codebook.temperature),
        "text backbone": (t.model.text.backbone, s.model.text.backbone),
        "text max tokens": (t.model.text.max_tokens, s.model.text.max_tokens),
        "text width": (t.model.text.width, s.model.text.width),
        "metadata fusion": (t.model.fusion.use_metadata, s.model.fusion.use_metadata),
        "metadata hidden width": (t.model.fusion.meta_hidden, s.model.fusion.meta_hidden),
        "imagery": (t.image.imagery, s.image.imagery),
        "zooms": (tuple(t.image.zooms), tuple(s.image.zooms)),
        "audio front end": (t.audio, s.audio),
    }


def check_teacher_fits(teacher_cfg: Sat2SoundConfig, student_cfg: Sat2SoundConfig, *,
                       teacher_manifest: dict[str, Any] | None = None, text_fingerprint: str | None = None,
                       teacher_path: object = "teacher") -> list[str]:
    """Raise CheckpointError when the teacher cannot be distilled into this student preset; returns notes.

    Structural: codebook (head kind, M, d, temperature), text backbone and its token limit, metadata fusion,
    imagery, zooms and the audio front end must agree. The text backbone's fingerprint recorded in the teacher's
    manifest must match the installed one (the teacher's captions would otherwise land elsewhere). A teacher
    whose preset name differs from the one the student was sized for is accepted when it fits, with a note.
    """
    expected = teacher_preset_of(student_cfg.name)  # for messages; the check itself is structural
    hint = f" (student preset {student_cfg.name!r} expects a teacher of preset {expected!r})" if expected else ""
    diffs = [f"{k} {a!r} != {b!r}" if k != "audio front end" else "audio front end differs"
             for k, (a, b) in _must_match(teacher_cfg, student_cfg).items() if a != b]
    if diffs:
        raise CheckpointError(
            f"teacher checkpoint {teacher_path} (preset {teacher_cfg.name!r}) does not fit student preset "
            f"{student_cfg.name!r}{hint}: teacher vs student " + "; ".join(diffs))
    recorded = (teacher_manifest or {}).get("text_backbone")
    if text_fingerprint and recorded and ":" in str(recorded) and recorded != text_fingerprint:
        raise CheckpointError(
            f"teacher checkpoint {teacher_path} was trained with text backbone {recorded}, but the installed one is "
            f"{text_fingerprint}: its caption embeddings would not match; retrain or reinstall the backbone")
    notes = []
    if expected and teacher_cfg.name != expected:
        notes.append(f"teacher preset {teacher_cfg.name!r} is not {expected!r}, but every shared setting matches")
    return notes


def with_teacher_text_location(student_cfg: Sat2SoundConfig, teacher_cfg: Sat2SoundConfig) -> Sat2SoundConfig:
    """The student shares its teacher's frozen text backbone: a backbone read from a local folder (FLAN-T5) is read
    from the teacher's folder, so the student's own config names it too."""
    t, s = teacher_cfg.model.text, student_cfg.model.text
    if t.backbone != s.backbone or t.path == s.path:
        return student_cfg
    return dataclasses.replace(student_cfg, model=dataclasses.replace(
        student_cfg.model, text=dataclasses.replace(s, path=t.path)))


def is_frozen(name: str) -> bool:
    """Parameters copied from the teacher and never trained: the codebook, the text query map, the audio input
    normalisation."""
    return name.startswith(FROZEN_PREFIXES)


@torch.no_grad()
def build_student(teacher: Sat2Sound, student_cfg: Sat2SoundConfig, *, seed: int | None = None) -> Sat2Sound:
    """A fresh student of ``student_cfg`` holding the teacher's codebook and text query map (frozen) and the
    teacher's shape-independent parts as initialisation. Shares the teacher's text backbone (and its cache)."""
    if seed is not None:
        torch.manual_seed(seed)
    student = build_model(student_cfg, text_backbone=teacher.text_backbone)
    t_state = teacher.state_dict()
    s_state = student.state_dict()
    copied = {}
    for name, value in s_state.items():
        if name.startswith(FROZEN_PREFIXES + INHERITED_PREFIXES) and name in t_state:
            if tuple(t_state[name].shape) != tuple(value.shape):
                raise CheckpointError(f"teacher tensor {name} has shape {tuple(t_state[name].shape)}, the student "
                                      f"needs {tuple(value.shape)}")
            copied[name] = t_state[name].detach().clone()
    if "audio_encoder.input_norm.running_mean" not in t_state and "audio_encoder.bn0.running_mean" in t_state:
        copied.update(_pooled_input_norm(t_state, "audio_encoder.bn0.", s_state))
    missing_frozen = [n for n in s_state if is_frozen(n) and n not in copied]
    if missing_frozen:
        raise CheckpointError(f"the teacher has no {missing_frozen[0]} to give the student")
    student.load_state_dict({**s_state, **copied})
    for name, p in student.named_parameters():
        p.requires_grad_(not is_frozen(name))
    return student


def _pooled_input_norm(t_state: dict[str, torch.Tensor], bn: str, s_state: dict[str, torch.Tensor]
                       ) -> dict[str, torch.Tensor]:
    """One level normalisation equal in mean and variance to a per-bin BatchNorm's statistics pooled over bins
    (the mixture's variance: the bins' mean variance plus the spread of their means), with unit affine."""
    mean, var = t_state[bn + "running_mean"].float(), t_state[bn + "running_var"].float()
    pooled_mean = mean.mean()
    pooled_var = var.mean() + ((mean - pooled_mean) ** 2).mean()
    key = "audio_encoder.input_norm."
    return {key + "running_mean": pooled_mean.reshape(1), key + "running_var": pooled_var.reshape(1),
            key + "weight": torch.ones_like(s_state[key + "weight"]),
            key + "bias": torch.zeros_like(s_state[key + "bias"]),
            key + "num_batches_tracked": s_state[key + "num_batches_tracked"].clone()}


def frozen_modules_eval(student: Sat2Sound) -> None:
    """Keep frozen modules with running statistics (the audio input batch norm) in eval mode while training."""
    student.audio_encoder.input_norm.eval()


def freeze_copied(student: Sat2Sound) -> None:
    """Mark the teacher's codebook and text query map as frozen (after loading a student's weights)."""
    for name, p in student.named_parameters():
        p.requires_grad_(not is_frozen(name))


def tower_parameters(model: torch.nn.Module, tower: str) -> int:
    """Parameters that run in one tower's graph: image (+metadata, fusion, query map, head), audio or text head."""
    parts = {
        "image": ("image_encoder.", "metadata.", "fusion.", "image_query.", "head."),
        "audio": ("audio_encoder.", "audio_query.", "head."),
        "text": ("text_query.", "head."),
    }[tower]
    return sum(p.numel() for n, p in model.named_parameters() if n.startswith(parts))
