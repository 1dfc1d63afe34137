"""The state of one export while it is written: the stage folder, the PyTorch references the parity checks compare
against, the file entries and parity records collected so far, and the failures that will stop it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from export.parity import PARITY_BATCH, PARITY_SEED, Gates, cosine_figures, gate
from export.towers import build_tower, example_inputs

if TYPE_CHECKING:
    from core.checkpoint import Loaded

FP16_MIN_COSINE = 0.999  # Core ML float16, checked on macOS only


def onnx_io(session: Any) -> tuple[list[dict], list[dict]]:
    """Inputs and outputs (name, shape, dtype) of an ORT session, as the manifest lists them."""

    def fmt(v: Any) -> dict:
        dtype = v.type.replace("tensor(", "").rstrip(")")
        dtype = {"float": "float32", "double": "float64"}.get(dtype, dtype)
        return {"name": v.name, "shape": [d if isinstance(d, int) else str(d) for d in v.shape], "dtype": dtype}

    return [fmt(i) for i in session.get_inputs()], [fmt(o) for o in session.get_outputs()]


def tflite_io(sig: dict[str, Any], order_in: Sequence[str], order_out: Sequence[str]) -> tuple[list, list]:
    """Inputs and outputs of a TFLite signature in the tower's order."""
    ins = [{"name": k, **sig["inputs"][k]} for k in order_in if k in sig["inputs"]]
    outs = [{"name": k, **sig["outputs"][k]} for k in order_out if k in sig["outputs"]]
    return ins, outs


class ExportRun:
    """State of one export: stage folder, references, file entries, parity records and failures."""

    def __init__(self, loaded: Loaded, stage: Path, towers: tuple[str, ...], gates: Gates, threads: int):
        self.loaded = loaded
        self.model = loaded.model
        self.cfg = loaded.cfg
        self.stage = stage
        self.towers = towers
        self.gates = gates
        self.threads = threads
        self.files: list[dict[str, Any]] = []
        self.parity: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []
        self.held = {t: example_inputs(self.cfg, t, PARITY_BATCH, seed=PARITY_SEED) for t in towers}
        with torch.no_grad():
            self.reference = {}
            for t in towers:
                out = build_tower(self.model, t)(*self.held[t].values())
                self.reference[t] = (out[0] if isinstance(out, tuple) else out).float().numpy()

    def check(self, entry: dict[str, Any], got: np.ndarray | None, *, note: str | None = None,
              variant_gate: str | None = None) -> None:
        """Compare a file's outputs ``got`` on the held-out batch with PyTorch; record the figures on ``entry`` and
        in the run, and a failure when its gate is not met (``got`` None: the file cannot run here)."""
        tower, variant = entry["tower"], entry["variant"]
        record: dict[str, Any] = {"file": entry["path"], "target": entry["target"], "tower": tower,
                                  "variant": variant}
        if got is None:
            record.update(ran=False, note=note or "not runnable here")
        else:
            figs = cosine_figures(got, self.reference[tower])
            if variant_gate == "fp16":
                g = {"gate": "min_cosine", "threshold": FP16_MIN_COSINE,
                     "passed": bool(figs["min_cosine"] >= FP16_MIN_COSINE)}
            else:
                g = gate(variant, figs, self.gates)
            record.update(ran=True, **figs, **g)
            if not g["passed"]:
                self.failures.append(record)
        entry["parity"] = {k: v for k, v in record.items() if k not in ("file", "target", "tower", "variant")}
        self.parity.append(record)

    def drop_target(self, target: str) -> None:
        """Forget the parity records and failures of a target whose files are not kept (ONNX written only as the
        source of the ORT files)."""
        self.parity = [p for p in self.parity if p["target"] != target]
        self.failures = [f for f in self.failures if f.get("target") != target]
