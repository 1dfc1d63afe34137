"""int8 ONNX towers: ONNX Runtime dynamic quantization of the backbone's MatMul/Gemm, the codebook head kept float.

Choices, each measured on this machine (PLATFORM.md "int8"):
- dynamic quantization (weights int8 offline, activations quantized per call): no calibration data needed, and
  every matmul-heavy part of a transformer tower shrinks about 4x;
- only MatMul/Gemm: ConvInteger ran 4x slower than the float Conv here;
- ``reduce_range=True`` (7-bit weights): on CPUs with AVX2 but no VNNI, full-range signed int8 weights saturate
  the 16-bit accumulators (cosine to fp32 fell to 0.93); reduced range gave 0.997-0.999;
- the codebook head (token-code scores, max-pool, sparsemax, weighted sum of codes) stays float: quantizing it
  collapses the sparse code weights. So does the audio_wave tower's log-mel front end (its power spectrum spans
  ~100 dB, which uint8 activations flatten: mean cosine 0.93 on the default preset). Their nodes are found through
  the exporter's ``name_scopes`` metadata (every node that came from the ``head`` / ``logmel`` module), so nothing
  depends on generated node names;
- the text tower is different: MiniLM's activations have outlier channels that per-tensor dynamic activation
  quantization cannot hold (mean cosine to fp32 0.77 per-tensor, 0.978 per-channel on the tiny preset, below the
  0.99 gate), while 47 of its 91 MB are the word-embedding table. So its int8 variant stores the embedding tables
  as int8 (Gather + DequantizeLinear, weight-only, exact matmuls): 0.999 mean cosine, 40% smaller.
"""

from __future__ import annotations

import ast
import logging
import os
import tempfile
from pathlib import Path

import onnx

HEAD_SCOPE = "head"
FRONT_END_SCOPE = "logmel"  # the audio_wave tower's log-mel: its power spectrum spans ~100 dB, uint8 cannot hold it
SCOPE_KEY = "pkg.torch.onnx.name_scopes"
QUANT_OPS = ("MatMul", "Gemm")
# op types quantized per tower (see the module docstring for why text differs)
TOWER_OPS: dict[str, tuple[str, ...]] = {"text": ("Gather",)}


def _scopes(node: onnx.NodeProto) -> list[str]:
    for prop in node.metadata_props:
        if prop.key == SCOPE_KEY:
            text = prop.value.strip()
            try:
                value = ast.literal_eval(text)
                return [str(s) for s in value] if isinstance(value, list | tuple) else [text]
            except (ValueError, SyntaxError):
                return [text]
    return []


def head_nodes(model: onnx.ModelProto, scope: str = HEAD_SCOPE) -> list[str]:
    """Names of the nodes that came from the codebook head module (``...head`` in their name scopes)."""
    out = []
    for node in model.graph.node:
        if any(s == scope or s.endswith("." + scope) for s in _scopes(node)):
            out.append(node.name)
    return out


def float_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes that must stay float: the codebook head and, in the audio_wave tower, the log-mel front end."""
    return head_nodes(model) + head_nodes(model, FRONT_END_SCOPE)


def quantizable_nodes(model: onnx.ModelProto) -> list[str]:
    return [n.name for n in model.graph.node if n.op_type in QUANT_OPS]


def quantize_onnx_int8(src: str | Path, dst: str | Path, *, tower: str = "image", keep_head_float: bool = True,
                       reduce_range: bool = True) -> dict:
    """Dynamic int8 copy of the ``tower`` graph ``src`` at ``dst`` (atomically). Returns what was done, for the
    manifest. ``tower`` picks the op types (MatMul/Gemm, or the embedding tables for ``text``)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = Path(src), Path(dst)
    model = onnx.load(str(src))
    excluded = float_nodes(model) if keep_head_float else head_nodes(model, FRONT_END_SCOPE)
    if keep_head_float and not head_nodes(model):
        raise RuntimeError(f"{src}: no nodes from the codebook head found in the name scopes; refusing to quantize it")
    op_types = TOWER_OPS.get(tower, QUANT_OPS)
    matmuls = quantizable_nodes(model)
    excluded_mm = [n for n in matmuls if n in set(head_nodes(model))]
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    root = logging.getLogger()  # quantize_dynamic logs a pre-processing hint on the root logger every call
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(
            str(src), tmp, op_types_to_quantize=list(op_types), nodes_to_exclude=excluded,
            weight_type=QuantType.QInt8, reduce_range=reduce_range, per_channel=False,
            extra_options={"MatMulConstBOnly": True},
        )
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        root.setLevel(level)
    quantized = onnx.load(str(dst), load_external_data=False)
    n_int = sum(1 for n in quantized.graph.node if n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul"))
    n_gather = sum(1 for i in quantized.graph.initializer if i.name.endswith("_quantized") and "embeddings" in i.name)
    return {
        "method": "onnxruntime.quantization.quantize_dynamic",
        "weight_type": "int8 (reduce_range, 7-bit)" if reduce_range else "int8",
        "activations": "uint8, dynamic per call" if n_int else "float (weight-only)",
        "op_types": list(op_types),
        "float_kept": ("codebook head" if keep_head_float else "none")
        + (", log-mel front end" if head_nodes(model, FRONT_END_SCOPE) else ""),
        "matmul_gemm_nodes": len(matmuls),
        "excluded_head_matmuls": len(excluded_mm),
        "excluded_nodes": len(excluded),
        "quantized_matmuls": n_int,
        "quantized_embedding_tables": n_gather,
    }
