"""Teacher training, the machinery behind ``sat2sound train`` (``core.train``): ``train()`` and its ``Trainer``.

The ``Trainer`` is a ``core.training_run.TrainingRun`` over the full-precision Sat2Sound model:
- its data come from the FeatureTable, zoom drawn uniformly per sample, random turns and mirrors, colour jitter;
  metadata fields are dropped inside the model (train mode). The frozen text backbone's token states for every
  unique caption are computed before the first step;
- all randomness of a step is seeded from (seed, step, rank), so a resumed run continues bit-for-bit;
- the learning rate warms up, then follows a cosine with a warm restart every cfg.train.restart_epochs epochs;
- the best checkpoint is the one with the highest validation I2A R@10%, ties by the lower I2A median rank;
- under torchrun (gloo, CPU) each rank trains on its share of the global batch; rank 0 decodes the data first,
  validates and writes every file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from contracts.artifacts import MANIFEST_FILE
from contracts.errors import ConfigError
from core.config_overrides import config_differences
from core.data.features import FeatureTable
from core.distributed import broadcast_parameters, init_distributed, shutdown_distributed
from core.losses import sat2sound_loss
from core.model import build_model
from core.run_state import has_run_state, read_progress
from core.training_run import LAST_DIR, RunResult, Selection, TrainingRun

if TYPE_CHECKING:
    from core.config import Sat2SoundConfig
    from core.distributed import Dist

logger = logging.getLogger(__name__)

LOG_FILE = "train_log.jsonl"
# the paper selects the checkpoint by validation I2A R@10%; we break its ties by the lower median rank (R@10% is
# coarse on small splits)
SELECTION = Selection(("i2a_r10",), "i2a_mr", "validation i2a_r10, ties by i2a_mr (mean over zooms, all metadata)")


@dataclass(frozen=True, kw_only=True)
class TrainResult(RunResult):
    """What ``train()`` returns: a :class:`~core.training_run.RunResult` and the number of processes."""

    world_size: int


def train(cfg: Sat2SoundConfig, data_dir: str | Path, out_dir: str | Path, *, resume: bool = True,
          max_steps: int | None = None, cache_dir: str | Path | None = None, progress: bool = True,
          log_every: int | None = None) -> TrainResult:
    """Train (or resume) and return the result; see ``core.train`` for everything it does.

    This is the Python API behind ``sat2sound train``; under torchrun every rank calls it.
    """
    if resume:
        done = finished_run(Path(out_dir), cfg)
        if done is not None:
            if int(os.environ.get("RANK", "0")) == 0:
                logger.info("sat2sound train: %s already finished (%d steps); nothing to do", out_dir, done.step)
            return done
    ddp = init_distributed()
    try:
        trainer = Trainer(cfg, Path(data_dir), Path(out_dir), ddp, resume=resume, max_steps=max_steps,
                          cache_dir=cache_dir, progress=progress and ddp.main, log_every=log_every)
        return trainer.run()
    finally:
        shutdown_distributed(ddp)


def finished_run(out: Path, cfg: Sat2SoundConfig) -> TrainResult | None:
    """The result of a run in ``out`` that already did all its steps with this config, else None.

    Read from OUT/last/state.json alone (no data decoding, no model), so a pipeline that reruns finished stages
    returns at once. A run whose config differs is not "finished": resuming it is refused later with a clear error.
    """
    last = out / LAST_DIR
    if not (has_run_state(last) and (out / MANIFEST_FILE).is_file()):
        return None
    doc = read_progress(last)
    if config_differences(doc.get("config", {}), cfg.to_dict()):
        return None
    step, spe = int(doc.get("step", 0)), int(doc.get("steps_per_epoch") or 0)
    if spe <= 0 or step < spe * cfg.train.epochs:
        return None
    world = doc.get("world_size", 1)
    total = spe * cfg.train.epochs
    return TrainResult(out=out, step=step, total_steps=total, finished=True, stopped=None, resumed=True,
                       best=doc.get("best"), history=doc.get("history", []), world_size=world,
                       summary={"epoch": step // spe, "step": step, "total_steps": total, "epochs": cfg.train.epochs,
                                "world_size": world, "seconds": round(float(doc.get("elapsed_s", 0.0)), 1)})


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


class Trainer(TrainingRun):
    """One teacher training run: the data, the model and its contrastive loss, on one process or a torchrun rank."""

    command, desc, log_file, kept = "train", "epoch", LOG_FILE, "model"
    selection = SELECTION

    def __init__(self, cfg: Sat2SoundConfig, data_dir: Path, out: Path, ddp: Dist, *, resume: bool,
                 max_steps: int | None, cache_dir: str | Path | None, progress: bool, log_every: int | None):
        threads = cfg.train.num_threads or (max(1, (os.cpu_count() or 1) // ddp.world) if ddp.world > 1 else 0)
        super().__init__(cfg, data_dir, out, max_steps=max_steps, progress=progress, threads=threads, ddp=ddp)
        out.mkdir(parents=True, exist_ok=True)

        # data: rank 0 decodes and caches first, the other ranks then read the cache
        train_table = None
        for turn in range(2 if ddp.world > 1 else 1):
            if (turn == 0) == ddp.main:
                train_table = FeatureTable.build(data_dir, "train", cfg, cache_dir=cache_dir, progress=progress)
                if ddp.main:
                    self.val_table = self._validation_table(cfg, cache_dir)
            ddp.barrier()
        self.train_table: FeatureTable = train_table
        self._set_sizes(len(train_table), log_every)
        if self.batch < 2 * ddp.world:
            raise ConfigError(f"batch size {self.batch} is too small for {ddp.world} processes (>= 2 per process)")
        self.cycle_steps = max(1, cfg.train.restart_epochs * self.steps_per_epoch)

        # model, optimiser and, when resuming, their saved state
        torch.manual_seed(cfg.train.seed)
        model = build_model(cfg)
        broadcast_parameters(model, ddp.world)
        self._start(model, resume=resume)

    def scales(self) -> dict[str, float]:
        """The learnt logit scales (exp of the log parameters), for the log."""
        return {k: round(float(p.detach().exp()), 3) for k, p in self.model.logit_scale.items()}

    def _loss(self, idx: np.ndarray) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        tc = self.cfg.train
        rng = np.random.default_rng([tc.seed, self.step, self.ddp.rank])
        data = _to_model_batch(self.train_table.batch(idx, zoom="random", rng=rng, jitter=self.cfg.image.colour_jitter,
                                                      flip_rotate=self.cfg.image.flip_rotate))
        torch.manual_seed(_seed_for(tc.seed, self.step, self.ddp.rank, 1))  # metadata dropping in the model
        return sat2sound_loss(self.model(data), self.model.logit_scale, tc.pseudo_alpha)

    def _prepare(self) -> None:
        texts = all_captions(self.train_table)
        if self.val_table is not None:
            texts += all_captions(self.val_table)
        self.model.text_backbone.precompute(texts, progress=self.progress)

    def _share(self, idx: np.ndarray) -> np.ndarray:
        return idx[self.ddp.rank::self.ddp.world]

    def _step_extras(self) -> dict[str, Any]:
        return {"grad_norm": round(self.grad_norm, 4)}

    def _epoch_extra(self, record: dict[str, Any]) -> dict[str, Any]:
        return {"scales": self.scales()}

    def _state_extra(self) -> dict[str, Any]:
        return {"epoch_step": self.step % self.steps_per_epoch, "world_size": self.ddp.world,
                "rng": {"scheme": "per-step seeding from (seed, step, rank); epoch order from (seed, epoch)",
                        "seed": self.cfg.train.seed}}

    def _summary_extra(self) -> dict[str, Any]:
        return {"world_size": self.ddp.world}

    def manifest_extra(self, val: dict[str, Any] | None, selected_by: str) -> dict[str, Any]:
        return {"val": val, "training": self.summary(), "selected_by": selected_by}

    def _result(self, stopped: str | None) -> TrainResult:
        return TrainResult(**self._outcome(stopped), world_size=self.ddp.world)
