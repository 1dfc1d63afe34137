"""`sat2sound distill`: distil a trained teacher into a mobile student, resumably.

    sat2sound distill --teacher CKPT [--preset student-default] --data DIR --out OUT [--epochs N] [--resume]

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
- AdamW on the trainable parameters (core.train.make_optimizer: no decay on biases, norms, logit scales); linear
  warm-up then one cosine decay over the run; gradient clipping; a per-step seed, so a resumed run continues
  exactly like an uninterrupted one.
- Every epoch: validation (all metadata, mean over zooms; I2A and image->text R@10%) of the student, compared with the
  teacher's (computed once). The best student by I2A + I2T R@10% is written to OUT (config.json +
  model.safetensors + manifest.json with kind "sat2sound-student", the teacher's fingerprint, the figures and the
  retention in percent); OUT/last/ holds the resumable state; OUT/distill_log.jsonl the history.
- Single process (the student is small; the teacher's pass is cached): no torchrun mode.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compress.distill_loss import AFFINITY_PAIRS, DistillWeights, distill_loss
from compress.student import STUDENT_TEACHER, build_student, check_teacher_fits, freeze_copied, frozen_modules_eval
from compress.teacher_targets import load_or_compute_targets
from contracts.errors import CheckpointError, ConfigError, DataError, TrainingError
from core.cli_args import add_ckpt, add_shared
from core.config import Sat2SoundConfig, get_preset

LAST_DIR = "last"
LOG_FILE = "distill_log.jsonl"
STUDENT_KIND = "sat2sound-student"
SELECT_KEYS = ("i2a_r10", "i2t_r10")


def default_student_preset(teacher_cfg: Sat2SoundConfig) -> str:
    """``student-<teacher preset>`` when such a preset exists."""
    for student, teacher in STUDENT_TEACHER.items():
        if teacher == teacher_cfg.name:
            return student
    raise ConfigError(f"no student preset is known for a teacher of preset {teacher_cfg.name!r}; pass --preset "
                      f"(known: {', '.join(STUDENT_TEACHER)})")


def retention(student: dict[str, Any] | None, teacher: dict[str, Any] | None) -> dict[str, float | None]:
    """Student R@10% as a percentage of the teacher's, per selected metric."""
    if not student or not teacher:
        return {}
    out: dict[str, float | None] = {}
    for k in SELECT_KEYS:
        t, s = teacher.get(k), student.get(k)
        out[k] = round(100.0 * s / t, 1) if t else None
    return out


