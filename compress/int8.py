"""Post-training int8 of one exported ONNX tower, three ways, the codebook head always kept in float.

Schemes (all quantize only MatMul/Gemm nodes whose weight is a constant and Gathers from a large constant table -
the text tower's 30k x 384 word embeddings are half of MiniLM - never a node of the codebook head):
- ``dynamic``: ``quantize_dynamic`` - weights int8 per channel offline, activations quantized per call.
- ``weight-only``: ``MatMulNBitsQuantizer`` with 8 bits, symmetric blocks of 32 - int8 weights on disk, the
  matmul itself in float (MatMulNBits dequantizes; its Gather variant is 4-bit only, so embeddings stay float).
  The smallest accuracy loss; not faster (slower at batch 1 here).
- ``static``: ``quant_pre_process`` (``skip_symbolic_shape=True``: symbolic shape inference crashes on opset 20;
  ``skip_optimization=True`` so node names and the exporter's name scopes survive for the head exclusion), then
  ``quantize_static`` in QDQ format, per-channel weights, activation ranges from real calibration batches
  (compress/calibration.py).

Why these rules (PLATFORM.md, measured here):
- MatMul/Gemm only among the compute ops: ConvInteger ran 4x slower than the float Conv on this CPU.
- The codebook head (token-code scores, max-pool, sparsemax, weighted sum of codes) collapses under int8 (cosine
  0.1-0.8), so its nodes, found through the exporter's ``name_scopes`` metadata (export/onnx_int8.head_nodes), are
  excluded; a graph in which no head node can be found is refused rather than quantized blind.
- CPUs with AVX2 but no VNNI saturate the 16-bit intermediate sums of u8 x s8 products: signed full-range weights
  there gave cosine 0.85 to fp32 (static: 0.80). ``reduce_range`` (7-bit weights) fixes it (0.997). It is turned on
  when /proc/cpuinfo lists no VNNI flag (``cpu_int8_quirks``), and the decision is recorded in quantization.json.
- Outlier activations: MiniLM's FFN output layers take GELU outputs whose maximum is 50-80x their RMS; quantized
  per tensor they alone pull the text embedding's cosine to fp32 down to ~0.85. Given a few real batches,
  ``quantize_tower`` checks the int8 embedding against fp32 and keeps the most outlying nodes in float, one by one
  (ranked by max/RMS of their input, ``outlier_ratios``), until the mean cosine reaches ``min_parity``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from contracts.errors import ConfigError

SCHEMES: tuple[str, ...] = ("dynamic", "static", "weight-only")
QUANT_OPS: tuple[str, ...] = ("MatMul", "Gemm", "Gather")
MIN_GATHER_TABLE = 65536  # elements; the metadata embeddings (a few rows) stay float, word embeddings do not
VNNI_FLAGS: tuple[str, ...] = ("avx512_vnni", "avx_vnni", "amx_int8")
WEIGHT_ONLY_BLOCK = 32
# mean cosine of int8 vs fp32 embeddings on the parity batches. The default student's int8 text tower at 0.991 lost
# 0.020 image->text R@10% on the validation split (the gate's limit): 0.995 leaves room.
MIN_PARITY = 0.995
MAX_FLOAT_FRACTION = 0.25  # at most this share of the candidate nodes is kept float for parity
# ... and at most this many: past a few nodes, weight-only int8 (tried next) is both smaller and closer to fp32
# (default student's text tower: dynamic with 8 nodes float 28.1 MB / cosine 0.9953, weight-only 24.7 MB / 0.9994)
MAX_FLOAT_NODES = 4
FP16_MIN_ELEMENTS = 4096  # float constants at least this large are stored fp16 (computed fp32)
KEPT_METADATA = ("pkg.torch.onnx.name_scopes",)  # what the head detection needs; stack traces etc. are dropped
INT8_OPS = ("MatMulInteger", "DynamicQuantizeMatMul", "MatMulNBits", "QLinearMatMul", "DequantizeLinear",
            "QuantizeLinear", "DynamicQuantizeLinear", "MatMulIntegerToFloat", "GatherBlockQuantized")


def cpu_int8_quirks(cpuinfo: str | None = None) -> dict[str, Any]:
    """Whether int8 weights need ``reduce_range`` on this CPU, and why (recorded with the model)."""
    machine = platform.machine().lower()
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    flags = set()
    for line in cpuinfo.splitlines():
        if line.lower().startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
    x86 = machine in ("x86_64", "amd64", "i686", "x86") or "avx2" in flags
    vnni = sorted(flags & set(VNNI_FLAGS))
    if x86 and not vnni:
        return {"reduce_range": True, "cpu": machine, "vnni": [],
                "reason": "x86 without VNNI: u8 x s8 products saturate 16-bit sums; 7-bit weights (reduce_range)"}
    return {"reduce_range": False, "cpu": machine, "vnni": vnni,
            "reason": "VNNI present (or not x86): full-range int8 weights" if vnni else "not x86: full range"}


@contextlib.contextmanager
def quiet_quantizer() -> Iterator[None]:
    """ORT's quantizers log every node at INFO on the root logger; keep the console to our own progress."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _scope_head_nodes(model: onnx.ModelProto) -> list[str]:
    from export.onnx_int8 import head_nodes

    return head_nodes(model)


