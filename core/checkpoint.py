"""Checkpoints as self-describing folders: config.json + model.safetensors + manifest.json (with a fingerprint).

Loading never unpickles: weights come from safetensors, the config from JSON. A config that does not match the
weights, a fingerprint that does not match the file, or a missing file is a CheckpointError with a clear message.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from contracts.artifacts import CONFIG_FILE, MANIFEST_FILE, WEIGHTS_FILE, ArtifactKind
from contracts.durability import staging_folder
from contracts.errors import CheckpointError
from contracts.faults import fault_point
from core.config import Sat2SoundConfig

KIND = ArtifactKind.MODEL


def fingerprint_state(state: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of every tensor, in name order (independent of file layout)."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def save_checkpoint(model: torch.nn.Module, cfg: Sat2SoundConfig, out_dir: str | Path, *,
                    extra: dict[str, Any] | None = None) -> str:
    """Write the checkpoint folder atomically (temp folder + rename); returns the weights' fingerprint."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    state = _state_dict(model)
    fp = fingerprint_state(state)
    tmp = staging_folder(out_dir)
    try:
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"fingerprint": fp, "preset": cfg.name})
        write_json(tmp / CONFIG_FILE, cfg.to_dict())
        text = getattr(model, "_text_backbone", None)
        manifest = {
            "kind": KIND,
            "fingerprint": fp,
            "preset": cfg.name,
            "head": cfg.model.codebook.head,
            "metadata": cfg.model.fusion.use_metadata,
            "text_backbone": text.fingerprint if text is not None else cfg.model.text.backbone,
            "parameters": int(sum(t.numel() for t in state.values())),
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            **(extra or {}),
        }
        write_json(tmp / MANIFEST_FILE, manifest)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return fp


def _replace_dir(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``; an existing checkpoint at ``dst`` is replaced, other files in it are kept."""
    if not dst.exists():
        os.replace(src, dst)
        return
    for f in (WEIGHTS_FILE, CONFIG_FILE, MANIFEST_FILE):  # the manifest last: until then the fingerprint disagrees
        fault_point("checkpoint.file")
        os.replace(src / f, dst / f)
    shutil.rmtree(src, ignore_errors=True)


@dataclass
class Loaded:
    model: torch.nn.Module
    cfg: Sat2SoundConfig
    manifest: dict[str, Any]
    fingerprint: str
    path: Path


def read_config(path: str | Path) -> Sat2SoundConfig:
    path = Path(path)
    cfg_file = path / CONFIG_FILE
    if not cfg_file.is_file():
        raise CheckpointError(f"{path} is not a checkpoint folder: {CONFIG_FILE} is missing")
    try:
        return Sat2SoundConfig.from_dict(json.loads(cfg_file.read_text()))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{cfg_file} is not a valid Sat2Sound config: {exc}") from None


def read_manifest(path: str | Path) -> dict[str, Any]:
    f = Path(path) / MANIFEST_FILE
    if not f.is_file():
        raise CheckpointError(f"{Path(path)} has no {MANIFEST_FILE}")
    try:
        return json.loads(f.read_text())
    except ValueError as exc:
        raise CheckpointError(f"{f} is not valid JSON: {exc}") from None


def load_checkpoint(path: str | Path, *, map_location: str = "cpu", verify: bool = True) -> Loaded:
    """Rebuild the model from config.json and load model.safetensors into it, checking that both agree."""
    from core.model import build_model

    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint folder {path} does not exist")
    cfg = read_config(path)
    manifest = read_manifest(path)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{path} has no weights ({WEIGHTS_FILE} is missing)")
    try:
        state = load_file(str(weights), device=map_location)
    except Exception as exc:  # safetensors raises its own error types for truncated/corrupt files
        raise CheckpointError(f"{weights} cannot be read (corrupt or truncated?): {exc}") from None
    fp = fingerprint_state(state)
    if verify and manifest.get("fingerprint") not in (None, fp):
        raise CheckpointError(
            f"{weights} does not match its manifest (fingerprint {fp[:12]} != {str(manifest['fingerprint'])[:12]}): "
            "the weights were changed or corrupted"
        )
    model = build_model(cfg)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s) e.g. {missing[0]}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} e.g. {unexpected[0]}")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} of another shape e.g. {k} {tuple(state[k].shape)} vs config "
                         f"{tuple(expected[k].shape)}")
        raise CheckpointError(f"{path}: config.json (preset {cfg.name!r}) does not match the weights: "
                              + "; ".join(parts))
    model.load_state_dict(state)
    model.eval()
    return Loaded(model, cfg, manifest, fp, path)
