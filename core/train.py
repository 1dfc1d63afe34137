"""`sat2sound train`: train the full-precision Sat2Sound teacher, resumably, on one process or under torchrun.

    sat2sound train --preset default --data DIR --out OUT [--epochs N] [--batch-size B] [--head codebook|global]
                    [--no-metadata] [--seed S] [--set KEY=VALUE ...] [--resume/--no-resume] [--threads T]
                    [--max-steps N]
    torchrun --standalone --nproc_per_node 2 -m core.train --preset tiny --data DIR --out OUT

What it does and why:
- Data come from the FeatureTable (every row decoded once and cached), zoom drawn uniformly per sample, random
  turns and mirrors (cfg.image.flip_rotate), colour jitter cfg.image.colour_jitter; metadata fields are dropped
  inside the model (train mode). The frozen text backbone's token states for every unique caption are computed
  before the first step.
- AdamW (lr cfg.train.lr, betas cfg.train.betas, weight decay cfg.train.weight_decay) on matrices only: biases,
  norm gains, the learnable logit scales and the codebook get no weight decay. The codebook is excluded because its
  norm sets how sharp the code scores (and so the sparsemax) are; decaying it would flatten the concept weights
  rather than regularise. Gradient norm clipped at cfg.train.max_grad_norm; logit scales clamped to [0, log 100].
- Learning rate: linear warm-up over cfg.train.warmup_steps, then cosine annealing with warm restarts, one cycle
  every cfg.train.restart_epochs epochs, counted in steps. It is a pure function of the global step (no scheduler
  object to serialise), so a resumed run gets exactly the same rates.
- All randomness of a step (which zoom, jitter, metadata dropping) is seeded from (seed, step, rank) and the order
  of an epoch from (seed, epoch): a run resumed from OUT/last/ continues bit-for-bit like an uninterrupted one.
- Validation every cfg.train.eval_every_epochs on the validation split: I2A R@10% with all metadata given (the
  paper's model selection) plus image->text R@10%, each averaged over the split's zooms (per zoom in the log).
  The best checkpoint lives in OUT itself (config.json + model.safetensors + manifest.json with the validation
  metrics and a training summary).
- OUT/last/ holds the resumable state (model, optimizer, progress, history) in safetensors + JSON, written at every
  epoch end, at --max-steps, and on Ctrl-C. Rerunning the same command resumes from it.
- A non-finite loss stops training with a TrainingError naming the step; OUT/last and the best checkpoint keep the
  last good state.
- DDP (torchrun, gloo on CPU): each step's global batch (cfg.train.batch_size) is split across ranks, so the step
  count, the schedule and the samples seen match a single-process run; each rank computes the contrastive loss on
  its own share (NO all-gather of embeddings: with 2 ranks the in-batch negatives are B/2, not B). Gradients are
  averaged by an all-reduce after backward. BatchNorm running statistics are per rank; rank 0's are saved.
  Rank 0 validates and writes every file.
- OUT/train_log.jsonl receives one JSON line per logged step, per validation and per epoch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from contracts.errors import ConfigError, DataError, TrainingError
from core.cli_args import add_shared
from core.config import Sat2SoundConfig, get_preset, set_values
from core.epoch_loop import run_epochs
from core.evaluate import validation_metrics
from core.losses import MAX_LOG_SCALE, sat2sound_loss
from core.run_state import has_run_state, load_run_state, read_progress, save_run_state

LAST_DIR = "last"
LOG_FILE = "train_log.jsonl"
SELECT_KEY = "i2a_r10"  # the paper selects the checkpoint by validation I2A R@10%
TIE_KEY = "i2a_mr"  # ... and we break its ties by the lower median rank (R@10% is coarse on small splits)
# config fields a resumed run may change (they do not alter what was already computed)
RESUMABLE_CHANGES = ("train.epochs", "train.num_threads", "train.eval_every_epochs")


# ------------------------------------------------------------------------------------------------ config


def override_config(cfg: Sat2SoundConfig, *, epochs: int | None = None, batch_size: int | None = None,
                    head: str | None = None, metadata: bool | None = None, seed: int | None = None,
                    lr: float | None = None, threads: int | None = None,
                    restart_epochs: int | None = None, metadata_drop: float | None = None) -> Sat2SoundConfig:
    """Apply CLI overrides with dataclasses.replace; the result is what the checkpoint's config.json records."""
    train = cfg.train
    if epochs is not None:
        if epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {epochs}")
        train = dataclasses.replace(train, epochs=epochs)
    if batch_size is not None:
        if batch_size < 2:
            raise ConfigError(f"--batch-size must be >= 2 for a contrastive loss, got {batch_size}")
        train = dataclasses.replace(train, batch_size=batch_size)
    if restart_epochs is not None:
        if restart_epochs < 1:
            raise ConfigError(f"--restart-epochs must be >= 1, got {restart_epochs}")
        train = dataclasses.replace(train, restart_epochs=restart_epochs)
    if seed is not None:
        train = dataclasses.replace(train, seed=seed)
    if lr is not None:
        if not lr > 0:
            raise ConfigError(f"--lr must be > 0, got {lr}")
        train = dataclasses.replace(train, lr=lr)
    if threads is not None:
        if threads < 0:
            raise ConfigError(f"--threads must be >= 0, got {threads}")
        train = dataclasses.replace(train, num_threads=threads)
    model = cfg.model
    if head is not None:
        if head not in ("codebook", "global"):
            raise ConfigError(f"--head must be 'codebook' or 'global', got {head!r}")
        model = dataclasses.replace(model, codebook=dataclasses.replace(model.codebook, head=head))
    if metadata is not None:
        model = dataclasses.replace(model, fusion=dataclasses.replace(model.fusion, use_metadata=metadata))
    if metadata_drop is not None:
        if not 0.0 <= metadata_drop < 1.0:
            raise ConfigError(f"--metadata-drop must be in [0, 1), got {metadata_drop}")
        model = dataclasses.replace(model, fusion=dataclasses.replace(model.fusion, drop_prob=metadata_drop))
    return dataclasses.replace(cfg, train=train, model=model)


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    a, b = _flat(saved), _flat(current)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and k not in RESUMABLE_CHANGES]