class Distiller:
    """One distillation run: tables, teacher targets, student, optimiser, counters; the step loop and epoch end."""

    def __init__(self, teacher_path: Path, cfg: Sat2SoundConfig, data_dir: Path, out: Path, *,
                 weights: DistillWeights, resume: bool, max_steps: int | None, cache_dir: str | Path | None,
                 progress: bool):
        from core.checkpoint import load_checkpoint
        from core.data.features import FeatureTable
        from core.train import JsonlLog, make_optimizer

        self.cfg, self.data_dir, self.out, self.weights = cfg, data_dir, out, weights
        self.max_steps, self.progress = max_steps, progress
        tc = cfg.train
        if tc.num_threads:
            torch.set_num_threads(tc.num_threads)
        if max_steps is not None and max_steps < 1:
            raise ConfigError(f"--max-steps must be >= 1, got {max_steps}")
        if not data_dir.is_dir():
            raise DataError("dataset folder does not exist", path=data_dir)
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} exists and is not a folder")
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
        self.last_dir = out / LAST_DIR

        # data: the student's table (its image size) and the teacher's (for the cached targets), same rows
        tcfg = self.teacher_loaded.cfg
        self.table = FeatureTable.build(data_dir, "train", cfg, cache_dir=cache_dir, progress=progress)
        teacher_table = (self.table if _same_data(tcfg, cfg) else
                         FeatureTable.build(data_dir, "train", tcfg, cache_dir=cache_dir, progress=progress))
        if teacher_table.sample_ids != self.table.sample_ids:
            raise DataError("the teacher's and the student's views of the training split list different samples",
                            path=data_dir)
        self.n_train = len(self.table)
        if self.n_train < 2:
            raise DataError(f"the training split has {self.n_train} sample(s); at least 2 are needed", path=data_dir)
        self.val_table, teacher_val_table = self._validation_tables(FeatureTable, tcfg, cache_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.targets, self.targets_cached = load_or_compute_targets(
            out, teacher, self.teacher_loaded.fingerprint, teacher_table, seed=tc.seed, progress=progress)

        self.batch = min(tc.batch_size, self.n_train)
        self.steps_per_epoch = self.n_train // self.batch
        self.total_steps = self.steps_per_epoch * tc.epochs
        self.log_every = max(1, self.steps_per_epoch // 10)

        self.student = build_student(teacher, cfg, seed=tc.seed)
        self.params = [p for p in self.student.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.student, cfg)
        doc: dict[str, Any] = {}
        self.resumed = False
        from core.run_state import has_run_state

        if resume and has_run_state(self.last_dir):
            doc = self._load_last()
            self.resumed = True
        self.step = int(doc.get("step", 0))
        self.history: list[dict[str, Any]] = list(doc.get("history", []))
        self.best: dict[str, Any] | None = doc.get("best")
        self.sums: dict[str, float] = dict(doc.get("epoch_sums", {}))
        self.elapsed_before = float(doc.get("elapsed_s", 0.0))
        self.teacher_val: dict[str, Any] | None = doc.get("teacher_val")
        if self.teacher_val is None and teacher_val_table is not None:
            from core.evaluate import validation_metrics

            self.teacher_val = validation_metrics(teacher, teacher_val_table, progress=progress)
        self.t_start = time.perf_counter()
        self.log = JsonlLog(out / LOG_FILE, self.step if self.resumed else None, True)

    # ------------------------------------------------------------------------------------------------ setup
    def _validation_tables(self, feature_table: Any, tcfg: Sat2SoundConfig,
                           cache_dir: str | Path | None) -> tuple[Any, Any]:
        try:
            val = feature_table.build(self.data_dir, "validation", self.cfg, cache_dir=cache_dir,
                                      progress=self.progress)
        except DataError as exc:
            if "split" not in str(exc).lower():
                raise
            print(f"sat2sound distill: no validation split ({exc}); each epoch's student is kept instead of the best",
                  file=sys.stderr)
            return None, None
        if len(val) < 2:
            return None, None
        tval = val if _same_data(tcfg, self.cfg) else feature_table.build(
            self.data_dir, "validation", tcfg, cache_dir=cache_dir, progress=self.progress)
        return val, tval

    def _identity(self) -> dict[str, Any]:
        return {"teacher_fingerprint": self.teacher_loaded.fingerprint, "weights": self.weights.to_dict(),
                "steps_per_epoch": self.steps_per_epoch}

    def _load_last(self) -> dict[str, Any]:
        from core.run_state import load_run_state, read_progress
        from core.train import config_differences

        saved = read_progress(self.last_dir)
        diffs = config_differences(saved.get("config", {}), self.cfg.to_dict())
        if diffs:
            raise ConfigError(f"{self.last_dir} was saved by a run with another config ({'; '.join(diffs[:4])}); "
                              "rerun with the same options, or pass --no-resume to start over")
        for key, value in self._identity().items():
            if saved.get(key) not in (None, value):
                raise ConfigError(f"{self.last_dir} was saved by a run with another {key.replace('_', ' ')} "
                                  f"({saved.get(key)!r} vs {value!r}); pass --no-resume to start over")
        doc = load_run_state(self.last_dir, self.student, self.optimizer)
        freeze_copied(self.student)
        return doc

    # ------------------------------------------------------------------------------------------ bookkeeping
    def elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self.t_start)

    def summary(self) -> dict[str, Any]:
        secs = self.elapsed()
        return {"epoch": self.step // self.steps_per_epoch, "step": self.step, "total_steps": self.total_steps,
                "epochs": self.cfg.train.epochs, "batch_size": self.batch, "samples_seen": self.step * self.batch,
                "seconds": round(secs, 1), "samples_per_s": round(self.step * self.batch / secs, 2) if secs else None,
                "data": str(self.data_dir), "n_train": self.n_train,
                "n_validation": len(self.val_table) if self.val_table is not None else 0,
                "teacher_targets_cached": self.targets_cached}

    def save_last(self) -> None:
        from core.run_state import save_run_state

        doc = {"config": self.cfg.to_dict(), "step": self.step, "epoch": self.step // self.steps_per_epoch,
               "total_steps": self.total_steps, "epoch_sums": self.sums, "best": self.best, "history": self.history,
               "elapsed_s": self.elapsed(), "teacher_val": self.teacher_val, **self._identity()}
        save_run_state(self.last_dir, self.student, self.optimizer, doc)

    def manifest_extra(self, val: dict[str, Any] | None, selected_by: str) -> dict[str, Any]:
        return {"kind": STUDENT_KIND, "teacher_fingerprint": self.teacher_loaded.fingerprint,
                "teacher_preset": self.teacher_loaded.cfg.name, "teacher": str(self.teacher_loaded.path),
                "distill": {**self.weights.to_dict(), "teacher_scales": self.teacher_scales},
                "val": val, "teacher_val": self.teacher_val, "retention_pct": retention(val, self.teacher_val),
                "selected_by": selected_by, "training": self.summary(), "notes": self.notes}

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

    def train_step(self, idx: np.ndarray) -> tuple[float, float]:
        from core.losses import MAX_LOG_SCALE
        from core.model import META_KEYS
        from core.train import lr_at

        tc = self.cfg.train
        inputs, teacher = self.step_batch(idx)
        lr = lr_at(self.step, base_lr=tc.lr, warmup_steps=tc.warmup_steps,
                   cycle_steps=max(1, self.total_steps - tc.warmup_steps))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        s = self.student
        meta = {k: inputs[k] for k in META_KEYS} if s.metadata is not None else None
        image = s.encode_image(inputs["image"].float(), inputs["zoom"].long(), inputs["gsd"].float(), meta)
        audio = s.encode_audio(inputs["mel"].float())
        student = {"image": image.embedding, "audio": audio.embedding,
                   "audio_caption": teacher["audio_caption"], "image_caption": teacher["image_caption"]}
        loss, parts = distill_loss(student, teacher, self.teacher_scales, s.logit_scale, self.weights,
                                   tc.pseudo_alpha)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrainingError(f"non-finite distillation loss at step {self.step} (epoch "
                                f"{self.step // self.steps_per_epoch + 1}); stopped. The last good state is kept in "
                                f"{self.last_dir} and the best student in {self.out}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if tc.max_grad_norm and tc.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.params, tc.max_grad_norm)
        self.optimizer.step()
        with torch.no_grad():
            for p in s.logit_scale.values():
                p.clamp_(0.0, MAX_LOG_SCALE)
        self.step += 1
        self.sums["loss"] = self.sums.get("loss", 0.0) + value
        self.sums["n"] = self.sums.get("n", 0.0) + 1
        for k, v in parts.items():
            if k != "total":
                self.sums[k] = self.sums.get(k, 0.0) + float(v)
        return value, lr

    def _train_mode(self) -> None:
        """Train mode, but no metadata dropping (the step sets the mask itself) and the frozen audio input norm
        keeps the teacher's statistics."""
        self.student.train()
        frozen_modules_eval(self.student)
        if self.student.metadata is not None:
            self.student.metadata.eval()

    # --------------------------------------------------------------------------------------------- epoch end
    def end_of_epoch(self, epoch: int, seconds: float, samples: int) -> None:
        from core.checkpoint import save_checkpoint
        from core.evaluate import validation_metrics

        n = max(self.sums.get("n", 0.0), 1.0)
        record: dict[str, Any] = {"kind": "epoch", "epoch": epoch + 1, "step": self.step,
                                  "loss": self.sums.get("loss", 0.0) / n,
                                  "parts": {k: v / n for k, v in self.sums.items() if k not in ("loss", "n")},
                                  "lr": self.optimizer.param_groups[0]["lr"],
                                  "samples_per_s": round(samples / max(seconds, 1e-9), 2),
                                  "epoch_seconds": round(seconds, 1)}
        if self.val_table is not None:
            val = validation_metrics(self.student, self.val_table, progress=self.progress)
            record["val"] = val
            record["retention_pct"] = retention(val, self.teacher_val)
            score = sum(val[k] for k in SELECT_KEYS)
            if self.best is None or score > self.best["metric"]:
                self.best = {"metric": score, "epoch": epoch + 1, "step": self.step, "val": val}
                record["best"] = True
                save_checkpoint(self.student, self.cfg, self.out, extra=self.manifest_extra(
                    val, "validation I2A R@10% + image->text R@10% (mean over zooms, all metadata)"))
        else:
            self.best = {"metric": float("nan"), "epoch": epoch + 1, "step": self.step, "val": None}
            save_checkpoint(self.student, self.cfg, self.out,
                            extra=self.manifest_extra(None, "last epoch (no validation split)"))
        self._train_mode()
        self.history.append({k: v for k, v in record.items() if k != "kind"})
        self.sums = {}
        self.log.write(record)
        self.save_last()

    # --------------------------------------------------------------------------------------------------- run
    def run(self) -> dict[str, Any]:
        from core.epoch_loop import run_epochs
        from core.train import _update_manifest

        tc = self.cfg.train
        if self.resumed:
            print(f"sat2sound distill: resuming from {self.last_dir} at step {self.step}/{self.total_steps}",
                  file=sys.stderr)
        if self.step >= self.total_steps:
            print(f"sat2sound distill: {self.out} already finished ({self.step} steps); nothing to do",
                  file=sys.stderr)
            return self._result(None)
        self.t_start = time.perf_counter()
        self._train_mode()
        stopped = run_epochs(self, seed=tc.seed, epochs=tc.epochs, desc="distill")
        if stopped is None:
            _update_manifest(self.out, {"training": {**self.summary(), "finished": True}})
        return self._result(stopped)

    def _result(self, stopped: str | None) -> dict[str, Any]:
        best_val = (self.best or {}).get("val")
        return {"out": str(self.out), "best": self.best, "teacher_val": self.teacher_val,
                "retention_pct": retention(best_val, self.teacher_val), "resumed": self.resumed,
                "stopped": stopped, "finished": self.step >= self.total_steps, "history": self.history,
                "notes": self.notes, **self.summary()}


def _same_data(a: Sat2SoundConfig, b: Sat2SoundConfig) -> bool:
    """Whether two configs read a dataset into the same arrays (one feature table serves both)."""
    return a.image == b.image and a.audio == b.audio


# ------------------------------------------------------------------------------------------------------ API


def distill(teacher: str | Path, data_dir: str | Path, out_dir: str | Path, *, preset: str | None = None,
            cfg: Sat2SoundConfig | None = None, weights: DistillWeights | None = None, resume: bool = True,
            max_steps: int | None = None, cache_dir: str | Path | None = None, progress: bool = True
            ) -> dict[str, Any]:
    """Distil ``teacher`` (a checkpoint folder) into a student of ``preset`` (or the given ``cfg``) at ``out_dir``.

    Returns a summary: the best student's validation figures, the teacher's, retention in percent, the history.
    """
    from core.checkpoint import read_config

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
    from core.checkpoint import read_config
    from core.train import override_config

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
    best = res.get("best") or {}
    val = best.get("val")
    if val:
        t = res.get("teacher_val") or {}
        print(f"student {res['out']}: epoch {best['epoch']}, val I2A R@10% {val['i2a_r10']:.3f} "
              f"(teacher {t.get('i2a_r10', float('nan')):.3f}), I2T R@10% {val['i2t_r10']:.3f} "
              f"(teacher {t.get('i2t_r10', float('nan')):.3f}); retention {res['retention_pct']}")
    if res.get("stopped"):
        print(f"stopped at step {res['step']}/{res['total_steps']}; rerun the same command to continue")
    for note in res.get("notes", []):
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    from core.cli import main

    sys.exit(main(["distill", *sys.argv[1:]]))

