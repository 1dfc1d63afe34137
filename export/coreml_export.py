"""Core ML export: one ML program (.mlpackage, iOS 16+) per tower, float16 and int8-weight variants, validated here.

Recipe: ``torch.export`` -> ``run_decompositions`` -> ``coremltools.convert(convert_to="mlprogram",
minimum_deployment_target=iOS16)``. Two workarounds, both for coremltools 9 reading torch 2.13 graphs:
- ``aten.zeros(..., dtype=torch.bool)`` keeps its dtype as a keyword, which the converter ignores (it builds a float
  zero and then fails on ``bitwise_not``); decomposing zeros/ones/new_ones/new_zeros into ``full`` first fixes it;
- the text tower calls MiniLM's embeddings and encoder directly (export/towers.py), because transformers' mask
  helpers emit ``new_ones`` and ``__and__`` which the converter does not know.

int8: ``coremltools.optimize.coreml.linear_quantize_weights`` (symmetric, per channel) on every weight except the
codebook, found by value (the codebook and its transpose), so the head stays float16 like the other targets', and
the audio_wave tower's log-mel constants (DFT kernels, mel matrix).

Core ML cannot predict on Linux; what can be checked here is checked (``validate_mlpackage``): program type,
specification version, input/output names, shapes and dtypes, quantized weights, and no sort/top-k ops.
Numbers are compared with PyTorch on macOS (tests/test_export_coreml.py).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from export.quiet import quiet
from export.towers import build_tower, example_inputs, tower_inputs, tower_outputs

if TYPE_CHECKING:
    from core.config import Sat2SoundConfig

MIN_SPEC_VERSION = 7  # iOS 16 / macOS 13 ML programs
FORBIDDEN_OPS = ("topk", "argsort", "sort")
_COREML_DTYPES = {65568: "float32", 65552: "float16", 131104: "int32"}  # ArrayFeatureType.ArrayDataType values


def _decompositions() -> dict:
    full = torch.export.default_decompositions()
    aten = torch.ops.aten
    wanted = (aten.zeros.default, aten.ones.default, aten.new_zeros.default, aten.new_ones.default)
    return {k: v for k, v in full.items() if k in wanted}


def convert_coreml(model: torch.nn.Module, cfg: Sat2SoundConfig, tower: str, *,
                   module: torch.nn.Module | None = None, deployment: str = "iOS16") -> Any:
    """The float16 ML program of ``tower`` (batch 1), in memory; ``module``: a ready module with the wrapper's
    positional inputs (a PT2E-converted tower: its int8 weights become ``constexpr_affine_dequantize``);
    ``deployment``: the minimum target (int8 activations, quantize / dequantize ops, need iOS17)."""
    import coremltools as ct

    wrapper = module if module is not None else build_tower(model, tower)
    ex = example_inputs(cfg, tower, 1)
    args = tuple(ex[k] for k in tower_inputs(tower))
    with quiet(), torch.no_grad():
        program = torch.export.export(wrapper, args).run_decompositions(_decompositions())
        return ct.convert(
            program, convert_to="mlprogram", minimum_deployment_target=getattr(ct.target, deployment),
            compute_precision=ct.precision.FLOAT16,
            outputs=[ct.TensorType(name=n) for n in tower_outputs(tower)],
        )


def _consts_matching(mlmodel: Any, arrays: list[np.ndarray]) -> list[str]:
    """Names of the program's 2-D constants equal (to float16 precision) to one of ``arrays`` or its transpose."""
    refs = [r for a in arrays for r in (np.asarray(a, np.float32), np.asarray(a, np.float32).T)]
    names = []
    for fn in mlmodel._mil_program.functions.values():
        for op in fn.operations:
            val = op.outputs[0].val if op.op_type == "const" else None
            if not isinstance(val, np.ndarray) or val.ndim != 2:
                continue
            for ref in refs:
                scale = float(np.abs(ref).max()) or 1.0
                if val.shape == ref.shape and np.allclose(val.astype(np.float32), ref, rtol=1e-2, atol=1e-3 * scale):
                    names.append(op.name)
                    break
    return names


def float_consts(mlmodel: Any, model: torch.nn.Module, tower: str) -> list[str]:
    """Constants that int8 must not touch: the codebook and, for audio_wave, the log-mel's DFT kernels and mel
    matrix (exact numbers; the mel matrix is found by value because the converter renames it ``transpose_*``)."""
    head = getattr(model, "head", None)
    names: list[str] = []
    if getattr(head, "kind", "") == "codebook":
        names = _consts_matching(mlmodel, [head.codebook.detach().float().numpy()])
        if not names:
            raise RuntimeError("no codebook constant found in the Core ML program; refusing to quantize the head blind")
    if tower == "audio_wave":
        from core.data.logmel_numpy import mel_filterbank

        names += _consts_matching(mlmodel, [mel_filterbank(model.cfg.audio)])
        names += [op.name for fn in mlmodel._mil_program.functions.values() for op in fn.operations
                  if op.op_type == "const" and "logmel" in op.name]
    return list(dict.fromkeys(names))


def quantize_coreml_int8(mlmodel: Any, kept: list[str]) -> tuple[Any, dict]:
    """int8-weight copy (per-channel symmetric); the constants named in ``kept`` stay float16."""
    import coremltools.optimize.coreml as cto

    op_cfg = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                         weight_threshold=512)
    config = cto.OptimizationConfig(global_config=op_cfg, op_name_configs={name: None for name in kept})
    with quiet():
        quantized = cto.linear_quantize_weights(mlmodel, config=config)
    info = {"method": "coremltools.optimize.coreml.linear_quantize_weights", "mode": "linear_symmetric",
            "dtype": "int8", "granularity": "per_channel", "weight_threshold": 512,
            "float_kept": "constants " + ", ".join(kept) if kept else "none"}
    return quantized, info


