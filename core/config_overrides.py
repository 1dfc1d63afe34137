"""Command-line overrides of a preset and the config check of a resumed run.

``set_values`` applies ``--set dotted.key=VALUE`` assignments, type-checked against the dataclass fields.
``override_config`` applies the options of ``sat2sound train`` / ``sat2sound distill`` (``--epochs``, ``--lr``, ...)
with ``dataclasses.replace``, so the result is what the checkpoint's config.json records. ``config_differences``
lists what a saved run's config and the current one disagree on, except the fields a resumed run may change.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from contracts.errors import ConfigError
from core.config import ImageConfig

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


def set_values(cfg: Any, assignments: Sequence[str]) -> Any:
    """Apply ``dotted.key=VALUE`` overrides (``sat2sound train --set image.image_size=128``) to a config.

    VALUE is read as JSON (``128``, ``0.5``, ``true``, ``[1, 3, 5]``) or else taken as a string (``global``). The
    key must name a field that is not itself a section, and the value must have that field's type; anything else
    is a ConfigError naming the key and what was expected.
    """
    for item in assignments:
        key, sep, raw = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set needs KEY=VALUE (e.g. image.image_size=128), got {item!r}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        cfg = _set_path(cfg, key.split("."), value, key)
    image = getattr(cfg, "image", None)
    if isinstance(image, ImageConfig) and image.image_size % image.patch_size:
        raise ConfigError(f"image.image_size {image.image_size} is not a multiple of image.patch_size "
                          f"{image.patch_size}")
    return cfg


def _set_path(obj: Any, path: list[str], value: Any, key: str) -> Any:
    names = [f.name for f in dataclasses.fields(obj)]
    head = path[0]
    if head not in names:
        raise ConfigError(f"unknown config key {key!r}: {type(obj).__name__} has {', '.join(names)}")
    current = getattr(obj, head)
    if len(path) > 1:
        if not dataclasses.is_dataclass(current):
            raise ConfigError(f"unknown config key {key!r}: {head!r} is a value, not a section")
        return dataclasses.replace(obj, **{head: _set_path(current, path[1:], value, key)})
    if dataclasses.is_dataclass(current):
        raise ConfigError(f"config key {key!r} is a section; set one of its fields "
                          f"({', '.join(f.name for f in dataclasses.fields(current))})")
    return dataclasses.replace(obj, **{head: _checked(typing.get_type_hints(type(obj))[head], value, key)})


def _checked(tp: Any, value: Any, key: str) -> Any:
    """``value`` as the field type ``tp`` wants it, or a ConfigError."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"{key} must be one of {list(typing.get_args(tp))}, got {value!r}")
    if origin is tuple:
        if isinstance(value, list | tuple):
            args = [a for a in typing.get_args(tp) if a is not Ellipsis]
            if Ellipsis not in typing.get_args(tp) and len(value) != len(args):
                raise ConfigError(f"{key} needs {len(args)} values, got {len(value)}")
            return tuple(_checked(args[min(i, len(args) - 1)], v, key) for i, v in enumerate(value))
        raise ConfigError(f"{key} needs a JSON list, got {value!r}")
    ok = {bool: lambda v: isinstance(v, bool),
          int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
          str: lambda v: isinstance(v, str)}.get(tp)
    if ok is None or not ok(value):
        name = getattr(tp, "__name__", str(tp))
        raise ConfigError(f"{key} must be of type {name}, got {value!r}")
    return float(value) if tp is float else value
