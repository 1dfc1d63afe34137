"""The PT2E side of `sat2sound quantize`: which method each target gets, and the PT2E files of an int8 folder.

Methods (``--method``):
- ``pt2e``: one torchao PT2E model per tower (compress/pt2e.py, QAT in compress/qat.py), lowered to every target in
  ``PT2E_TARGETS`` (compress/pt2e_lower.py).
- ``native``: today's per-target tools: ORT quantization of the ONNX graph here (export/int8.py), ai-edge-quantizer
  and coremltools weight quantization when `sat2sound export` writes TFLite and Core ML.
- ``auto`` (default): per target the method that won benchmarks/int8_methods.py (``DEFAULT_METHODS``, retention
  first, then speed; the figures and the reasons are in docs/int8_methods.md).

Layout inside the int8 folder: ``<tower>.int8.onnx`` at the top is the ONNX target's int8 (whichever method made
it: the gate, the compress report and `export` read it there); the PT2E lowerings for the other targets sit in
``pt2e/<tower>.int8.{onnx,tflite,mlpackage}``, listed with their sha256 in the manifest's ``pt2e`` section, which
`export` copies instead of quantizing again (export/targets.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from compress.pt2e import PT2E_SCHEMES, Pt2eTower, quantize_pt2e_tower
from compress.pt2e_lower import dir_bytes, lower
from compress.qat import QAT_TOWERS, QatConfig, qat_pt2e_tower
from contracts.artifacts import sha256_file
from contracts.errors import ConfigError, DataError
from export.manifest import tree_sha256

METHODS: tuple[str, ...] = ("auto", "pt2e", "native")
PT2E_TARGETS: tuple[str, ...] = ("onnx", "tflite", "coreml")
PT2E_DIR = "pt2e"
# Measured on the default student (benchmarks/int8_methods.py, docs/int8_methods.md), retention first, then the size
# and speed aims, then speed. ONNX: both native and PT2E dynamic keep R@10% within 1 point; native files are
# 2.4-2.8x smaller than fp32 and no slower, PT2E's 1.5-1.7x and slower on image / audio (float Gather tables, QDQ
# overhead). TFLite: litert-torch 0.10 keeps PT2E's weights in float with DEQUANTIZE/QUANTIZE at run time (no
# smaller, 6-9x slower). Core ML: no numbers on Linux; native's files are smaller (26 vs 38 MB, all towers).
DEFAULT_METHODS: dict[str, str] = {"onnx": "native", "tflite": "native", "coreml": "native"}
# PT2E static loses image->text (MiniLM's outlier activations: text cosine 0.93) where dynamic keeps it (0.9993)
DEFAULT_PT2E_SCHEME = "dynamic"
QAT_SAMPLES = 1024


def resolve_methods(method: str) -> dict[str, str]:
    """{target: "pt2e" | "native"} for ``--method``; ConfigError for an unknown one."""
    if method not in METHODS:
        raise ConfigError(f"unknown int8 method {method!r}; expected one of {', '.join(METHODS)}")
    if method == "auto":
        return dict(DEFAULT_METHODS)
    return dict.fromkeys(PT2E_TARGETS, method)


def check_pt2e_args(scheme: str, qat_epochs: int, train_data: Path | None) -> None:
    """Bad combinations are one-line errors before any work starts."""
    if scheme not in PT2E_SCHEMES:
        raise ConfigError(f"unknown PT2E scheme {scheme!r}; expected one of {', '.join(PT2E_SCHEMES)}")
    if qat_epochs < 0:
        raise ConfigError(f"--qat takes a number of epochs >= 1 (got {qat_epochs})")
    if qat_epochs and (train_data is None or not train_data.is_dir()):
        raise ConfigError("--qat needs training data: pass --data DIR (a dataset folder with a train split); "
                          "QAT fine-tunes the int8 towers on it")


def pt2e_ptq(model: Any, cfg: Any, towers: list[str], scheme: str, batches: dict[str, list[dict[str, Any]]],
             progress: bool) -> dict[str, Pt2eTower]:
    """Post-training PT2E of every tower on its calibration batches."""
    out = {}
    for tower in towers:
        if not batches.get(tower):
            raise DataError(f"no calibration samples for the {tower} tower (the calibration set is empty)")
        out[tower] = quantize_pt2e_tower(model, cfg, tower, scheme, batches[tower], progress=progress)
    return out


def pt2e_qat(model: Any, cfg: Any, towers: list[str], train_data: Path, epochs: int, progress: bool,
             ptq: dict[str, Pt2eTower]) -> dict[str, Pt2eTower]:
    """QAT of the image / audio towers on ``train_data``'s train split; the others keep their PTQ model."""
    from compress.calibration import table_batches
    from core.data.features import FeatureTable

    table = FeatureTable.build(train_data, "train", cfg, progress=progress)
    if len(table) == 0:
        raise DataError("QAT needs training data; the train split is empty", path=train_data)
    out = dict(ptq)
    for tower in towers:
        if tower in QAT_TOWERS:
            batches = table_batches(table, cfg, tower, n_samples=QAT_SAMPLES, seed=1)
            out[tower] = qat_pt2e_tower(model, cfg, tower, batches, QatConfig(epochs=epochs), progress=progress)
    return out


def write_pt2e(stage: Path, pts: dict[str, Pt2eTower], cfg: Any, targets: list[str],
               top_onnx: bool) -> dict[str, dict[str, dict[str, Any]]]:
    """Lower every tower to ``targets`` into the stage folder; returns {target: {tower: record}}. With
    ``top_onnx`` the ONNX lowering is the folder's ``<tower>.int8.onnx`` (ONNX's method is PT2E)."""
    records: dict[str, dict[str, dict[str, Any]]] = {}
    folder = stage / PT2E_DIR
    for target in targets:
        for tower, pt in pts.items():
            path, info = lower(pt, cfg, target, folder)
            if target == "onnx" and top_onnx:
                dst = stage / path.name
                shutil.move(str(path), dst)
                path = dst
            rel = path.relative_to(stage).as_posix()
            info.update(file=rel, bytes=dir_bytes(path),
                        sha256=sha256_file(path) if path.is_file() else tree_sha256(path))
            records.setdefault(target, {})[tower] = info
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
    return records
