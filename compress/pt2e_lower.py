"""Lowering one PT2E-quantized tower (compress/pt2e.py) to ONNX, TFLite and Core ML: the same int8 model everywhere.

- ONNX: ``convert_pt2e(fold_quantize=True)`` -> ``torch.onnx.export`` (dynamo, opset 20, dynamic batch, the tower's
  input/output names: export/onnx_export.py). Weights arrive as int8 initializers + DequantizeLinear; static
  activations as QuantizeLinear/DequantizeLinear pairs that ORT fuses into QGemm / QLinearMatMul.
- TFLite: ``convert_pt2e(fold_quantize=False)`` -> ``litert_torch.convert`` (batch 1, named signature); the
  converter folds the Q/DQ pairs into int8 tensors (FULLY_CONNECTED / CONV_2D with int8 weights).
- Core ML: ``convert_pt2e(fold_quantize=True)`` -> ``coremltools.convert`` via torch.export: int8 weights become
  ``constexpr_affine_dequantize``; static activations ``quantize`` / ``dequantize`` ops. Both need iOS 17 as the
  minimum target (with iOS 16 the converter routes int8 weights through a ``cast`` that refuses int8).

Each file is written atomically by the exporters it reuses; every lowering records what came out of it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from compress.pt2e import Pt2eTower, count_quantized
from core.artifacts import written_beside
from export.quiet import quiet
from export.towers import example_inputs, tower_inputs, tower_outputs

if TYPE_CHECKING:
    from core.config import Sat2SoundConfig

LOWER_TARGETS: tuple[str, ...] = ("onnx", "tflite", "coreml")


class _Named(torch.nn.Module):
    """Keyword inputs in, {output name: tensor} out: how a LiteRT signature gets its names (export/tflite_export.py)."""

    def __init__(self, inner: torch.nn.Module, tower: str):
        super().__init__()
        self.inner, self.tower = inner, tower

    def forward(self, **kwargs: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.inner(*[kwargs[k] for k in tower_inputs(self.tower)])
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return dict(zip(tower_outputs(self.tower), outs))


def lower_onnx(pt: Pt2eTower, cfg: Sat2SoundConfig, path: str | Path) -> dict[str, Any]:
    """The ONNX int8 file of ``pt`` (QDQ, dynamic batch) at ``path``; returns the facts of the graph."""
    import onnx

    from export.onnx_export import export_onnx
    from export.onnx_graph import int8_op_counts

    converted = pt.converted(fold=True)
    path = export_onnx(None, cfg, pt.tower, path, module=converted)
    graph = onnx.load(str(path), load_external_data=False)
    return {"target": "onnx", "file": path.name, "bytes": path.stat().st_size, "int8_ops": int8_op_counts(graph),
            "q_dq_nodes_torch": count_quantized(converted), **pt.describe()}


def lower_tflite(pt: Pt2eTower, cfg: Sat2SoundConfig, path: str | Path) -> dict[str, Any]:
    """The LiteRT int8 file of ``pt`` (batch 1, ``serving_default`` signature) at ``path``."""
    import litert_torch

    from export.tflite_export import tflite_interpreter

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    named = _Named(pt.converted(fold=False), pt.tower)  # exported modules refuse .eval(); already in eval
    ex = example_inputs(cfg, pt.tower, 1)
    kwargs = {k: ex[k] for k in tower_inputs(pt.tower)}
    with written_beside(path) as tmp, quiet(), warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        litert_torch.convert(named, (), kwargs).export(str(tmp))
    details = tflite_interpreter(path).get_tensor_details()
    int8 = [t["name"] for t in details if t["dtype"] == np.int8]
    if not int8:
        raise RuntimeError(f"{path.name}: the PT2E model lowered to TFLite without a single int8 tensor")
    return {"target": "tflite", "file": path.name, "bytes": path.stat().st_size, "int8_tensors": len(int8),
            **pt.describe()}


def lower_coreml(pt: Pt2eTower, cfg: Sat2SoundConfig, path: str | Path) -> dict[str, Any]:
    """The Core ML ML program of ``pt`` at ``path`` (.mlpackage, batch 1), spec-validated (predict needs macOS)."""
    from export.coreml_export import convert_coreml, save_mlpackage, validate_mlpackage

    deployment = "iOS17"  # iOS16's converter casts the int8 weights through a ``cast`` op that refuses int8
    ml = convert_coreml(None, cfg, pt.tower, module=pt.converted(fold=True), deployment=deployment)
    path = save_mlpackage(ml, path)
    facts = validate_mlpackage(path, cfg, pt.tower, int8=True)
    return {"target": "coreml", "file": path.name, "bytes": dir_bytes(path), "minimum_deployment_target": deployment,
            "quantized_weights": facts["quantized_weights"], "spec_version": facts["spec_version"], **pt.describe()}


def dir_bytes(path: str | Path) -> int:
    """Size of a file, or of every file under a folder (an .mlpackage)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def lower(pt: Pt2eTower, cfg: Sat2SoundConfig, target: str, folder: str | Path) -> tuple[Path, dict[str, Any]]:
    """Lower ``pt`` to ``target`` under ``folder`` as ``<tower>.int8.<ext>``; returns (path, facts)."""
    folder = Path(folder)
    if target == "onnx":
        path = folder / f"{pt.tower}.int8.onnx"
        return path, lower_onnx(pt, cfg, path)
    if target == "tflite":
        path = folder / f"{pt.tower}.int8.tflite"
        return path, lower_tflite(pt, cfg, path)
    if target == "coreml":
        path = folder / f"{pt.tower}.int8.mlpackage"
        return path, lower_coreml(pt, cfg, path)
    raise ValueError(f"unknown lowering target {target!r}; expected one of {', '.join(LOWER_TARGETS)}")
