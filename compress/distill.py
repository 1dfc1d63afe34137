"""`sat2sound distill`: distil a trained teacher into a mobile student, resumably.

    sat2sound distill --ckpt TEACHER [--preset student-default] --data DIR --out OUT [--epochs N] [--resume]

What it does and why:
- The student is a core.model.Sat2Sound of a smaller preset (default: ``student-<teacher preset>``). It receives
  the teacher's codebook and text query map, frozen (compress/student.py), so its embeddings are points of the
  teacher's space and its text tower is the teacher's; a teacher of another preset (codebook, text backbone,
  metadata, audio front end...) is refused with the settings that differ.
- The teacher's embeddings of every training sample are computed once, for every zoom and two metadata settings,
  and cached in OUT/teacher_targets.safetensors (compress/teacher_targets.py): the teacher never runs per step.
- Loss (compress/distill_loss.py): cosine to the teacher's image and audio embeddings + KL between the student's
  and the teacher's in-batch similarity distributions (image->audio, image->image caption, audio->audio caption)
  + the ordinary Sat2Sound contrastive loss on the labels, with weights (--w-cosine, --w-affinity, --w-label).
- Each sample gets a random zoom and the config's colour jitter (on the student's input only: the cached teacher
  targets are of the clean tile), and either every metadata field or its cached random subset; the student's own
  metadata dropping is switched off so what it sees is exactly what the target was computed with.
- AdamW on the trainable parameters (core.optim.make_optimizer: no decay on biases, norms, logit scales); linear
  warm-up then one cosine decay over the run; gradient clipping; a per-step seed, so a resumed run continues
  exactly like an uninterrupted one. Checkpointing, resume, the log and the best-student selection are the ones
  every training run shares (core.training_run).
- Every epoch (cfg.train.eval_every_epochs, 1 in the student presets): validation (all metadata, mean over zooms;
  I2A and image->text R@10%) of the student, compared with the teacher's (computed once). The best student by
  I2A + I2T R@10% is written to OUT (config.json + model.safetensors + manifest.json with kind "sat2sound-student",
  the teacher's fingerprint, the figures and the retention in percent); OUT/last/ holds the resumable state;
  OUT/distill_log.jsonl the history.
- Single process (the student is small; the teacher's pass is cached): no torchrun mode.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from compress.distill_loss import AFFINITY_PAIRS, DistillWeights, distill_loss
from compress.student import (
    build_student,
    check_teacher_fits,
    freeze_copied,
    frozen_modules_eval,
    with_teacher_text_location,
)
from compress.teacher_targets import load_or_compute_targets
from contracts.artifacts import ArtifactKind
from contracts.errors import CheckpointError, ConfigError, DataError
from core.checkpoint import load_checkpoint, read_config
from core.cli import main as cli_main
from core.cli_args import add_ckpt, add_shared
from core.config import STUDENT_OF_TEACHER, get_preset, student_preset_for
from core.config_overrides import override_config
from core.data.features import FeatureTable
from core.evaluate import validation_metrics
from core.model import META_KEYS
from core.training_run import RunResult, Selection, TrainingRun

if TYPE_CHECKING:
    from core.config import Sat2SoundConfig

LOG_FILE = "distill_log.jsonl"
SELECT_KEYS = ("i2a_r10", "i2t_r10")
SELECTION = Selection(SELECT_KEYS, None, "validation I2A R@10% + image->text R@10% (mean over zooms, all metadata)")


def default_student_preset(teacher_cfg: Sat2SoundConfig) -> str:
    """``student-<teacher preset>`` when such a preset exists."""
    student = student_preset_for(teacher_cfg.name)
    if student is None:
        raise ConfigError(f"no student preset is known for a teacher of preset {teacher_cfg.name!r}; pass --preset "
                          f"(known: {', '.join(STUDENT_OF_TEACHER.values())})")
    return student


def retention(student: dict[str, Any] | None, teacher: dict[str, Any] | None) -> dict[str, float | None]:
    """Student R@10% as a percentage of the teacher's, per selected metric."""
    if not student or not teacher:
        return {}
    out: dict[str, float | None] = {}
    for k in SELECT_KEYS:
        t, s = teacher.get(k), student.get(k)
        out[k] = round(100.0 * s / t, 1) if t else None
    return out


