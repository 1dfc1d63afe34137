"""One resumable training run: what teacher training (``core.trainer``) and distillation (``compress.distill``) share.

A run owns a model and its AdamW optimiser (``core.optim``), the progress counters, the validation history and the
best checkpoint so far. ``core.epoch_loop.run_epochs`` walks the epochs and calls back into the run:
- ``train_step``: the step's learning rate (a pure function of the step), the subclass's loss, a finite check every
  rank agrees on, backward, gradient averaging (torchrun), clipping at cfg.train.max_grad_norm, the update, and the
  logit scales clamped to [0, log 100]. A non-finite loss or gradient stops the run with a TrainingError before the
  update, so OUT/last/ and the best checkpoint keep the last good state;
- ``end_of_epoch``: the epoch's record; on the main process validation every cfg.train.eval_every_epochs (and at
  the last epoch) and the best checkpoint in OUT itself, picked by the run's ``Selection`` (with no validation
  split, each epoch's model); then the history, the log and ``OUT/last/``;
- ``save_last``: the resumable state (``core.run_state``): model, optimizer, progress, history. Resuming checks that
  the saved config (but for ``RESUMABLE_CHANGES``) and the steps per epoch match, and cuts the log back to the
  resumed step.

A subclass builds its data and model, calling ``_set_sizes`` and then ``_start``; it supplies ``_loss``,
``manifest_extra`` and ``_result``, and may extend the hooks (``_prepare``, ``_train_mode``, ``_share``,
``_step_extras``, ``_epoch_extra``, ``_check_saved``, ``_state_extra``, ``_summary_extra``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from contracts.artifacts import MANIFEST_FILE
from contracts.errors import ConfigError, DataError, TrainingError
from contracts.faults import fault_point
from core.batch_memory import check_batch_room, count_train_rows
from core.checkpoint import save_checkpoint
from core.config_overrides import config_differences
from core.data.features import FeatureTable
from core.distributed import Dist, average_gradients, average_loss
from core.epoch_loop import run_epochs
from core.evaluate import validation_metrics
from core.losses import MAX_LOG_SCALE
from core.optim import lr_at, make_optimizer
from core.run_log import JsonlLog
from core.run_state import has_run_state, load_run_state, read_progress, save_run_state

if TYPE_CHECKING:
    import numpy as np

    from core.config import Sat2SoundConfig

logger = logging.getLogger(__name__)

LAST_DIR = "last"
NO_VALIDATION = "last epoch (no validation split)"


@dataclass(frozen=True)
class Selection:
    """How a run picks its best checkpoint: the higher sum of the validation ``keys`` wins, an equal sum goes to
    the lower ``tie_key`` (when there is one), and a full tie keeps the earlier checkpoint."""

    keys: tuple[str, ...]
    tie_key: str | None
    description: str  # the manifest's "selected_by"

    def metric(self, val: dict[str, Any]) -> float:
        return sum(val[k] for k in self.keys)

    def is_better(self, val: dict[str, Any], best: dict[str, Any] | None) -> bool:
        """Whether ``val`` beats the best so far (``{"metric", "epoch", "step", "val"}``; any val beats none)."""
        if best is None or best.get("val") is None:
            return True
        new, old = self.metric(val), self.metric(best["val"])
        if new != old:
            return new > old
        return self.tie_key is not None and val[self.tie_key] < best["val"][self.tie_key]


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """What a run reports when it returns: where it wrote, how far it got, its best checkpoint and its history."""

    out: Path
    step: int
    total_steps: int
    finished: bool  # every step of cfg.train.epochs is done
    stopped: str | None  # "max_steps" when --max-steps stopped it early, else None
    resumed: bool
    best: dict[str, Any] | None  # {"metric", "epoch", "step", "val"} of the best checkpoint in ``out``
    history: list[dict[str, Any]]  # one record per finished epoch (loss, parts, lr, val, ...)
    summary: dict[str, Any]  # the training summary the manifest records (epochs, samples/s, seconds, sizes, ...)


def update_manifest(out: Path, updates: dict[str, Any]) -> None:
    """Merge ``updates`` into OUT/manifest.json atomically (the weights' fingerprint is untouched)."""
    f = out / MANIFEST_FILE
    if not f.is_file():
        return
    doc = json.loads(f.read_text())
    doc.update(updates)
    tmp = f.with_name(f".{MANIFEST_FILE}.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, f)


def read_manifest_finished(out: Path) -> bool:
    """Whether OUT/manifest.json says the run finished (False when it is missing or unreadable)."""
    try:
        return bool(json.loads((out / MANIFEST_FILE).read_text()).get("training", {}).get("finished"))
    except (OSError, ValueError, AttributeError):
        return False


class TrainingRun:
    """The state and the shared steps of one resumable run; see the module docstring."""

    command: ClassVar[str]  # the subcommand, for messages ("sat2sound train: ...")
    desc: ClassVar[str]  # the progress bars' label
    log_file: ClassVar[str]  # the JSONL log's name in OUT
    kept: ClassVar[str]  # what is kept per epoch when there is no validation split
    selection: ClassVar[Selection]
    loss_name: ClassVar[str] = "loss"
    trains_text: ClassVar[bool] = True  # the step runs the caption query map and head (distillation reads targets)

    model: torch.nn.Module
    cycle_steps: int  # steps per cosine cycle of the learning rate

    def __init__(self, cfg: Sat2SoundConfig, data_dir: Path, out: Path, *, max_steps: int | None, progress: bool,
                 threads: int, ddp: Dist | None = None):
        """Check the arguments every run takes; nothing is written yet."""
        self.cfg, self.data_dir, self.out = cfg, data_dir, out
        self.ddp = ddp or Dist()
        self.max_steps, self.progress = max_steps, progress
        self.last_dir = out / LAST_DIR
        if threads:
            torch.set_num_threads(threads)
        if max_steps is not None and max_steps < 1:
            raise ConfigError(f"--max-steps must be >= 1, got {max_steps}")
        if not data_dir.is_dir():
            raise DataError("dataset folder does not exist", path=data_dir)
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} exists and is not a folder")
        # before any rows are read (the split's size comes from file footers): a step that cannot fit is refused
        check_batch_room(cfg, rows=count_train_rows(data_dir), text=self.trains_text)
        self.val_table: FeatureTable | None = None
        self.grad_norm = float("nan")

    # ------------------------------------------------------------------------------------------------ setup
    def _validation_table(self, cfg: Sat2SoundConfig, cache_dir: str | Path | None) -> FeatureTable | None:
        """The validation split read in ``cfg``'s data config, or None (with a warning) when the data have none."""
        try:
            return FeatureTable.build(self.data_dir, "validation", cfg, cache_dir=cache_dir, progress=self.progress)
        except DataError as exc:
            if "split" not in str(exc).lower():
                raise
            logger.warning("sat2sound %s: no validation split (%s); each epoch's %s is kept instead of the best",
                           self.command, exc, self.kept)
            return None

    def _set_sizes(self, n_train: int, log_every: int | None = None) -> None:
        """Batch, steps per epoch and in all, from the training split's size."""
        if n_train < 2:
            raise DataError(f"the training split has {n_train} sample(s); at least 2 are needed", path=self.data_dir)
        self.n_train = n_train
        self.batch = min(self.cfg.train.batch_size, n_train)
        self.steps_per_epoch = n_train // self.batch
        self.total_steps = self.steps_per_epoch * self.cfg.train.epochs
        self.log_every = log_every or max(1, self.steps_per_epoch // 10)

    def _start(self, model: torch.nn.Module, *, resume: bool) -> dict[str, Any]:
        """Take ``model``, make its optimiser and, when resuming from OUT/last/, restore both and the progress.

        Returns the saved progress document ({} for a fresh run), for what a subclass saved besides.
        """
        self.model = model
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(model, self.cfg)
        self.resumed = resume and has_run_state(self.last_dir)
        doc = self._load_last() if self.resumed else {}
        self.step = int(doc.get("step", 0))
        self.history: list[dict[str, Any]] = list(doc.get("history", []))
        self.best: dict[str, Any] | None = doc.get("best")
        self.sums: dict[str, float] = dict(doc.get("epoch_sums", {}))
        self.elapsed_before = float(doc.get("elapsed_s", 0.0))
        self.t_start = time.perf_counter()
        self.log = JsonlLog(self.out / self.log_file, self.step if self.resumed else None, self.ddp.main)
        return doc

    def _load_last(self) -> dict[str, Any]:
        saved = read_progress(self.last_dir)
        diffs = config_differences(saved.get("config", {}), self.cfg.to_dict())
        if diffs:
            raise ConfigError(f"{self.last_dir} was saved by a run with another config ({'; '.join(diffs[:4])}); "
                              "rerun with the same options, or pass --no-resume to start over")
        self._check_saved(saved)
        return load_run_state(self.last_dir, self.model, self.optimizer)

    def _check_saved(self, saved: dict[str, Any]) -> None:
        """Refuse a saved state this run cannot continue (beyond its config): here, other steps per epoch."""
        if saved.get("steps_per_epoch") not in (None, self.steps_per_epoch):
            raise ConfigError(f"{self.last_dir} was saved with {saved['steps_per_epoch']} steps per epoch but the "
                              f"data now give {self.steps_per_epoch}: the dataset changed; pass --no-resume")

    # ------------------------------------------------------------------------------------------- bookkeeping
    def elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self.t_start)

    def summary(self) -> dict[str, Any]:
        """The training summary recorded in the manifest and the result."""
        secs, seen = self.elapsed(), self.step * self.batch
        return {"epoch": self.step // self.steps_per_epoch, "step": self.step, "total_steps": self.total_steps,
                "epochs": self.cfg.train.epochs, "batch_size": self.batch, "samples_seen": seen,
                "seconds": round(secs, 1), "samples_per_s": round(seen / secs, 2) if secs > 0 else None,
                "data": str(self.data_dir), "n_train": self.n_train,
                "n_validation": len(self.val_table) if self.val_table is not None else 0, **self._summary_extra()}

    def save_last(self) -> None:
        """Write OUT/last/ (main process only): model, optimizer, progress counters, best so far, history."""
        if not self.ddp.main:
            return
        doc = {"config": self.cfg.to_dict(), "step": self.step, "epoch": self.step // self.steps_per_epoch,
               "steps_per_epoch": self.steps_per_epoch, "total_steps": self.total_steps, "epoch_sums": self.sums,
               "best": self.best, "history": self.history, "elapsed_s": self.elapsed(), **self._state_extra()}
        save_run_state(self.last_dir, self.model, self.optimizer, doc)

    def _non_finite(self, what: str) -> TrainingError:
        return TrainingError(f"non-finite {what} at step {self.step} (epoch {self.step // self.steps_per_epoch + 1}); "
                             f"training stopped before the update. The last good state is kept in {self.last_dir} "
                             f"and the best checkpoint in {self.out}")

    # ---------------------------------------------------------------------------------------------- one step
    def train_step(self, idx: np.ndarray) -> tuple[float, float]:
        """One optimiser step on the rows ``idx`` (this process's share); returns (loss over ranks, lr)."""
        tc = self.cfg.train
        lr = lr_at(self.step, base_lr=tc.lr, warmup_steps=tc.warmup_steps, cycle_steps=self.cycle_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss, parts = self._loss(idx)
        value, finite = average_loss(loss, self.ddp.world)
        if not finite:
            raise self._non_finite(self.loss_name)
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
        fault_point("train.step")
        self.sums["loss"] = self.sums.get("loss", 0.0) + value
        self.sums["n"] = self.sums.get("n", 0.0) + 1
        for k, v in parts.items():
            if k != "total":
                self.sums[k] = self.sums.get(k, 0.0) + float(v)
        return value, lr

    # --------------------------------------------------------------------------------------------- epoch end
    def end_of_epoch(self, epoch: int, seconds: float, samples: int) -> None:
        """Validate and keep the best checkpoint (main process), record the history, save OUT/last/."""
        n = max(self.sums.get("n", 0.0), 1.0)
        record: dict[str, Any] = {"kind": "epoch", "epoch": epoch + 1, "step": self.step,
                                  "loss": self.sums.get("loss", 0.0) / n,
                                  "parts": {k: v / n for k, v in self.sums.items() if k not in ("loss", "n")},
                                  "lr": self.optimizer.param_groups[0]["lr"],
                                  "samples_per_s": round(samples / seconds, 2) if seconds > 0 else None,
                                  "epoch_seconds": round(seconds, 1)}
        if self.ddp.main:
            self._keep_best(epoch, record)
        record.update(self._epoch_extra(record))
        self._train_mode()
        self.history.append({k: v for k, v in record.items() if k != "kind"})
        self.sums = {}
        self.log.write(record)
        self.save_last()
        self.ddp.barrier()

    def _keep_best(self, epoch: int, record: dict[str, Any]) -> None:
        """Validate when due and write the checkpoint to OUT when it is the best (each epoch's, without a split)."""
        tc = self.cfg.train
        if self.val_table is None:
            self.best = {"metric": float("nan"), "epoch": epoch + 1, "step": self.step, "val": None}
            save_checkpoint(self.model, self.cfg, self.out, extra=self.manifest_extra(None, NO_VALIDATION))
            return
        if (epoch + 1) % max(tc.eval_every_epochs, 1) != 0 and epoch + 1 != tc.epochs:
            return
        t0 = time.perf_counter()
        val = validation_metrics(self.model, self.val_table, progress=self.progress)
        record["val"] = val
        record["val_seconds"] = round(time.perf_counter() - t0, 1)
        if self.selection.is_better(val, self.best):
            self.best = {"metric": self.selection.metric(val), "epoch": epoch + 1, "step": self.step, "val": val}
            record["best"] = True
            save_checkpoint(self.model, self.cfg, self.out,
                            extra=self.manifest_extra(val, self.selection.description))

    # --------------------------------------------------------------------------------------------------- run
    def run(self) -> RunResult:
        """Train to the end (or --max-steps), then mark the manifest finished; returns the run's result."""
        main = self.ddp.main
        if self.resumed and main:
            logger.info("sat2sound %s: resuming from %s at step %d/%d", self.command, self.last_dir, self.step,
                        self.total_steps)
        if self.step >= self.total_steps:
            if main:
                logger.info("sat2sound %s: %s already finished (%d steps); nothing to do", self.command, self.out,
                            self.step)
                if not read_manifest_finished(self.out):  # killed after the last save, before marking it finished
                    update_manifest(self.out, {"training": {**self.summary(), "finished": True}})
            return self._result(None)
        self._prepare()
        self.t_start = time.perf_counter()
        spe = self.steps_per_epoch
        if self.step and self.step % spe == 0 and (not self.history or self.history[-1]["step"] < self.step):
            # interrupted between an epoch's last step and its end-of-epoch work: finish that first
            self.end_of_epoch(self.step // spe - 1, 0.0, 0)
        self._train_mode()
        tc = self.cfg.train
        stopped = run_epochs(self, seed=tc.seed, epochs=tc.epochs, desc=self.desc, select=self._share,
                             step_extras=self._step_extras, after_save=self.ddp.barrier)
        if main and stopped is None:
            update_manifest(self.out, {"training": {**self.summary(), "finished": True}})
        self.ddp.barrier()
        return self._result(stopped)

    def _outcome(self, stopped: str | None) -> dict[str, Any]:
        """The fields of :class:`RunResult`, for a subclass's result."""
        return {"out": self.out, "step": self.step, "total_steps": self.total_steps,
                "finished": self.step >= self.total_steps, "stopped": stopped, "resumed": self.resumed,
                "best": self.best, "history": self.history, "summary": self.summary()}

    # ------------------------------------------------------------------------------------ what a run supplies
    def _loss(self, idx: np.ndarray) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The step's loss on the rows ``idx`` and its detached parts (for the epoch record)."""
        raise NotImplementedError

    def manifest_extra(self, val: dict[str, Any] | None, selected_by: str) -> dict[str, Any]:
        """What the best checkpoint's manifest records besides the weights' fingerprint and the config."""
        raise NotImplementedError

    def _result(self, stopped: str | None) -> RunResult:
        raise NotImplementedError

    # ----------------------------------------------------------------------------------- hooks with defaults
    def _prepare(self) -> None:
        """Work before the first step of this process (after a resume too)."""

    def _train_mode(self) -> None:
        self.model.train()

    def _share(self, idx: np.ndarray) -> np.ndarray:
        """This process's rows of a global batch."""
        return idx

    def _step_extras(self) -> dict[str, Any]:
        """Fields added to the log's step records."""
        return {}

    def _epoch_extra(self, record: dict[str, Any]) -> dict[str, Any]:
        """Fields added to an epoch's record (after validation)."""
        return {}

    def _state_extra(self) -> dict[str, Any]:
        """Fields OUT/last/state.json records besides the progress."""
        return {}

    def _summary_extra(self) -> dict[str, Any]:
        return {}