def save_mlpackage(mlmodel: Any, path: str | Path) -> Path:
    """Save atomically (a package is a folder: write beside it, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)) / path.name
    try:
        with quiet():
            mlmodel.save(str(tmp))
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)
    return path


def export_coreml(model: torch.nn.Module, cfg: Sat2SoundConfig, tower: str, out_dir: str | Path, *,
                  int8: bool = True) -> dict[str, tuple[Path, dict | None]]:
    """Write ``<tower>.fp16.mlpackage`` (and ``<tower>.int8.mlpackage``); returns {variant: (path, quant info)}."""
    out_dir = Path(out_dir)
    ml = convert_coreml(model, cfg, tower)
    result: dict[str, tuple[Path, dict | None]] = {
        "fp16": (save_mlpackage(ml, out_dir / f"{tower}.fp16.mlpackage"), None)}
    if int8:
        q, info = quantize_coreml_int8(ml, float_consts(ml, model, tower))
        result["int8"] = (save_mlpackage(q, out_dir / f"{tower}.int8.mlpackage"), info)
    return result


def _feature_shape(feature: Any) -> list[int]:
    return [int(d) for d in feature.type.multiArrayType.shape]


def _output_shapes(cfg: Sat2SoundConfig, tower: str) -> dict[str, list[int]]:
    shapes = {"embedding": [1, cfg.model.codebook.dim]}
    if tower == "image_grounding":
        shapes["patch_scores"] = [1, cfg.image.n_patches, cfg.model.codebook.size]
    return shapes


def validate_mlpackage(path: str | Path, cfg: Sat2SoundConfig, tower: str, *, int8: bool = False) -> dict:
    """Check what can be checked without macOS; raises RuntimeError with the reason, returns the facts."""
    import coremltools as ct

    path = Path(path)
    with quiet():
        mlmodel = ct.models.MLModel(str(path), skip_model_load=True)
    spec = mlmodel.get_spec()
    problems = []
    if spec.WhichOneof("Type") != "mlProgram":
        problems.append(f"not an ML program ({spec.WhichOneof('Type')})")
    if spec.specificationVersion < MIN_SPEC_VERSION:
        problems.append(f"specification version {spec.specificationVersion} < {MIN_SPEC_VERSION} (iOS 16)")
    ex = example_inputs(cfg, tower, 1)
    inputs = []
    for feat in spec.description.input:
        dtype = _COREML_DTYPES.get(feat.type.multiArrayType.dataType, str(feat.type.multiArrayType.dataType))
        inputs.append({"name": feat.name, "shape": _feature_shape(feat), "dtype": dtype})
    names = [i["name"] for i in inputs]
    if names != list(tower_inputs(tower)):
        problems.append(f"inputs {names} != {list(tower_inputs(tower))}")
    for i in inputs:
        if i["name"] in ex and i["shape"] != list(ex[i["name"]].shape):
            problems.append(f"input {i['name']} shape {i['shape']} != {list(ex[i['name']].shape)}")
    expected_out = _output_shapes(cfg, tower)
    outputs = [{"name": f.name, "shape": _feature_shape(f) or expected_out.get(f.name),
                "dtype": _COREML_DTYPES.get(f.type.multiArrayType.dataType, "?")} for f in spec.description.output]
    if [o["name"] for o in outputs] != list(tower_outputs(tower)):
        problems.append(f"outputs {[o['name'] for o in outputs]} != {list(tower_outputs(tower))}")
    ops = sorted({op.type for fn in spec.mlProgram.functions.values() for block in fn.block_specializations.values()
                  for op in block.operations})
    bad = [op for op in ops if any(f in op.lower() for f in FORBIDDEN_OPS)]
    if bad:
        problems.append(f"ops a sort-free model must not contain: {bad}")
    n_quant = sum(1 for fn in spec.mlProgram.functions.values() for block in fn.block_specializations.values()
                  for op in block.operations if op.type.startswith("constexpr_affine_dequantize")
                  or op.type.startswith("constexpr_blockwise"))
    if int8 and n_quant == 0:
        problems.append("int8 variant holds no quantized weights")
    if problems:
        raise RuntimeError(f"{path.name}: " + "; ".join(problems))
    return {"spec_version": int(spec.specificationVersion), "program": "mlprogram", "inputs": inputs,
            "outputs": outputs, "ops": len(ops), "quantized_weights": n_quant, "forbidden_ops": []}


def predict_coreml(path: str | Path, inputs: dict[str, Any], output: str = "embedding") -> np.ndarray:
    """Run a package with Core ML (macOS only); int64 inputs are fed as int32, one sample at a time (batch 1)."""
    import coremltools as ct

    with quiet():
        mlmodel = ct.models.MLModel(str(path))
    n = next(iter(inputs.values())).shape[0]
    rows = []
    for i in range(n):
        feed = {}
        for k, v in inputs.items():
            a = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
            a = a[i: i + 1]
            feed[k] = a.astype(np.int32) if a.dtype == np.int64 else a.astype(np.float32)
        rows.append(np.asarray(mlmodel.predict(feed)[output], dtype=np.float32).reshape(1, -1))
    return np.concatenate(rows)
