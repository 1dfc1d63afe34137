"""The epoch and step loop shared by teacher training (``core.trainer``) and distillation (``compress.distill``).

A run walks its epochs in a seeded order, one progress bar per epoch, logs every ``log_every`` steps, calls the run's
own end-of-epoch work (validation, best checkpoint, ``OUT/last/``) and stops early at ``--max-steps``. Ctrl-C saves
the state after the last completed step and re-raises, so the CLI can report it and a rerun resumes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled sample order of ``epoch``: a function of (seed, epoch) only, so a resumed run sees the same."""
    return np.random.default_rng([seed, epoch, 7919]).permutation(n)


class EpochRun(Protocol):
    """What :func:`run_epochs` needs from a run (every ``core.training_run.TrainingRun`` has it)."""

    step: int
    total_steps: int
    steps_per_epoch: int
    batch: int
    n_train: int
    max_steps: int | None
    progress: bool
    log_every: int
    log: Any  # has .write(record)

    def train_step(self, idx: np.ndarray) -> tuple[float, float]: ...

    def end_of_epoch(self, epoch: int, seconds: float, samples: int) -> None: ...

    def save_last(self) -> None: ...


def run_epochs(run: EpochRun, *, seed: int, epochs: int, desc: str,
               select: Callable[[np.ndarray], np.ndarray] = lambda idx: idx,
               step_extras: Callable[[], dict[str, Any]] = dict,
               after_save: Callable[[], None] = lambda: None) -> str | None:
    """Train until ``run.total_steps`` or ``run.max_steps``; returns ``"max_steps"`` when stopped early, else None.

    ``select`` picks this process's share of a global batch (torchrun ranks); ``step_extras`` adds fields to the
    step records of the log; ``after_save`` runs after an early stop's save (a barrier under torchrun).
    """
    from tqdm.auto import tqdm

    stopped, bar = None, None
    try:
        while run.step < run.total_steps and stopped is None:
            epoch, epoch_step = divmod(run.step, run.steps_per_epoch)
            order = epoch_order(run.n_train, seed, epoch)
            bar = tqdm(total=run.steps_per_epoch, initial=epoch_step, desc=f"{desc} {epoch + 1}/{epochs}",
                       unit="step", disable=not run.progress, dynamic_ncols=True)
            t_epoch, seen = time.perf_counter(), 0
            while epoch_step < run.steps_per_epoch:
                loss, lr = run.train_step(select(order[epoch_step * run.batch:(epoch_step + 1) * run.batch]))
                epoch_step += 1
                seen += run.batch
                rate = seen / max(time.perf_counter() - t_epoch, 1e-9)
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", sps=f"{rate:.1f}")
                bar.update(1)
                if run.step % run.log_every == 0:
                    run.log.write({"kind": "step", "epoch": epoch + 1, "step": run.step, "loss": loss, "lr": lr,
                                   **step_extras(), "samples_per_s": round(rate, 2)})
                if run.max_steps is not None and run.step >= run.max_steps and epoch_step < run.steps_per_epoch:
                    stopped = "max_steps"
                    break
            bar.close()
            bar = None
            if stopped is None:
                run.end_of_epoch(epoch, time.perf_counter() - t_epoch, seen)
                if run.max_steps is not None and run.step >= run.max_steps and run.step < run.total_steps:
                    stopped = "max_steps"
            else:
                run.save_last()
                after_save()
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        run.save_last()  # the state after the last completed step; the CLI then reports the interrupt
        raise
    return stopped