@dataclass(frozen=True, kw_only=True)
class DistillResult(RunResult):
    """What ``distill()`` returns: a :class:`~core.training_run.RunResult` and the teacher's side of it."""

    teacher_val: dict[str, Any] | None  # the teacher's validation figures (computed once)
    retention_pct: dict[str, float | None]  # the best student's R@10% in percent of the teacher's
    notes: list[str]  # what the teacher check noted (e.g. a teacher preset other than the one the student expects)


def _same_data(a: Sat2SoundConfig, b: Sat2SoundConfig) -> bool:
    """Whether two configs read a dataset into the same arrays (one feature table serves both)."""
    return a.image == b.image and a.audio == b.audio


class Distiller(TrainingRun):
    """One distillation run: tables, cached teacher targets, the student (``self.model``) and its loss."""

    command, desc, log_file, kept = "distill", "distill", LOG_FILE, "student"
    selection = SELECTION
    loss_name = "distillation loss"
    trains_text = False  # the captions' embeddings are the teacher's cached targets

    def __init__(self, teacher_path: Path, cfg: Sat2SoundConfig, data_dir: Path, out: Path, *,
                 weights: DistillWeights, resume: bool, max_steps: int | None, cache_dir: str | Path | None,
                 progress: bool):
        cfg = with_teacher_text_location(cfg, read_config(teacher_path))
        super().__init__(cfg, data_dir, out, max_steps=max_steps, progress=progress, threads=cfg.train.num_threads)
        self.weights = weights
        if out.resolve() == teacher_path.resolve():
            raise ConfigError("--out must not be the teacher's folder")

        self.teacher_loaded = load_checkpoint(teacher_path)
        teacher = self.teacher_loaded.model.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.teacher = teacher
        self.notes = check_teacher_fits(self.teacher_loaded.cfg, cfg, teacher_manifest=self.teacher_loaded.manifest,
                                        text_fingerprint=teacher.text_backbone.fingerprint, teacher_path=teacher_path)
        self.teacher_scales = {name: float(teacher.scale(scale)) for name, (_, _, scale) in AFFINITY_PAIRS.items()}

        # data: the student's table (its image size) and the teacher's (for the cached targets), same rows
        tcfg = self.teacher_loaded.cfg
        self.table = FeatureTable.build(data_dir, "train", cfg, cache_dir=cache_dir, progress=progress)
        teacher_table = (self.table if _same_data(tcfg, cfg) else
                         FeatureTable.build(data_dir, "train", tcfg, cache_dir=cache_dir, progress=progress))
        if teacher_table.sample_ids != self.table.sample_ids:
            raise DataError("the teacher's and the student's views of the training split list different samples",
                            path=data_dir)
        self._set_sizes(len(self.table))
        self.val_table, teacher_val_table = self._validation_tables(tcfg, cache_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.targets, self.targets_cached = load_or_compute_targets(
            out, teacher, self.teacher_loaded.fingerprint, teacher_table, seed=cfg.train.seed, progress=progress)
        self.cycle_steps = max(1, self.total_steps - cfg.train.warmup_steps)  # one cosine decay over the run

        doc = self._start(build_student(teacher, cfg, seed=cfg.train.seed), resume=resume)
        self.teacher_val: dict[str, Any] | None = doc.get("teacher_val")
        if self.teacher_val is None and teacher_val_table is not None:
            self.teacher_val = validation_metrics(teacher, teacher_val_table, progress=progress)

    # ------------------------------------------------------------------------------------------------ setup
    def _validation_tables(self, tcfg: Sat2SoundConfig,
                           cache_dir: str | Path | None) -> tuple[FeatureTable | None, FeatureTable | None]:
        """The student's and the teacher's views of the validation split (None, None without a usable one)."""
        val = self._validation_table(self.cfg, cache_dir)
        if val is None or len(val) < 2:
            return None, None
        tval = val if _same_data(tcfg, self.cfg) else FeatureTable.build(
            self.data_dir, "validation", tcfg, cache_dir=cache_dir, progress=self.progress)
        return val, tval

    def _identity(self) -> dict[str, Any]:
        """What a resumed run must share with the saved one besides the config and the steps per epoch."""
        return {"teacher_fingerprint": self.teacher_loaded.fingerprint, "weights": self.weights.to_dict()}

    def _check_saved(self, saved: dict[str, Any]) -> None:
        super()._check_saved(saved)
        for key, value in self._identity().items():
            if saved.get(key) not in (None, value):
                raise ConfigError(f"{self.last_dir} was saved by a run with another {key.replace('_', ' ')} "
                                  f"({saved.get(key)!r} vs {value!r}); pass --no-resume to start over")

    def _load_last(self) -> dict[str, Any]:
        doc = super()._load_last()
        freeze_copied(self.model)
        return doc

    # ------------------------------------------------------------------------------------------ bookkeeping
    def _state_extra(self) -> dict[str, Any]:
        return {"teacher_val": self.teacher_val, **self._identity()}

    def _summary_extra(self) -> dict[str, Any]:
        return {"teacher_targets_cached": self.targets_cached}

    def _epoch_extra(self, record: dict[str, Any]) -> dict[str, Any]:
        return {"retention_pct": retention(record["val"], self.teacher_val)} if "val" in record else {}

    def manifest_extra(self, val: dict[str, Any] | None, selected_by: str) -> dict[str, Any]:
        return {"kind": ArtifactKind.STUDENT, "teacher_fingerprint": self.teacher_loaded.fingerprint,
                "teacher_preset": self.teacher_loaded.cfg.name, "teacher": str(self.teacher_loaded.path),
                "distill": {**self.weights.to_dict(), "teacher_scales": self.teacher_scales},
                "val": val, "teacher_val": self.teacher_val, "retention_pct": retention(val, self.teacher_val),
                "selected_by": selected_by, "training": self.summary(), "notes": self.notes}

    def _result(self, stopped: str | None) -> DistillResult:
        best_val = (self.best or {}).get("val")
        return DistillResult(**self._outcome(stopped), teacher_val=self.teacher_val,
                             retention_pct=retention(best_val, self.teacher_val), notes=self.notes)

    # ---------------------------------------------------------------------------------------------- one step
    def step_batch(self, idx: np.ndarray) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Student inputs and teacher targets of one step (all randomness seeded from (seed, step))."""
        rng = np.random.default_rng([self.cfg.train.seed, self.step, 0xD157])
        batch = self.table.batch(idx, zoom="random", rng=rng, jitter=self.cfg.image.colour_jitter)
        tg = self.targets
        zi = tg.zoom_index(np.asarray(batch["zoom"]))
        use_all = rng.random(len(idx)) < self.weights.all_meta_prob
        setting = np.where(use_all[:, None], 1.0, tg.part_mask[idx, zi]).astype(np.float32)
        t_image = np.where(use_all[:, None], tg.image_all[idx, zi], tg.image_part[idx, zi])
        inputs = {k: batch[k] for k in ("image", "zoom", "gsd", "mel", "lat", "lon", "month", "hour",
                                        "audio_source", "caption_source")}
        inputs["meta_mask"] = torch.as_tensor(batch["meta_mask"]).float() * torch.from_numpy(setting)
        teacher = {"image": torch.from_numpy(np.ascontiguousarray(t_image)),
                   "audio": torch.from_numpy(tg.audio[idx]),
                   "audio_caption": torch.from_numpy(tg.audio_caption[idx]),
                   "image_caption": torch.from_numpy(tg.image_caption[idx, zi])}
        return inputs, teacher

    def _loss(self, idx: np.ndarray) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        inputs, teacher = self.step_batch(idx)
        s = self.model
        meta = {k: inputs[k] for k in META_KEYS} if s.metadata is not None else None
        image = s.encode_image(inputs["image"].float(), inputs["zoom"].long(), inputs["gsd"].float(), meta)
        audio = s.encode_audio(inputs["mel"].float())
        student = {"image": image.embedding, "audio": audio.embedding,
                   "audio_caption": teacher["audio_caption"], "image_caption": teacher["image_caption"]}
        return distill_loss(student, teacher, self.teacher_scales, s.logit_scale, self.weights,
                            self.cfg.train.pseudo_alpha)

    def _train_mode(self) -> None:
        """Train mode, but no metadata dropping (the step sets the mask itself) and the frozen audio input norm
        keeps the teacher's statistics."""
        self.model.train()
        frozen_modules_eval(self.model)
        if self.model.metadata is not None:
            self.model.metadata.eval()


# ------------------------------------------------------------------------------------------------------ API


def distill(teacher: str | Path, data_dir: str | Path, out_dir: str | Path, *, preset: str | None = None,
            cfg: Sat2SoundConfig | None = None, weights: DistillWeights | None = None, resume: bool = True,
            max_steps: int | None = None, cache_dir: str | Path | None = None, progress: bool = True
            ) -> DistillResult:
    """Distil ``teacher`` (a checkpoint folder) into a student of ``preset`` (or the given ``cfg``) at ``out_dir``.

    Returns the result: the best student's validation figures, the teacher's, retention in percent, the history.
    """
    teacher = Path(teacher)
    if not teacher.is_dir():
        raise CheckpointError(f"teacher checkpoint folder {teacher} does not exist")
    if cfg is None:
        cfg = get_preset(preset or default_student_preset(read_config(teacher)))
    run = Distiller(teacher, cfg, Path(data_dir), Path(out_dir), weights=weights or DistillWeights(), resume=resume,
                    max_steps=max_steps, cache_dir=cache_dir, progress=progress)
    return run.run()


# ------------------------------------------------------------------------------------------------------ CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_ckpt(parser, help="teacher checkpoint folder (from `sat2sound train`)", old=("--teacher",))
    parser.add_argument("--data", required=True, help="dataset folder (its train split; validation to select)")
    parser.add_argument("--out", required=True, help="student folder: checkpoint, last/ state, teacher targets, log")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--w-cosine", type=float, default=DistillWeights.cosine, help="embedding cosine weight")
    parser.add_argument("--w-affinity", type=float, default=DistillWeights.affinity,
                        help="similarity-structure (KL) weight")
    parser.add_argument("--w-label", type=float, default=DistillWeights.label, help="contrastive label loss weight")
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                        help="continue from OUT/last/ when it exists (default); --no-resume starts over")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--max-steps", type=int, default=None, help="stop (resumably) once this step is reached")
    add_shared(parser, "preset", "cache-dir", "no-progress", preset_default=None)


