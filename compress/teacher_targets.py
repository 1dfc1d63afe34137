"""The teacher's embeddings of every training sample, computed once and cached under the distillation folder.

Distillation needs, per sample, the teacher's image embedding at each zoom and under the metadata the student is
shown, its audio embedding and the caption embeddings. The teacher is frozen, so all of it is computed once (one
pass over the training split per zoom) and kept in ``OUT/teacher_targets.safetensors``; a rerun or a resume loads
it in well under a second. The cache records the teacher's fingerprint, the feature table's fingerprint, the seed
and the zooms, and is recomputed when any of them changes.

Metadata: the teacher's training drops each field for half of every batch, and the student must learn the same
"any subset may be given" behaviour, but the teacher cannot run per batch. So two settings are cached per sample
and zoom: ``all`` (every field the data has) and ``part``, a fixed random subset drawn once per (sample, zoom) from
the seed, each field kept with probability 1/2 (so ``none`` is among them). Training picks one per sample.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from contracts.schema import META_FIELDS

logger = logging.getLogger(__name__)

TARGETS_FILE = "teacher_targets.safetensors"
FORMAT = "sat2sound-teacher-targets/1"
BATCH = 128
META_ARRAY_KEYS = ("lat", "lon", "month", "hour", "audio_source", "caption_source")


@dataclass
class TeacherTargets:
    """Arrays indexed by the training table's row position; ``zooms`` gives the order of the Z axis."""

    image_all: np.ndarray  # (N, Z, d) image embedding with every metadata field the data has
    image_part: np.ndarray  # (N, Z, d) image embedding with the partial setting ``part_mask``
    part_mask: np.ndarray  # (N, Z, 5) fields given in the partial setting (before the data's own mask)
    audio: np.ndarray  # (N, d)
    audio_caption: np.ndarray  # (N, d)
    image_caption: np.ndarray  # (N, Z, d)
    zooms: tuple[int, ...]
    info: dict[str, Any]

    def __len__(self) -> int:
        return int(self.audio.shape[0])

    def zoom_index(self, zooms: np.ndarray) -> np.ndarray:
        lookup = {z: i for i, z in enumerate(self.zooms)}
        return np.asarray([lookup[int(z)] for z in zooms], dtype=np.int64)


def _meta(batch: dict[str, Any], mask: torch.Tensor) -> dict[str, torch.Tensor]:
    meta = {k: torch.as_tensor(batch[k]) for k in META_ARRAY_KEYS}
    meta["meta_mask"] = torch.as_tensor(batch["meta_mask"]).float() * mask
    return meta


def partial_masks(n: int, n_zooms: int, seed: int) -> np.ndarray:
    """(n, n_zooms, 5) float32: each field kept with probability 1/2, drawn once from ``seed``."""
    rng = np.random.default_rng([seed, 0x5EED])
    return (rng.random((n, n_zooms, len(META_FIELDS))) < 0.5).astype(np.float32)


