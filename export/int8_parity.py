"""How close an int8 graph stays to fp32, and which layers to keep float when it is not close enough.

MiniLM's FFN output layers take GELU outputs whose maximum is 50-80x their RMS; quantized per tensor they alone
pull the text embedding's cosine to fp32 down to ~0.85. Given a few real batches, ``quantize_tower`` compares the
int8 embedding with fp32 (``embedding_parity``) and keeps the most outlying nodes in float, 1, 2, 4, ... at a time
(``float_counts``), ranked by max/RMS of their input (``outlier_ratios``), until the mean cosine is high enough.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from export.onnx_graph import MATMUL_OPS
from export.ort_session import onnx_session, run_embeddings, session_feed


def embedding_parity(path: str | Path, feeds: list[dict[str, np.ndarray]], reference: np.ndarray) -> float:
    """Mean cosine between a graph's embeddings on ``feeds`` and the fp32 ``reference``."""
    e = run_embeddings(path, feeds)
    num = (e * reference).sum(axis=1)
    den = np.linalg.norm(e, axis=1) * np.linalg.norm(reference, axis=1)
    return float(np.mean(num / np.maximum(den, 1e-12)))


def outlier_ratios(model: onnx.ModelProto, nodes: list[str], feeds: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """max |x| / RMS(x) of the activation entering each MatMul/Gemm in ``nodes``, over ``feeds``.

    Per-tensor int8 spends its 255 levels on the largest value: an input whose maximum is tens of RMS (the GELU
    output entering BERT's FFN output layer) keeps only a few levels for everything else. Those nodes are the ones
    worth keeping in float, and this ranks them from one fp32 run instead of one quantization per node.
    """
    by_name = {n.name: n for n in model.graph.node}
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    inputs: dict[str, str] = {}
    for name in nodes:
        node = by_name[name]
        if node.op_type in MATMUL_OPS and node.input[0] not in inputs.values():
            inputs[name] = node.input[0]
            probe.graph.output.append(helper.make_tensor_value_info(node.input[0], onnx.TensorProto.FLOAT, None))
    if not inputs:
        return {}
    sess = onnx_session(probe.SerializeToString())
    wanted = sorted(set(inputs.values()))
    peak = dict.fromkeys(wanted, 0.0)
    sq = dict.fromkeys(wanted, 0.0)
    count = dict.fromkeys(wanted, 0)
    for feed in feeds:
        outs = sess.run(wanted, session_feed(sess, feed))
        for key, x in zip(wanted, outs):
            x = np.asarray(x, dtype=np.float64)
            peak[key] = max(peak[key], float(np.abs(x).max()))
            sq[key] += float((x * x).sum())
            count[key] += x.size
    ratio = {k: peak[k] / max(np.sqrt(sq[k] / max(count[k], 1)), 1e-12) for k in wanted}
    return {name: ratio[by_name[name].input[0]] for name in nodes if by_name[name].op_type in MATMUL_OPS}


def float_counts(cap: int) -> list[int]:
    """How many outlier nodes each attempt keeps in float: 0, 1, 2, 4, ... up to ``cap``."""
    counts, k = [0], 1
    while k < cap:
        counts.append(k)
        k *= 2
    if cap > 0:
        counts.append(cap)
    return counts
