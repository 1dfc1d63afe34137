"""TFLite (LiteRT) export: one .tflite per tower with a ``serving_default`` signature named like the ONNX graph.

Recipe: ``litert_torch.convert(wrapper, (), sample_kwargs)`` then ``.export(path)``; run with
``ai_edge_litert.interpreter.Interpreter``. Passing the example inputs as keyword arguments, and returning a dict
(``named_outputs``), gives the signature its input and output names. LiteRT downcasts int64 I/O to int32.

Batch is fixed at 1: with a dynamic batch dimension the converter's JAX lowering fails on the reshapes of the
patch/stem flatten (measured with litert-torch 0.10), so phones call the tower once per tile/clip/text.

int8: ai-edge-quantizer's ``dynamic_wi8_afp32`` recipe (per-channel int8 weights, activations quantized on the fly)
with a ``no_quantize`` rule for every tensor of the codebook head and of the audio_wave tower's log-mel front end
(their names carry the module paths ``CodebookHead_head`` / ``LogMel_logmel``). MiniLM does not survive dynamic
activation quantization (see export/int8.py), so the text tower uses ``weight_only_wi8_afp32`` (int8
weights, float compute).

Sparsemax is sort-free by construction (core/model/sparsemax.py); ``tflite_ops`` lists the operators of a file so
the manifest records (and the tests check) that no SORT / TOPK / STABLEHLO op slipped in.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from core.artifacts import written_beside
from export.quiet import quiet as _quiet
from export.towers import build_tower, example_inputs, tower_inputs

if TYPE_CHECKING:
    from core.config import Sat2SoundConfig

FLOAT_REGEX = ".*(CodebookHead_head|LogMel_logmel).*"  # codebook head, log-mel front end
FORBIDDEN_OPS = ("SORT", "TOPK", "STABLEHLO")


def export_tflite(model: torch.nn.Module, cfg: Sat2SoundConfig, tower: str, path: str | Path) -> Path:
    """Convert ``tower`` to a float32 .tflite at ``path`` (batch 1, named signature), atomically."""
    import litert_torch

    path = Path(path)
    wrapper = build_tower(model, tower, named_outputs=True)
    ex = example_inputs(cfg, tower, 1)
    kwargs = {k: ex[k] for k in tower_inputs(tower)}
    with written_beside(path) as tmp, _quiet(), torch.no_grad():
        edge = litert_torch.convert(wrapper, (), kwargs)
        edge.export(str(tmp))
    return path


def quantize_tflite_int8(src: str | Path, dst: str | Path, *, tower: str) -> dict:
    """int8 copy of a .tflite (dynamic int8 weights+activations; weight-only for text), codebook head in float."""
    from ai_edge_quantizer import quantizer, recipe

    src, dst = Path(src), Path(dst)
    weight_only = tower == "text"
    base = recipe.weight_only_wi8_afp32() if weight_only else recipe.dynamic_wi8_afp32()
    rules = list(base) + [{"regex": FLOAT_REGEX, "operation": "*", "algorithm_key": "no_quantize"}]
    with written_beside(dst) as tmp, _quiet():
        result = quantizer.Quantizer(str(src), rules).quantize()
        result.export_model(str(tmp), overwrite=True)
    details = tflite_interpreter(dst).get_tensor_details()
    int8_tensors = [t["name"] for t in details if t["dtype"] == np.int8]
    in_float_parts = [n for n in int8_tensors if "CodebookHead_head" in n or "LogMel_logmel" in n]
    if in_float_parts:
        raise RuntimeError(f"{dst.name}: {len(in_float_parts)} tensor(s) of the codebook head / log-mel were "
                           "quantized, expected none")
    kept = "codebook head" + (", log-mel front end" if tower == "audio_wave" else "")
    return {"method": "ai-edge-quantizer", "recipe": "weight_only_wi8_afp32" if weight_only else "dynamic_wi8_afp32",
            "granularity": "per-channel", "float_kept": f"{kept} (no_quantize on {FLOAT_REGEX})",
            "int8_tensors": len(int8_tensors)}


def tflite_interpreter(path: str | Path, threads: int = 1, *, delegates: bool = True) -> Any:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if delegates else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    with _quiet():
        it = Interpreter(model_path=str(path), num_threads=threads, experimental_op_resolver_type=resolver)
        it.allocate_tensors()
    return it


def tflite_signature(path: str | Path) -> dict[str, Any]:
    """Input/output names, shapes and dtypes of the ``serving_default`` signature."""
    it = tflite_interpreter(path)
    runner = it.get_signature_runner()
    ins = runner.get_input_details()
    outs = runner.get_output_details()
    fmt = lambda d: {"shape": [int(x) for x in d["shape"]], "dtype": np.dtype(d["dtype"]).name}  # noqa: E731
    return {"inputs": {k: fmt(v) for k, v in ins.items()}, "outputs": {k: fmt(v) for k, v in outs.items()}}


def tflite_ops(path: str | Path) -> list[str]:
    """Sorted operator names of a .tflite file (read without the XNNPACK delegate, which would hide them)."""
    it = tflite_interpreter(path, delegates=False)
    return sorted({op["op_name"] for op in it._get_ops_details()})


def run_tflite(path: str | Path, inputs: Mapping[str, Any], *, output: str = "embedding",
               interpreter: Any | None = None) -> np.ndarray:
    """Run a batch through a batch-1 .tflite one row at a time; inputs are cast to the signature's dtypes."""
    it = interpreter or tflite_interpreter(path)
    runner = it.get_signature_runner()
    dtypes = {k: v["dtype"] for k, v in runner.get_input_details().items()}
    arrays = {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)) for k, v in
              inputs.items() if k in dtypes}
    n = next(iter(arrays.values())).shape[0]
    rows = []
    for i in range(n):
        feed = {k: np.ascontiguousarray(a[i: i + 1], dtype=dtypes[k]) for k, a in arrays.items()}
        rows.append(np.asarray(runner(**feed)[output], dtype=np.float32))
    return np.concatenate(rows)