@torch.no_grad()
def compute_teacher_targets(teacher: torch.nn.Module, table: Any, *, seed: int = 0, batch_size: int = BATCH,
                            progress: bool = True) -> TeacherTargets:
    """Run the frozen teacher over every row of ``table`` (a FeatureTable in the teacher's data config)."""
    from tqdm.auto import tqdm

    was_training = teacher.training
    teacher.eval()
    zooms = tuple(int(z) for z in table.zooms)
    n = len(table)
    use_meta = getattr(teacher, "metadata", None) is not None
    part = partial_masks(n, len(zooms), seed)
    d = teacher.cfg.model.codebook.dim
    image_all = np.zeros((n, len(zooms), d), np.float32)
    image_part = np.zeros_like(image_all)
    audio = np.zeros((n, d), np.float32)
    audio_texts: list[str] = []
    image_texts: list[list[str]] = [[] for _ in zooms]
    bar = tqdm(total=n * len(zooms), desc="teacher targets", unit="img", disable=not progress)
    try:
        for zi, zoom in enumerate(zooms):
            for start in range(0, n, batch_size):
                idx = np.arange(start, min(start + batch_size, n))
                batch = table.batch(idx, zoom=zoom, rng=None, jitter=0.0)
                image = torch.as_tensor(batch["image"], dtype=torch.float32)
                zt = torch.as_tensor(batch["zoom"]).long()
                gsd = torch.as_tensor(batch["gsd"], dtype=torch.float32)
                if use_meta:
                    ones = torch.ones(len(idx), len(META_FIELDS))
                    emb_all = teacher.encode_image(image, zt, gsd, _meta(batch, ones)).embedding
                    emb_part = teacher.encode_image(image, zt, gsd,
                                                    _meta(batch, torch.from_numpy(part[idx, zi]))).embedding
                else:
                    emb_all = emb_part = teacher.encode_image(image, zt, gsd, None).embedding
                image_all[idx, zi] = emb_all.float().numpy()
                image_part[idx, zi] = emb_part.float().numpy()
                image_texts[zi].extend(batch["image_caption"])
                if zi == 0:
                    audio[idx] = teacher.encode_audio(torch.as_tensor(batch["mel"], dtype=torch.float32)
                                                      ).embedding.float().numpy()
                    audio_texts.extend(batch["audio_caption"])
                bar.update(len(idx))
        bar.close()
        teacher.text_backbone.precompute(audio_texts + [t for texts in image_texts for t in texts], progress=progress)
        audio_caption = embed_texts(teacher, audio_texts, batch_size)
        image_caption = np.stack([embed_texts(teacher, texts, batch_size) for texts in image_texts], axis=1)
    finally:
        teacher.train(was_training)
    return TeacherTargets(image_all, image_part, part, audio, audio_caption, image_caption, zooms, {})


@torch.no_grad()
def embed_texts(model: torch.nn.Module, texts: list[str], batch_size: int = BATCH) -> np.ndarray:
    """Caption embeddings (N, d) float32 through the model's (frozen) text path."""
    parts = [model.encode_text(texts[i:i + batch_size]).embedding.float().numpy()
             for i in range(0, len(texts), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, model.cfg.model.codebook.dim), np.float32)


def _key(teacher_fingerprint: str, table: Any, seed: int) -> dict[str, str]:
    return {"format": FORMAT, "teacher_fingerprint": teacher_fingerprint, "table_fingerprint": table.fingerprint,
            "split": table.split, "n": str(len(table)), "zooms": json.dumps(list(table.zooms)), "seed": str(seed)}


def load_or_compute_targets(out_dir: str | Path, teacher: torch.nn.Module, teacher_fingerprint: str, table: Any, *,
                            seed: int = 0, progress: bool = True) -> tuple[TeacherTargets, bool]:
    """The cached targets in ``out_dir`` when they match (teacher, data, seed), else compute and cache them.

    Returns (targets, was_cached).
    """
    path = Path(out_dir) / TARGETS_FILE
    key = _key(teacher_fingerprint, table, seed)
    if path.is_file():
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="numpy") as fh:
                meta = dict(fh.metadata() or {})
            if all(meta.get(k) == v for k, v in key.items()):
                arrays = load_file(str(path))
                return TeacherTargets(arrays["image_all"], arrays["image_part"], arrays["part_mask"],
                                      arrays["audio"], arrays["audio_caption"], arrays["image_caption"],
                                      tuple(json.loads(meta["zooms"])), meta), True
        except Exception:  # a truncated or foreign file is simply recomputed
            pass
    t0 = time.perf_counter()
    targets = compute_teacher_targets(teacher, table, seed=seed, progress=progress)
    seconds = time.perf_counter() - t0
    rows = int(targets.audio.shape[0])
    logger.info("teacher targets: %d samples in %.1f s (%.2f samples/s)", rows, seconds, rows / max(seconds, 1e-9))
    targets.info = key
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file({"image_all": targets.image_all, "image_part": targets.image_part, "part_mask": targets.part_mask,
                   "audio": targets.audio, "audio_caption": targets.audio_caption,
                   "image_caption": targets.image_caption}, tmp,
                  metadata={**key, "compute_seconds": f"{seconds:.3f}", "samples": str(rows)})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return targets, False