# ------------------------------------------------------------------------------------------- optimisation


def lr_at(step: int, *, base_lr: float, warmup_steps: int, cycle_steps: int, min_lr: float = 0.0) -> float:
    """Linear warm-up to base_lr over warmup_steps, then cosine annealing with warm restarts every cycle_steps."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    t = (step - max(warmup_steps, 0)) % max(cycle_steps, 1)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * t / max(cycle_steps, 1)))


def no_decay(name: str, param: torch.nn.Parameter) -> bool:
    """Biases, norm gains (all 1-D/0-D), logit scales and the codebook are not weight-decayed (see module doc)."""
    return param.ndim < 2 or "logit_scale" in name or name.endswith("codebook")


def make_optimizer(model: torch.nn.Module, cfg: Sat2SoundConfig) -> torch.optim.AdamW:
    decay, keep = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (keep if no_decay(name, p) else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.train.weight_decay}, {"params": keep, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.train.lr, betas=tuple(cfg.train.betas))


def is_better(val: dict[str, float], best: dict[str, Any] | None) -> bool:
    """Higher validation I2A R@10% wins; equal R@10% is decided by the lower I2A median rank; else keep the old."""
    if best is None or best.get("val") is None:
        return True
    old = best["val"]
    if val[SELECT_KEY] != old[SELECT_KEY]:
        return val[SELECT_KEY] > old[SELECT_KEY]
    return val[TIE_KEY] < old[TIE_KEY]


# -------------------------------------------------------------------------------------------- distributed


@dataclasses.dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def init_distributed() -> Dist:
    """torchrun sets WORLD_SIZE/RANK/MASTER_ADDR; then use gloo (CPU). Otherwise a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return Dist(dist.get_rank(), dist.get_world_size())


def average_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    """All-reduce (mean) every gradient in one flat buffer; a parameter without a gradient contributes zeros."""
    if world <= 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def broadcast_parameters(model: torch.nn.Module, world: int) -> None:
    if world <= 1:
        return
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t, 0)


# ---------------------------------------------------------------------------------------------- helpers


def _seed_for(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] % (2**63 - 1))


def _to_model_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """Make sure the numeric fields are tensors of the dtypes the model expects (lists of strings stay lists)."""
    out = dict(batch)
    for k in ("image", "gsd", "mel", "lat", "lon", "month", "hour", "meta_mask"):
        if k in out:
            out[k] = torch.as_tensor(out[k]).float()
    for k in ("zoom", "audio_source", "caption_source"):
        if k in out:
            out[k] = torch.as_tensor(out[k]).long()
    return out