def run(args: argparse.Namespace) -> int:
    teacher = Path(args.ckpt)
    if not teacher.is_dir():
        raise CheckpointError(f"teacher checkpoint folder {teacher} does not exist")
    cfg = get_preset(args.preset or default_student_preset(read_config(teacher)))
    cfg = override_config(cfg, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, lr=args.lr,
                          threads=args.threads)
    for name in ("w_cosine", "w_affinity", "w_label"):
        if getattr(args, name) < 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 0")
    weights = DistillWeights(cosine=args.w_cosine, affinity=args.w_affinity, label=args.w_label)
    if not (weights.cosine or weights.affinity or weights.label):
        raise ConfigError("every loss weight is 0: nothing to distil")
    res = distill(teacher, args.data, args.out, cfg=cfg, weights=weights, resume=args.resume,
                  max_steps=args.max_steps, cache_dir=args.cache_dir, progress=not args.no_progress)
    best = res.best or {}
    val = best.get("val")
    if val:
        t = res.teacher_val or {}
        print(f"student {res.out}: epoch {best['epoch']}, val I2A R@10% {val['i2a_r10']:.3f} "
              f"(teacher {t.get('i2a_r10', float('nan')):.3f}), I2T R@10% {val['i2t_r10']:.3f} "
              f"(teacher {t.get('i2t_r10', float('nan')):.3f}); retention {res.retention_pct}")
    if res.stopped:
        print(f"stopped at step {res.step}/{res.total_steps}; rerun the same command to continue")
    for note in res.notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(["distill", *sys.argv[1:]]))
