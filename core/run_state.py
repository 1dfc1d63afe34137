"""The resumable state of a training run, stored without pickle: tensors in safetensors, everything else in JSON.

``OUT/last/`` holds
- ``state.safetensors``: the model's state dict (``model.<name>``), every tensor of the optimizer state
  (``optimizer.<param index>.<key>``, e.g. AdamW's exp_avg / exp_avg_sq / step) and torch's CPU RNG state
  (``rng.torch``);
- ``state.json``: the optimizer's param groups (lr, betas, weight decay, which parameter indices) and non-tensor
  per-parameter values, the progress counters (epoch, step, partial-epoch sums), the best validation score so far,
  the metrics history, the numpy RNG state, and the config the run was started with.

``torch.load`` is never used: an optimizer state is only rebuilt from plain numbers and tensors, so a tampered file
cannot run code. Writes are atomic (temp folder + rename), so a Ctrl-C during a save leaves the previous state.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from contracts.durability import staging_folder
from contracts.errors import CheckpointError
from contracts.faults import fault_point

STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"
FORMAT = "sat2sound-run-state/1"


def flatten_optimizer(opt_state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (for safetensors) and JSON-able rest."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in opt_state["state"].items():
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    groups = []
    for group in opt_state["param_groups"]:
        groups.append({k: (list(v) if isinstance(v, tuple) else v) for k, v in group.items()})
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer`: a dict ``optimizer.load_state_dict`` accepts."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if not name.startswith("optimizer."):
            continue
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    for pid, values in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(values)
    groups = []
    for group in meta["param_groups"]:
        g = dict(group)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def save_run_state(out_dir: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                   progress: dict[str, Any]) -> Path:
    """Write model + optimizer + RNG + ``progress`` (JSON-able) to ``out_dir`` atomically; returns the folder."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_tensors, opt_meta = flatten_optimizer(optimizer.state_dict())
    tensors.update(opt_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    doc = {"format": FORMAT, "optimizer": opt_meta, **progress}
    text = json.dumps(doc, indent=1)  # fails here, before anything is written, if progress is not JSON-able
    tmp = staging_folder(out_dir)
    try:
        save_file(tensors, str(tmp / STATE_TENSORS))
        fault_point("state.write")
        (tmp / STATE_JSON).write_text(text + "\n")
        old = out_dir.with_name(f".{out_dir.name}.old")
        if out_dir.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out_dir, old)
        fault_point("state.swap")  # the window where only the .old state exists: has_run_state restores it
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def has_run_state(path: str | Path) -> bool:
    path = Path(path)
    old = path.with_name(f".{path.name}.old")
    if not path.exists() and (old / STATE_JSON).is_file() and (old / STATE_TENSORS).is_file():
        os.replace(old, path)  # a save was killed between moving the old state aside and moving the new one in
    return (path / STATE_TENSORS).is_file() and (path / STATE_JSON).is_file()


def read_progress(path: str | Path) -> dict[str, Any]:
    """The JSON half of a saved state (progress, history, config), without touching any tensors."""
    f = Path(path) / STATE_JSON
    try:
        doc = json.loads(f.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read the saved training state {f}: {exc}") from None
    if doc.get("format") != FORMAT:
        raise CheckpointError(f"{f} is not a Sat2Sound training state (format {doc.get('format')!r})")
    return doc


def load_run_state(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore model, optimizer and torch RNG in place from ``path``; returns the progress document."""
    path = Path(path)
    doc = read_progress(path)
    try:
        tensors = load_file(str(path / STATE_TENSORS))
    except Exception as exc:  # safetensors raises its own types for truncated/corrupt files
        raise CheckpointError(f"cannot read {path / STATE_TENSORS} (corrupt or truncated?): {exc}") from None
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(model_state)
    except RuntimeError as exc:
        raise CheckpointError(f"the saved training state in {path} does not fit this model: "
                              f"{str(exc).splitlines()[0]}") from None
    try:
        optimizer.load_state_dict(unflatten_optimizer(tensors, doc["optimizer"]))
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"the optimizer state in {path} does not fit this model: {exc}") from None
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    return doc
