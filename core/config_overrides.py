"""Command-line overrides of a preset and the config check of a resumed run.

``override_config`` applies the options of ``sat2sound train`` / ``sat2sound distill`` (``--epochs``, ``--lr``, ...)
with ``dataclasses.replace``, so the result is what the checkpoint's config.json records. ``config_differences``
lists what a saved run's config and the current one disagree on, except the fields a resumed run may change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from contracts.errors import ConfigError

if TYPE_CHECKING:
    from core.config import Sat2SoundConfig

# config fields a resumed run may change (they do not alter what was already computed)
RESUMABLE_CHANGES = ("train.epochs", "train.num_threads", "train.eval_every_epochs")

# TrainConfig field -> (its command-line flag, the test a value must pass, what the test asks for)
TRAIN_OVERRIDES: dict[str, tuple[str, Callable[[Any], bool], str]] = {
    "epochs": ("--epochs", lambda v: v >= 1, ">= 1"),
    "batch_size": ("--batch-size", lambda v: v >= 2, ">= 2 for a contrastive loss"),
    "restart_epochs": ("--restart-epochs", lambda v: v >= 1, ">= 1"),
    "seed": ("--seed", lambda v: True, ""),
    "lr": ("--lr", lambda v: v > 0, "> 0"),
    "num_threads": ("--threads", lambda v: v >= 0, ">= 0"),
}
HEADS = ("codebook", "global")


def override_config(cfg: Sat2SoundConfig, *, epochs: int | None = None, batch_size: int | None = None,
                    head: str | None = None, metadata: bool | None = None, seed: int | None = None,
                    lr: float | None = None, threads: int | None = None,
                    restart_epochs: int | None = None, metadata_drop: float | None = None) -> Sat2SoundConfig:
    """Apply CLI overrides with dataclasses.replace; the result is what the checkpoint's config.json records.

    ``None`` leaves a field as the preset has it; a value out of range raises ConfigError naming the flag.
    """
    given = {"epochs": epochs, "batch_size": batch_size, "restart_epochs": restart_epochs, "seed": seed, "lr": lr,
             "num_threads": threads}
    changes: dict[str, Any] = {}
    for field, value in given.items():
        if value is None:
            continue
        flag, valid, rule = TRAIN_OVERRIDES[field]
        if not valid(value):
            raise ConfigError(f"{flag} must be {rule}, got {value}")
        changes[field] = value
    train = dataclasses.replace(cfg.train, **changes)
    model = cfg.model
    if head is not None:
        if head not in HEADS:
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
    """``"key: old -> new"`` for every dotted config key that differs, except ``RESUMABLE_CHANGES``."""
    a, b = _flat(saved), _flat(current)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and k not in RESUMABLE_CHANGES]