def all_captions(table: Any, zooms: tuple[int, ...] | None = None) -> list[str]:
    """Every audio caption and image caption (the given zooms, default all the table has), for the precompute."""
    texts: list[str] = list(table.audio_captions)
    for z in table.zooms if zooms is None else zooms:
        texts.extend(table.image_captions(z))
    return texts


class JsonlLog:
    """OUT/train_log.jsonl; on resume, lines past the resumed step are dropped so the log matches the state."""

    def __init__(self, path: Path, keep_until_step: int | None, enabled: bool):
        self.path, self.enabled = path, enabled
        if not enabled:
            return
        if keep_until_step is None:
            path.write_text("")
        elif path.exists():
            kept = []
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if int(rec.get("step", 0)) <= keep_until_step:
                    kept.append(line)
            path.write_text("".join(x + "\n" for x in kept))

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a") as fh:
                fh.write(json.dumps(record) + "\n")


def _update_manifest(out: Path, updates: dict[str, Any]) -> None:
    """Merge ``updates`` into OUT/manifest.json atomically (the weights' fingerprint is untouched)."""
    f = out / "manifest.json"
    if not f.is_file():
        return
    doc = json.loads(f.read_text())
    doc.update(updates)
    tmp = f.with_name(".manifest.json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, f)


# ------------------------------------------------------------------------------------------------- train


def train(cfg: Sat2SoundConfig, data_dir: str | Path, out_dir: str | Path, *, resume: bool = True,
          max_steps: int | None = None, cache_dir: str | Path | None = None, progress: bool = True,
          log_every: int | None = None) -> dict[str, Any]:
    """Train (or resume) and return a summary dict; see the module docstring for everything it does.

    This is the Python API the pipeline calls; under torchrun every rank calls it.
    """
    if resume:
        done = finished_run(Path(out_dir), cfg)
        if done is not None:
            if int(os.environ.get("RANK", "0")) == 0:
                print(f"sat2sound train: {out_dir} already finished ({done['step']} steps); nothing to do",
                      file=sys.stderr)
            return done
    ddp = init_distributed()
    try:
        trainer = Trainer(cfg, Path(data_dir), Path(out_dir), ddp, resume=resume, max_steps=max_steps,
                          cache_dir=cache_dir, progress=progress and ddp.main, log_every=log_every)
        return trainer.run()
    finally:
        if ddp.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def finished_run(out: Path, cfg: Sat2SoundConfig) -> dict[str, Any] | None:
    """The summary of a run in ``out`` that already did all its steps with this config, else None.

    Read from OUT/last/state.json alone (no data decoding, no model), so a pipeline that reruns finished stages
    returns at once. A run whose config differs is not "finished": resuming it is refused later with a clear error.
    """
    last = out / LAST_DIR
    if not (has_run_state(last) and (out / "manifest.json").is_file()):
        return None
    doc = read_progress(last)
    if config_differences(doc.get("config", {}), cfg.to_dict()):
        return None
    step, spe = int(doc.get("step", 0)), int(doc.get("steps_per_epoch") or 0)
    if spe <= 0 or step < spe * cfg.train.epochs:
        return None
    return {"out": str(out), "best": doc.get("best"), "resumed": True, "stopped": None, "finished": True,
            "history": doc.get("history", []), "step": step, "total_steps": spe * cfg.train.epochs,
            "epoch": step // spe, "epochs": cfg.train.epochs, "world_size": doc.get("world_size", 1),
            "seconds": round(float(doc.get("elapsed_s", 0.0)), 1)}


class Trainer:
    """One training run: data, model, optimiser and progress counters, with the step loop and the epoch end."""

    def __init__(self, cfg: Sat2SoundConfig, data_dir: Path, out: Path, ddp: Dist, *, resume: bool,
                 max_steps: int | None, cache_dir: str | Path | None, progress: bool, log_every: int | None):
        from core.data.features import FeatureTable
        from core.model import build_model

        self.cfg, self.data_dir, self.out, self.ddp = cfg, data_dir, out, ddp
        self.max_steps, self.progress = max_steps, progress
        tc = cfg.train
        threads = tc.num_threads or (max(1, (os.cpu_count() or 1) // ddp.world) if ddp.world > 1 else 0)
        if threads:
            torch.set_num_threads(threads)
        if max_steps is not None and max_steps < 1:
            raise ConfigError(f"--max-steps must be >= 1, got {max_steps}")
        if not data_dir.is_dir():
            raise DataError("dataset folder does not exist", path=data_dir)
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} exists and is not a folder")
        out.mkdir(parents=True, exist_ok=True)
        self.last_dir = out / LAST_DIR

        # data: rank 0 decodes and caches first, the other ranks then read the cache
        self.train_table, self.val_table = None, None
        for turn in range(2 if ddp.world > 1 else 1):
            if (turn == 0) == ddp.main:
                self.train_table = FeatureTable.build(data_dir, "train", cfg, cache_dir=cache_dir, progress=progress)
                if ddp.main:
                    self.val_table = self._validation_table(FeatureTable, cache_dir)
            ddp.barrier()
        self.n_train = len(self.train_table)
        if self.n_train < 2:
            raise DataError(f"the training split has {self.n_train} sample(s); at least 2 are needed", path=data_dir)
        self.batch = min(tc.batch_size, self.n_train)
        if self.batch < 2 * ddp.world:
            raise ConfigError(f"batch size {self.batch} is too small for {ddp.world} processes (>= 2 per process)")
        self.steps_per_epoch = self.n_train // self.batch
        self.total_steps = self.steps_per_epoch * tc.epochs
        self.cycle_steps = max(1, tc.restart_epochs * self.steps_per_epoch)
        self.log_every = log_every or max(1, self.steps_per_epoch // 10)

        # model, optimiser and, when resuming, their saved state
        torch.manual_seed(tc.seed)
        self.model = build_model(cfg)
        broadcast_parameters(self.model, ddp.world)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.model, cfg)
        doc: dict[str, Any] = {}
        self.resumed = False
        if resume and has_run_state(self.last_dir):
            doc = self._load_last()
            self.resumed = True
        self.step = int(doc.get("step", 0))
        self.history: list[dict[str, Any]] = list(doc.get("history", []))
        self.best: dict[str, Any] | None = doc.get("best")
        self.sums: dict[str, float] = dict(doc.get("epoch_sums", {}))
        self.elapsed_before = float(doc.get("elapsed_s", 0.0))
        self.t_start = time.perf_counter()
        self.grad_norm = float("nan")
        self.log = JsonlLog(out / LOG_FILE, self.step if self.resumed else None, ddp.main)

    def _validation_table(self, feature_table: Any, cache_dir: str | Path | None) -> Any:
        try:
            return feature_table.build(self.data_dir, "validation", self.cfg, cache_dir=cache_dir,
                                       progress=self.progress)
        except DataError as exc:
            if "split" not in str(exc).lower():
                raise
            print(f"sat2sound train: no validation split ({exc}); each epoch's model is kept instead of the best",
                  file=sys.stderr)
            return None

    def _load_last(self) -> dict[str, Any]:
        saved = read_progress(self.last_dir)
        diffs = config_differences(saved.get("config", {}), self.cfg.to_dict())
        if diffs:
            raise ConfigError(f"{self.last_dir} was saved by a run with another config ({'; '.join(diffs[:4])}); "
                              "rerun with the same options, or pass --no-resume to start over")
        if saved.get("steps_per_epoch") not in (None, self.steps_per_epoch):
            raise ConfigError(f"{self.last_dir} was saved with {saved['steps_per_epoch']} steps per epoch but the "
                              f"data now give {self.steps_per_epoch}: the dataset changed; pass --no-resume")
        return load_run_state(self.last_dir, self.model, self.optimizer)

    # ------------------------------------------------------------------------------------------- bookkeeping
    def scales(self) -> dict[str, float]:
        """The learnt logit scales (exp of the log parameters), for the log."""
        return {k: round(float(p.detach().exp()), 3) for k, p in self.model.logit_scale.items()}

    def elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self.t_start)

    def summary(self) -> dict[str, Any]:
        secs = self.elapsed()
        return {"epoch": self.step // self.steps_per_epoch, "step": self.step, "total_steps": self.total_steps,
                "epochs": self.cfg.train.epochs, "batch_size": self.batch, "world_size": self.ddp.world,
                "samples_seen": self.step * self.batch, "seconds": round(secs, 1),
                "samples_per_s": round(self.step * self.batch / secs, 2) if secs > 0 else None,
                "data": str(self.data_dir), "n_train": self.n_train,
                "n_validation": len(self.val_table) if self.val_table is not None else 0}

    def save_last(self) -> None:
        if not self.ddp.main:
            return
        doc = {"config": self.cfg.to_dict(), "step": self.step, "epoch": self.step // self.steps_per_epoch,
               "epoch_step": self.step % self.steps_per_epoch, "steps_per_epoch": self.steps_per_epoch,
               "total_steps": self.total_steps, "world_size": self.ddp.world, "epoch_sums": self.sums,
               "best": self.best, "history": self.history, "elapsed_s": self.elapsed(),
               "rng": {"scheme": "per-step seeding from (seed, step, rank); epoch order from (seed, epoch)",
                       "seed": self.cfg.train.seed}}
        save_run_state(self.last_dir, self.model, self.optimizer, doc)

    def _non_finite(self, what: str) -> TrainingError:
        return TrainingError(f"non-finite {what} at step {self.step} (epoch {self.step // self.steps_per_epoch + 1}); "
                             f"training stopped before the update. The last good state is kept in {self.last_dir} "
                             f"and the best checkpoint in {self.out}")

    # ---------------------------------------------------------------------------------------------- one step
    def train_step(self, idx: np.ndarray) -> tuple[float, float]:
        tc = self.cfg.train
        rng = np.random.default_rng([tc.seed, self.step, self.ddp.rank])
        data = _to_model_batch(self.train_table.batch(idx, zoom="random", rng=rng, jitter=self.cfg.image.colour_jitter,
                                                      flip_rotate=self.cfg.image.flip_rotate))
        torch.manual_seed(_seed_for(tc.seed, self.step, self.ddp.rank, 1))  # metadata dropping in the model
        lr = lr_at(self.step, base_lr=tc.lr, warmup_steps=tc.warmup_steps, cycle_steps=self.cycle_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss, parts = sat2sound_loss(self.model(data), self.model.logit_scale, tc.pseudo_alpha)
        check = torch.stack([loss.detach(), (~torch.isfinite(loss.detach())).float()])
        if self.ddp.world > 1:
            dist.all_reduce(check)
            check[0] /= self.ddp.world
        if check[1].item() > 0 or not math.isfinite(check[0].item()):
            raise self._non_finite("loss")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(self.params, self.ddp.world)
        clip = tc.max_grad_norm if tc.max_grad_norm and tc.max_grad_norm > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, clip)
        if not torch.isfinite(grad_norm):  # gradients are averaged already, so every rank agrees
            raise self._non_finite("gradient")
        self.grad_norm = float(grad_norm)
        self.optimizer.step()
        with torch.no_grad():
            for p in self.model.logit_scale.values():
                p.clamp_(0.0, MAX_LOG_SCALE)
        self.step += 1
        value = float(check[0].item())
        self.sums["loss"] = self.sums.get("loss", 0.0) + value
        self.sums["n"] = self.sums.get("n", 0.0) + 1
        for k, v in parts.items():
            if k != "total":
                self.sums[k] = self.sums.get(k, 0.0) + float(v)
        return value, lr

    # --------------------------------------------------------------------------------------------- epoch end
    def end_of_epoch(self, epoch: int, seconds: float, samples: int) -> None:
        """Validate (rank 0), keep the best checkpoint, record history, save OUT/last/."""
        from core.checkpoint import save_checkpoint

        tc = self.cfg.train
        n = max(self.sums.get("n", 0.0), 1.0)
        record: dict[str, Any] = {"kind": "epoch", "epoch": epoch + 1, "step": self.step,
                                  "loss": self.sums.get("loss", 0.0) / n,
                                  "parts": {k: v / n for k, v in self.sums.items() if k not in ("loss", "n")},
                                  "lr": self.optimizer.param_groups[0]["lr"],
                                  "samples_per_s": round(samples / seconds, 2) if seconds > 0 else None,
                                  "epoch_seconds": round(seconds, 1),
                                  "scales": self.scales()}
        last_epoch = epoch + 1 == tc.epochs
        if self.ddp.main:
            if self.val_table is not None and ((epoch + 1) % max(tc.eval_every_epochs, 1) == 0 or last_epoch):
                t0 = time.perf_counter()
                val = validation_metrics(self.model, self.val_table, progress=self.progress)
                record["val"] = val
                record["val_seconds"] = round(time.perf_counter() - t0, 1)
                if is_better(val, self.best):
                    self.best = {"metric": val[SELECT_KEY], "epoch": epoch + 1, "step": self.step, "val": val}
                    record["best"] = True
                    save_checkpoint(self.model, self.cfg, self.out, extra={
                        "val": val, "training": self.summary(),
                        "selected_by": f"validation {SELECT_KEY}, ties by {TIE_KEY} (mean over zooms, all metadata)"})
            elif self.val_table is None:
                self.best = {"metric": float("nan"), "epoch": epoch + 1, "step": self.step, "val": None}
                save_checkpoint(self.model, self.cfg, self.out, extra={
                    "val": None, "selected_by": "last epoch (no validation split)", "training": self.summary()})
        self.history.append({k: v for k, v in record.items() if k != "kind"})
        self.sums = {}
        self.log.write(record)
        self.save_last()
        self.ddp.barrier()

    # --------------------------------------------------------------------------------------------------- run
    def run(self) -> dict[str, Any]:
        ddp, tc = self.ddp, self.cfg.train
        if self.resumed and ddp.main:
            print(f"sat2sound train: resuming from {self.last_dir} at step {self.step}/{self.total_steps}",
                  file=sys.stderr)
        if self.step >= self.total_steps:
            if ddp.main:
                print(f"sat2sound train: {self.out} already finished ({self.step} steps); nothing to do",
                      file=sys.stderr)
            return self._result(None)
        texts = all_captions(self.train_table)
        if self.val_table is not None:
            texts += all_captions(self.val_table)
        self.model.text_backbone.precompute(texts, progress=self.progress)
        self.t_start = time.perf_counter()
        spe = self.steps_per_epoch
        if self.step and self.step % spe == 0 and (not self.history or self.history[-1]["step"] < self.step):
            # interrupted between an epoch's last step and its end-of-epoch work: finish that first
            self.end_of_epoch(self.step // spe - 1, 0.0, 0)
        self.model.train()
        stopped = run_epochs(self, seed=tc.seed, epochs=tc.epochs, desc="epoch",
                             select=lambda idx: idx[ddp.rank::ddp.world],
                             step_extras=lambda: {"grad_norm": round(self.grad_norm, 4)}, after_save=ddp.barrier)
        if ddp.main and stopped is None:
            _update_manifest(self.out, {"training": {**self.summary(), "finished": True}})
        ddp.barrier()
        return self._result(stopped)

    def _result(self, stopped: str | None) -> dict[str, Any]:
        return {"out": str(self.out), "best": self.best, "resumed": self.resumed, "stopped": stopped,
                "finished": self.step >= self.total_steps, "history": self.history, **self.summary()}


# ----------------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="dataset folder (embedded world or GeoSound layout)")
    parser.add_argument("--out", required=True, help="output folder: best checkpoint, last/ state, train_log.jsonl")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="global batch (split across torchrun ranks)")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--restart-epochs", type=int, default=None,
                        help="epochs per cosine cycle before a warm restart (default: the preset's)")
    parser.add_argument("--head", choices=("codebook", "global"), default=None)
    parser.add_argument("--no-metadata", action="store_true", help="train without metadata fusion")
    parser.add_argument("--metadata-drop", type=float, default=None,
                        help="share of every batch each metadata field is dropped for (default: the preset's, 0.5 "
                             "as in the paper)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any preset field, e.g. --set image.image_size=64 --set model.fusion.layers=2 "
                             "(repeatable; the options above win over it)")
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                        help="continue from OUT/last/ when it exists (default on)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    parser.add_argument("--max-steps", type=int, default=None, help="stop (resumably) once this global step is reached")
    add_shared(parser, "preset", "cache-dir", "no-progress")


def config_from_args(args: argparse.Namespace) -> Sat2SoundConfig:
    try:
        cfg = get_preset(args.preset)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    cfg = set_values(cfg, getattr(args, "set", None) or [])
    return override_config(cfg, epochs=args.epochs, batch_size=args.batch_size, head=args.head,
                           metadata=False if args.no_metadata else None, seed=args.seed, lr=args.lr,
                           threads=args.threads, restart_epochs=args.restart_epochs,
                           metadata_drop=args.metadata_drop)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    res = train(cfg, args.data, args.out, resume=args.resume, max_steps=args.max_steps, cache_dir=args.cache_dir,
                progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        best = res.get("best") or {}
        state = "finished" if res.get("finished") else f"stopped at step {res['step']} ({res.get('stopped')})"
        print(f"sat2sound train: {state}; best validation I2A R@10% {best.get('metric', float('nan')):.3f} "
              f"(epoch {best.get('epoch', '-')}) -> {res['out']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m core.train ...` (also what torchrun runs): the same options and error handling as the CLI."""
    from core.cli import main as cli_main

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)], prog="python -m core.train")


if __name__ == "__main__":
    sys.exit(main())
