"""What int8 needs to know about an exported tower graph: which nodes stay float, which weights to quantize, what
was quantized, and how to store what stayed float compactly.

Nodes are found through the exporter's ``pkg.torch.onnx.name_scopes`` metadata (the module path each node came
from), so nothing depends on generated node names:
- the codebook head (``...head``: token-code scores, max-pool, sparsemax, weighted sum of codes) collapses under
  int8 (its sparse code weights), so it stays float;
- the audio_wave tower's log-mel front end (``...logmel``): its power spectrum spans ~100 dB, which uint8
  activations flatten (mean cosine 0.93 on the default preset), so it stays float too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

SCOPE_KEY = "pkg.torch.onnx.name_scopes"
HEAD_SCOPE = "head"
FRONT_END_SCOPE = "logmel"
MATMUL_OPS: tuple[str, ...] = ("MatMul", "Gemm")
MIN_GATHER_TABLE = 65536  # elements; the metadata embeddings (a few rows) stay float, word embeddings do not
FP16_MIN_ELEMENTS = 4096  # float constants at least this large are stored fp16 (computed fp32)
KEPT_METADATA = (SCOPE_KEY,)  # what the head detection needs; stack traces etc. are dropped
INT8_OPS: tuple[str, ...] = ("MatMulInteger", "DynamicQuantizeMatMul", "MatMulNBits", "QLinearMatMul",
                             "DequantizeLinear", "QuantizeLinear", "DynamicQuantizeLinear", "MatMulIntegerToFloat",
                             "GatherBlockQuantized")
INT8_MATMUL_OPS: tuple[str, ...] = ("MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulNBits",
                                    "QLinearMatMul", "QGemm")


# ------------------------------------------------------------------------------------------------ scopes


def node_scopes(node: onnx.NodeProto) -> list[str]:
    """The module path a node came from, outermost first (empty when the exporter recorded none)."""
    for prop in node.metadata_props:
        if prop.key == SCOPE_KEY:
            text = prop.value.strip()
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                return [text]
            return [str(s) for s in value] if isinstance(value, list | tuple) else [text]
    return []


def scope_nodes(model: onnx.ModelProto, scope: str) -> list[str]:
    """Names of the nodes that came from a module called ``scope`` (``scope`` or ``....scope`` in their scopes)."""
    return [node.name for node in model.graph.node
            if any(s == scope or s.endswith("." + scope) for s in node_scopes(node))]


def head_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes of the codebook head."""
    return scope_nodes(model, HEAD_SCOPE)


def front_end_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes of the audio_wave tower's log-mel front end (none in the other towers)."""
    return scope_nodes(model, FRONT_END_SCOPE)


def scope_of(model: onnx.ModelProto, name: str) -> str:
    """The module a node belongs to (its innermost scope but one: the layer rather than the op), for reports."""
    node = next((n for n in model.graph.node if n.name == name), None)
    scopes = node_scopes(node) if node is not None else []
    return scopes[-2] if len(scopes) > 1 else (scopes[0] if scopes else "")


# ------------------------------------------------------------------------------------------------ weights


def weight_nodes(model: onnx.ModelProto, op_types: Iterable[str], exclude: set[str]) -> list[str]:
    """Nodes to quantize, none of ``exclude``: of ``op_types``, the MatMul/Gemm whose second input is a constant
    weight and the Gathers from a constant table of at least MIN_GATHER_TABLE elements."""
    ops = set(op_types)
    sizes = {i.name: int(np.prod(i.dims)) for i in model.graph.initializer}
    out = []
    for n in model.graph.node:
        if n.name in exclude or n.op_type not in ops or len(n.input) < 2:
            continue
        weight = n.op_type in MATMUL_OPS and n.input[1] in sizes
        table = n.op_type == "Gather" and sizes.get(n.input[0], 0) >= MIN_GATHER_TABLE
        if weight or table:
            out.append(n.name)
    return out


def matmul_nodes(model: onnx.ModelProto) -> list[str]:
    return [n.name for n in model.graph.node if n.op_type in MATMUL_OPS]


def int8_op_counts(model: onnx.ModelProto) -> dict[str, int]:
    """How many nodes of each int8 op type (INT8_OPS) a graph holds."""
    ops: dict[str, int] = {}
    for n in model.graph.node:
        if n.op_type in INT8_OPS:
            ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return ops


def quantized_counts(model: onnx.ModelProto) -> dict[str, int]:
    """Matmuls with int8 weights (an int8 matmul op, or a MatMul/Gemm fed by a DequantizeLinear) and embedding
    tables stored int8 (a Gather from an 8-bit constant or from a DequantizeLinear) in a quantized graph."""
    eight_bit = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    int8_tables = {i.name for i in model.graph.initializer if i.data_type in eight_bit}
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    matmuls = tables = 0
    for n in model.graph.node:
        if n.op_type in INT8_MATMUL_OPS or (n.op_type in MATMUL_OPS and len(n.input) > 1
                                            and n.input[1] in dequantized):
            matmuls += 1
        elif n.op_type == "Gather" and (n.input[0] in int8_tables or n.input[0] in dequantized):
            tables += 1
    return {"quantized_matmuls": matmuls, "quantized_embedding_tables": tables}


# ------------------------------------------------------------------------------------------------ storage


def compact(path: str | Path) -> dict[str, Any]:
    """Shrink a quantized graph in place without touching its int8 math.

    - Float constants that stayed float (the codebook - kept out of int8 on purpose -, the patch-embedding conv,
      small Gemm weights) of at least FP16_MIN_ELEMENTS elements are stored as float16 and cast back to float32 at
      load (ORT folds the Cast once): half the bytes, the same float computation, rounding at 1e-3 relative.
    - The exporter's per-node debug metadata (stack traces, FX node text, class paths: ~20% of a small graph) is
      dropped; the name scopes are kept so the codebook head can still be found.
    """
    path = Path(path)
    model = onnx.load(str(path))
    graph = model.graph
    consumers: dict[str, set[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, set()).add(node.op_type)
    quant_ops = set(INT8_OPS)
    halved, casts = [], []
    keep = []
    for init in graph.initializer:
        ops = consumers.get(init.name, set())
        if (init.data_type == onnx.TensorProto.FLOAT and int(np.prod(init.dims)) >= FP16_MIN_ELEMENTS and ops
                and not ops & quant_ops):
            half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name + "__fp16")
            keep.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], name=init.name + "__cast_fp32",
                                          to=onnx.TensorProto.FLOAT))
            halved.append(init.name)
        else:
            keep.append(init)
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    dropped = 0
    for node in graph.node:
        props = [(p.key, p.value) for p in node.metadata_props]
        kept = [(k, v) for k, v in props if k in KEPT_METADATA]
        dropped += len(props) - len(kept)
        del node.metadata_props[:]
        for k, v in kept:
            node.metadata_props.add(key=k, value=v)
    before = path.stat().st_size
    onnx.save(model, str(path))
    return {"fp16_constants": halved, "debug_metadata_dropped": dropped, "bytes_before": before,
            "bytes_after": path.stat().st_size}
