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
- A non-finite loss or gradient stops training with a TrainingError naming the step; OUT/last and the best
  checkpoint keep the last good state.
- DDP (torchrun, gloo on CPU): each step's global batch (cfg.train.batch_size) is split across ranks, so the step
  count, the schedule and the samples seen match a single-process run; each rank computes the contrastive loss on
  its own share (NO all-gather of embeddings: with 2 ranks the in-batch negatives are B/2, not B). Gradients are
  averaged by an all-reduce after backward. BatchNorm running statistics are per rank; rank 0's are saved.
  Rank 0 validates and writes every file.
- OUT/train_log.jsonl receives one JSON line per logged step, per validation and per epoch.

This module is the command line; the run is ``core.trainer`` (``train()``, ``Trainer``), on the steps every
training run shares (``core.training_run``), the optimiser and schedule (``core.optim``), the torchrun helpers
(``core.distributed``) and the option overrides (``core.config_overrides``).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from contracts.errors import ConfigError
from core.cli import main as cli_main
from core.cli_args import add_shared
from core.config import get_preset
from core.config_overrides import override_config, set_values
from core.trainer import train

if TYPE_CHECKING:
    from core.config import Sat2SoundConfig


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
        best = res.best or {}
        state = "finished" if res.finished else f"stopped at step {res.step} ({res.stopped})"
        print(f"sat2sound train: {state}; best validation I2A R@10% {best.get('metric', float('nan')):.3f} "
              f"(epoch {best.get('epoch', '-')}) -> {res.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m core.train ...` (also what torchrun runs): the same options and error handling as the CLI."""
    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)], prog="python -m core.train")


if __name__ == "__main__":
    sys.exit(main())