def weight_nodes(model: onnx.ModelProto, exclude: set[str]) -> list[str]:
    """Nodes to quantize: MatMul/Gemm whose second input is a constant weight, Gather from a constant table of at
    least MIN_GATHER_TABLE elements; none of ``exclude``."""
    sizes = {i.name: int(np.prod(i.dims)) for i in model.graph.initializer}
    out = []
    for n in model.graph.node:
        if n.name in exclude or len(n.input) < 2:
            continue
        weight = n.op_type in ("MatMul", "Gemm") and n.input[1] in sizes
        table = n.op_type == "Gather" and sizes.get(n.input[0], 0) >= MIN_GATHER_TABLE
        if weight or table:
            out.append(n.name)
    return out


def _atomic_target(dst: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    return Path(tmp)


def _embeddings(path: str | Path, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    from export.onnx_export import onnx_session

    sess = onnx_session(path)
    names = {i.name for i in sess.get_inputs()}
    return np.concatenate([sess.run(["embedding"], {k: v for k, v in f.items() if k in names})[0] for f in feeds])


def embedding_parity(path: str | Path, feeds: list[dict[str, np.ndarray]], reference: np.ndarray) -> float:
    """Mean cosine between a graph's embeddings on ``feeds`` and the fp32 ``reference``."""
    e = _embeddings(path, feeds)
    num = (e * reference).sum(axis=1)
    den = np.linalg.norm(e, axis=1) * np.linalg.norm(reference, axis=1)
    return float(np.mean(num / np.maximum(den, 1e-12)))


def outlier_ratios(model: onnx.ModelProto, nodes: list[str], feeds: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """max |x| / RMS(x) of the activation entering each MatMul/Gemm in ``nodes``, over ``feeds``.

    Per-tensor int8 spends its 255 levels on the largest value: an input whose maximum is tens of RMS (the GELU
    output entering BERT's FFN output layer) keeps only a few levels for everything else. Those nodes are the ones
    worth keeping in float, and this ranks them from one fp32 run instead of one quantization per node.
    """
    import onnxruntime as ort
    from onnx import helper

    by_name = {n.name: n for n in model.graph.node}
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    inputs: dict[str, str] = {}
    for name in nodes:
        node = by_name[name]
        if node.op_type in ("MatMul", "Gemm") and node.input[0] not in inputs.values():
            inputs[name] = node.input[0]
            probe.graph.output.append(helper.make_tensor_value_info(node.input[0], onnx.TensorProto.FLOAT, None))
    if not inputs:
        return {}
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    wanted = sorted(set(inputs.values()))
    peak = dict.fromkeys(wanted, 0.0)
    sq = dict.fromkeys(wanted, 0.0)
    count = dict.fromkeys(wanted, 0)
    for feed in feeds:
        outs = sess.run(wanted, {k: v for k, v in feed.items() if k in names})
        for key, x in zip(wanted, outs):
            x = np.asarray(x, dtype=np.float64)
            peak[key] = max(peak[key], float(np.abs(x).max()))
            sq[key] += float((x * x).sum())
            count[key] += x.size
    ratio = {k: peak[k] / max(np.sqrt(sq[k] / max(count[k], 1)), 1e-12) for k in wanted}
    out = {}
    for name in nodes:
        node = by_name[name]
        if node.op_type in ("MatMul", "Gemm"):
            out[name] = ratio[node.input[0]]
    return out


def _scope_of(model: onnx.ModelProto, name: str) -> str:
    from export.onnx_int8 import _scopes

    node = next((n for n in model.graph.node if n.name == name), None)
    scopes = _scopes(node) if node is not None else []
    return scopes[-2] if len(scopes) > 1 else (scopes[0] if scopes else "")


def compact(path: str | Path) -> dict[str, Any]:
    """Shrink a quantized graph in place without touching its int8 math.

    - Float constants that stayed float (the codebook - kept out of int8 on purpose -, the patch-embedding conv,
      small Gemm weights) of at least FP16_MIN_ELEMENTS elements are stored as float16 and cast back to float32 at
      load (ORT folds the Cast once): half the bytes, the same float computation, rounding at 1e-3 relative.
    - The exporter's per-node debug metadata (stack traces, FX node text, class paths: ~20% of a small graph) is
      dropped; the name scopes are kept so the codebook head can still be found.
    """
    from onnx import helper, numpy_helper

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


def _float_counts(cap: int) -> list[int]:
    """How many outlier nodes each attempt keeps in float: 0, 1, 2, 4, ... up to ``cap``."""
    counts, k = [0], 1
    while k < cap:
        counts.append(k)
        k *= 2
    if cap > 0:
        counts.append(cap)
    return counts


def _describe(scheme: str, rr: bool, calibrate_method: str) -> dict[str, str]:
    if scheme == "dynamic":
        return {"weights": "int8 per channel" + (" (reduce_range, 7-bit)" if rr else ""),
                "activations": "uint8, dynamic per call"}
    if scheme == "weight-only":
        return {"weights": f"int8 symmetric, blocks of {WEIGHT_ONLY_BLOCK} (MatMulNBits); embedding tables uint8",
                "activations": "float"}
    return {"weights": "int8 per channel" + (" (reduce_range, 7-bit)" if rr else ""),
            "activations": f"uint8 static, QDQ, {calibrate_method} calibration",
            "pre_process": "quant_pre_process(skip_optimization=True, skip_symbolic_shape=True)"}


def quantize_tower(src: str | Path, dst: str | Path, scheme: str, *, calibration: Any = None,
                   parity_feeds: list[dict[str, np.ndarray]] | None = None, min_parity: float = MIN_PARITY,
                   max_float_fraction: float = MAX_FLOAT_FRACTION, max_float_nodes: int = MAX_FLOAT_NODES,
                   reduce_range: bool | None = None, calibrate_method: str = "minmax",
                   compact_storage: bool = True) -> dict[str, Any]:
    """Write an int8 copy of the fp32 tower ``src`` at ``dst``; returns what was done (for quantization.json).

    ``calibration``: compress.calibration.CalibrationBatches, required by ``static``.
    ``parity_feeds``: a few real input batches. With them the int8 graph's embeddings are compared with fp32 (mean
    cosine). Below ``min_parity``, the attempt is repeated keeping the nodes with the most outlying input activations
    (``outlier_ratios``) in float: 1, 2, 4, ... up to ``max_float_nodes`` and ``max_float_fraction`` of the
    candidates. If that is not enough
    the tower falls back to ``weight-only`` (int8 storage, float math), and the attempt closest to fp32 is kept.
    Every attempt is recorded. ``reduce_range``: None = decide from this CPU (``cpu_int8_quirks``).
    ``compact_storage``: store the constants that stay float as float16 and drop debug metadata (``compact``).
    """
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown quantization scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    if scheme == "static" and calibration is None:
        raise ConfigError("the static scheme needs calibration data (--calib)")
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    rr = cpu_int8_quirks()["reduce_range"] if reduce_range is None else bool(reduce_range)
    model = onnx.load(str(src))
    head = _scope_head_nodes(model)
    if not head:
        raise ConfigError(f"{src}: no node of the codebook head found in the exporter's name scopes; refusing to "
                          "quantize a graph whose head cannot be kept in float")
    targets = weight_nodes(model, set(head))
    info: dict[str, Any] = {"scheme": scheme, "op_types": list(QUANT_OPS), "reduce_range": rr,
                            "excluded_nodes": head, "excluded_reason": "codebook head kept in float",
                            "quantized_candidates": len(targets)}
    with tempfile.TemporaryDirectory(prefix="s2s-int8-", dir=dst.parent) as work, quiet_quantizer():
        work = Path(work)
        pre = src
        if scheme == "static":
            from onnxruntime.quantization.shape_inference import quant_pre_process

            pre = work / "pre.onnx"
            quant_pre_process(str(src), str(pre), skip_optimization=True, skip_symbolic_shape=True)
            if sorted(_scope_head_nodes(onnx.load(str(pre)))) != sorted(head):
                raise ConfigError(f"{src}: pre-processing changed the codebook head's nodes; refusing to quantize")
        reference = _embeddings(src, parity_feeds) if parity_feeds else None
        ratios: dict[str, float] = {}
        plan: list[tuple[str, int]] = [(scheme, 0)]
        if reference is not None and scheme != "weight-only":
            ratios = outlier_ratios(model, targets, parity_feeds)
            cap = min(int(max_float_nodes), int(max_float_fraction * len(ratios)))
            plan = [(scheme, k) for k in _float_counts(cap)]
            plan.append(("weight-only", 0))
        ranked = sorted(ratios, key=lambda k: -ratios[k])
        attempts: list[dict[str, Any]] = []
        storages: list[dict[str, Any] | None] = []
        best: tuple[float, int] | None = None
        for i, (used, n_float) in enumerate(plan):
            path = work / f"attempt-{i}.onnx"
            kept = set(ranked[:n_float])
            todo = [t for t in targets if t not in kept]
            if used == "dynamic":
                _dynamic(src, path, todo, head, rr)
            elif used == "weight-only":
                _weight_only(model, path, todo, head)
            else:
                _static(pre, path, calibration, todo, head, rr, calibrate_method)
            storage = compact(path) if compact_storage else None
            storages.append(storage)
            if reference is None:
                best = (float("nan"), i)
                break
            parity = embedding_parity(path, parity_feeds, reference)
            attempts.append({"scheme": used, "kept_float": n_float, "parity": round(parity, 6),
                             "bytes": path.stat().st_size})
            if best is None or parity > best[0]:
                best = (parity, i)
            if parity >= min_parity:
                break
        chosen = best[1]
        used, n_float = plan[chosen]
        tmp = _atomic_target(dst)
        try:
            shutil.copyfile(work / f"attempt-{chosen}.onnx", tmp)
            os.replace(tmp, dst)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    info.update(_describe(used, rr and used != "weight-only", calibrate_method))
    info["reduce_range"] = rr and used != "weight-only"
    info["scheme_used"] = used
    info["storage"] = storages[chosen]
    if used != scheme:
        info["fallback"] = (f"{scheme} stayed below parity {min_parity} with up to {plan[-2][1]} outlier nodes in "
                            f"float; weight-only (int8 weights, float math) came closest to fp32")
    info["parity"] = {"measured": reference is not None, "target": min_parity, "attempts": attempts,
                      "chosen": attempts[chosen] if attempts else None,
                      "met": bool(attempts) and attempts[chosen]["parity"] >= min_parity,
                      "samples": int(reference.shape[0]) if reference is not None else 0}
    info["kept_float_sensitive"] = [{"node": n, "scope": _scope_of(model, n), "outlier_ratio": round(ratios[n], 1)}
                                    for n in ranked[:n_float]]
    quantized = onnx.load(str(dst), load_external_data=False)
    ops: dict[str, int] = {}
    for n in quantized.graph.node:
        if n.op_type in INT8_OPS:
            ops[n.op_type] = ops.get(n.op_type, 0) + 1
    info["int8_ops"] = ops
    info["bytes"] = dst.stat().st_size
    info["fp32_bytes"] = src.stat().st_size
    if not ops:
        raise ConfigError(f"{src}: nothing was quantized ({len(targets)} candidate nodes)")
    return info


def _dynamic(src: Path, dst: Path, targets: list[str], head: list[str], reduce_range: bool) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), op_types_to_quantize=list(QUANT_OPS), nodes_to_quantize=targets,
                     nodes_to_exclude=head, weight_type=QuantType.QInt8, reduce_range=reduce_range,
                     per_channel=True, extra_options={"MatMulConstBOnly": True})


def _weight_only(model: onnx.ModelProto, dst: Path, targets: list[str], head: list[str]) -> None:
    """MatMul weights to 8-bit MatMulNBits; then large Gather tables to uint8 (dynamic GatherQuant: rows are
    dequantized after the lookup, so the math stays float)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    by_name = {n.name: n for n in model.graph.node}
    matmuls = [t for t in targets if by_name[t].op_type == "MatMul"]
    gathers = [t for t in targets if by_name[t].op_type == "Gather"]
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    q = MatMulNBitsQuantizer(copy, bits=8, block_size=WEIGHT_ONLY_BLOCK, is_symmetric=True, accuracy_level=None,
                             nodes_to_exclude=head, nodes_to_include=matmuls, op_types_to_quantize=("MatMul",))
    q.process()
    if not gathers:
        q.model.save_model_to_file(str(dst), use_external_data_format=False)
        return
    nbits = dst.with_name(dst.stem + ".nbits.onnx")
    q.model.save_model_to_file(str(nbits), use_external_data_format=False)
    try:
        quantize_dynamic(str(nbits), str(dst), op_types_to_quantize=["Gather"], nodes_to_quantize=gathers,
                         nodes_to_exclude=head, weight_type=QuantType.QUInt8)
    finally:
        nbits.unlink(missing_ok=True)


def _static(pre: Path, dst: Path, calibration: Any, targets: list[str], head: list[str], reduce_range: bool,
            calibrate_method: str) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if calibrate_method not in methods:
        raise ConfigError(f"unknown calibration method {calibrate_method!r}; expected one of {', '.join(methods)}")
    calibration.rewind()
    quantize_static(str(pre), str(dst), calibration.reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    reduce_range=reduce_range, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=list(QUANT_OPS), nodes_to_quantize=targets, nodes_to_exclude=head,
                    calibrate_method=methods[calibrate_method], extra_options={"MatMulConstBOnly": True})
