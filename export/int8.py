"""Post-training int8 of one exported ONNX tower, three ways, the codebook head always kept in float.

The one int8 implementation for ONNX graphs: `sat2sound quantize` (compress/quantize.py) and `sat2sound export`
(export/exporter.py) both call ``quantize_tower``.

Schemes (all quantize only MatMul/Gemm nodes whose weight is a constant and Gathers from a large constant table -
the text tower's 30k x 384 word embeddings are half of MiniLM - never a node of the codebook head or of the
audio_wave tower's log-mel front end, export/onnx_graph.py):
- ``dynamic``: ``quantize_dynamic`` - weights int8 per channel offline, activations quantized per call.
- ``weight-only``: ``MatMulNBitsQuantizer`` with 8 bits, symmetric blocks of 32 - int8 weights on disk, the
  matmul itself in float (MatMulNBits dequantizes; its Gather variant is 4-bit only, so embedding tables go through
  ``quantize_dynamic``'s Gather quantization instead). The smallest accuracy loss; not faster (slower at batch 1).
- ``static``: ``quant_pre_process`` (``skip_symbolic_shape=True``: symbolic shape inference crashes on opset 20;
  ``skip_optimization=True`` so node names and the exporter's name scopes survive for the head exclusion), then
  ``quantize_static`` in QDQ format, per-channel weights, activation ranges from real calibration batches
  (compress/calibration.py).

Why these rules (measured on the development machines):
- MatMul/Gemm only among the compute ops: ConvInteger ran 4x slower than the float Conv on this CPU.
- One op list per tower (``tower_ops``): MiniLM's activations have outlier channels that activation quantization
  cannot hold (mean cosine to fp32 0.77 per tensor, 0.978 per channel on the tiny preset), while 47 of its 91 MB
  are the word-embedding table. So the text tower's schemes that quantize activations (dynamic, static) store only
  its embedding tables as int8 (Gather + DequantizeLinear, exact float matmuls: 0.999 mean cosine, 40% smaller);
  ``weight-only`` quantizes no activation and takes the matmul weights too.
- The codebook head (token-code scores, max-pool, sparsemax, weighted sum of codes) collapses under int8 (cosine
  0.1-0.8), so its nodes are excluded; a graph in which no head node can be found is refused rather than
  quantized blind (unless ``keep_head_float=False``: a model with the global head).
- CPUs with AVX2 but no VNNI saturate the 16-bit intermediate sums of u8 x s8 products: signed full-range weights
  there gave cosine 0.85 to fp32 (static: 0.80). ``reduce_range`` (7-bit weights) fixes it (0.997). It is turned on
  when /proc/cpuinfo lists no VNNI flag (``cpu_int8_quirks``), and the decision is recorded with the model.
- Outlier activations elsewhere: with a few real batches (``parity_feeds``) the int8 embedding is checked against
  fp32 and the most outlying nodes are kept float until the mean cosine reaches ``min_parity``
  (export/int8_parity.py); past a few nodes, weight-only is tried.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from contracts.artifacts import Tower
from contracts.errors import ConfigError
from core.artifacts import written_beside
from export.int8_parity import embedding_parity, float_counts, outlier_ratios
from export.onnx_graph import (
    compact,
    front_end_nodes,
    head_nodes,
    int8_op_counts,
    matmul_nodes,
    quantized_counts,
    scope_of,
    weight_nodes,
)
from export.ort_session import run_embeddings

SCHEMES: tuple[str, ...] = ("dynamic", "static", "weight-only")
QUANT_OPS: tuple[str, ...] = ("MatMul", "Gemm", "Gather")
# op types quantized per tower by the schemes that quantize activations (see the module docstring)
TOWER_OPS: dict[str, tuple[str, ...]] = {Tower.TEXT: ("Gather",)}
VNNI_FLAGS: tuple[str, ...] = ("avx512_vnni", "avx_vnni", "amx_int8")
WEIGHT_ONLY_BLOCK = 32
# mean cosine of int8 vs fp32 embeddings on the parity batches. The default student's int8 text tower at 0.991 lost
# 0.020 image->text R@10% on the validation split (the gate's limit): 0.995 leaves room.
MIN_PARITY = 0.995
MAX_FLOAT_FRACTION = 0.25  # at most this share of the candidate nodes is kept float for parity
# ... and at most this many: past a few nodes, weight-only int8 (tried next) is both smaller and closer to fp32
# (default student's text tower: dynamic with 8 nodes float 28.1 MB / cosine 0.9953, weight-only 24.7 MB / 0.9994)
MAX_FLOAT_NODES = 4


def tower_ops(tower: str, scheme: str) -> tuple[str, ...]:
    """The op types ``scheme`` quantizes in ``tower``."""
    return QUANT_OPS if scheme == "weight-only" else TOWER_OPS.get(tower, QUANT_OPS)


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


def _describe(scheme: str, rr: bool, calibrate_method: str, matmuls: int) -> dict[str, str]:
    weights = "int8 per channel" + (" (reduce_range, 7-bit)" if rr else "")
    if scheme == "weight-only":
        return {"method": "MatMulNBitsQuantizer (8 bits) + quantize_dynamic (Gather)",
                "weights": f"int8 symmetric, blocks of {WEIGHT_ONLY_BLOCK} (MatMulNBits); embedding tables uint8",
                "activations": "float"}
    if not matmuls:
        return {"method": f"onnxruntime.quantization.quantize_{scheme}",
                "weights": "embedding tables int8, matmul weights float", "activations": "float (weight-only)"}
    if scheme == "dynamic":
        return {"method": "onnxruntime.quantization.quantize_dynamic", "weights": weights,
                "activations": "uint8, dynamic per call"}
    return {"method": "onnxruntime.quantization.quantize_static", "weights": weights,
            "activations": f"uint8 static, QDQ, {calibrate_method} calibration",
            "pre_process": "quant_pre_process(skip_optimization=True, skip_symbolic_shape=True)"}


def _float_kept(head: list[str], front_end: list[str]) -> str:
    kept = (["codebook head"] if head else []) + (["log-mel front end"] if front_end else [])
    return ", ".join(kept) or "none"


def quantize_tower(src: str | Path, dst: str | Path, scheme: str = "dynamic", *, tower: str,
                   keep_head_float: bool = True, calibration: Any = None,
                   parity_feeds: list[dict[str, np.ndarray]] | None = None, min_parity: float = MIN_PARITY,
                   max_float_fraction: float = MAX_FLOAT_FRACTION, max_float_nodes: int = MAX_FLOAT_NODES,
                   reduce_range: bool | None = None, calibrate_method: str = "minmax",
                   compact_storage: bool = True) -> dict[str, Any]:
    """Write an int8 copy of the fp32 ``tower`` graph ``src`` at ``dst`` (atomically); returns what was done (for
    quantization.json and the export manifest).

    ``tower`` picks the op types (``tower_ops``). ``keep_head_float``: exclude the codebook head (refused when the
    graph has none); the log-mel front end is always excluded.
    ``calibration``: compress.calibration.CalibrationBatches, required by ``static``.
    ``parity_feeds``: a few real input batches. With them the int8 graph's embeddings are compared with fp32 (mean
    cosine). Below ``min_parity``, the attempt is repeated keeping the nodes with the most outlying input activations
    (``outlier_ratios``) in float: 1, 2, 4, ... up to ``max_float_nodes`` and ``max_float_fraction`` of the
    candidates. If that is not enough the tower falls back to ``weight-only`` (int8 storage, float math), and the
    attempt closest to fp32 is kept. Every attempt is recorded. ``reduce_range``: None = decide from this CPU
    (``cpu_int8_quirks``). ``compact_storage``: store the constants that stay float as float16 and drop debug
    metadata (``compact``).
    """
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown quantization scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    if scheme == "static" and calibration is None:
        raise ConfigError("the static scheme needs calibration data (--calib)")
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    rr = cpu_int8_quirks()["reduce_range"] if reduce_range is None else bool(reduce_range)
    model = onnx.load(str(src))
    head = head_nodes(model) if keep_head_float else []
    if keep_head_float and not head:
        raise ConfigError(f"{src}: no node of the codebook head found in the exporter's name scopes; refusing to "
                          "quantize a graph whose head cannot be kept in float")
    front_end = front_end_nodes(model)
    excluded = head + front_end
    targets = weight_nodes(model, tower_ops(tower, scheme), set(excluded))
    matmuls = matmul_nodes(model)
    info: dict[str, Any] = {"scheme": scheme, "tower": str(tower), "op_types": list(tower_ops(tower, scheme)),
                            "reduce_range": rr, "excluded_nodes": excluded, "n_excluded": len(excluded),
                            "excluded_reason": f"{_float_kept(head, front_end)} kept in float",
                            "float_kept": _float_kept(head, front_end), "quantized_candidates": len(targets),
                            "matmul_gemm_nodes": len(matmuls),
                            "excluded_head_matmuls": len(set(matmuls) & set(head))}
    with tempfile.TemporaryDirectory(prefix="s2s-int8-", dir=dst.parent) as work, quiet_quantizer():
        work = Path(work)
        pre = src
        if scheme == "static":
            from onnxruntime.quantization.shape_inference import quant_pre_process

            pre = work / "pre.onnx"
            quant_pre_process(str(src), str(pre), skip_optimization=True, skip_symbolic_shape=True)
            if sorted(head_nodes(onnx.load(str(pre)))) != sorted(head):
                raise ConfigError(f"{src}: pre-processing changed the codebook head's nodes; refusing to quantize")
        reference = run_embeddings(src, parity_feeds) if parity_feeds else None
        ratios: dict[str, float] = {}
        plan: list[tuple[str, int]] = [(scheme, 0)]
        if reference is not None and scheme != "weight-only":
            ratios = outlier_ratios(model, targets, parity_feeds)
            cap = min(int(max_float_nodes), int(max_float_fraction * len(ratios)))
            plan = [(scheme, k) for k in float_counts(cap)]
            plan.append(("weight-only", 0))
        ranked = sorted(ratios, key=lambda k: -ratios[k])
        attempts: list[dict[str, Any]] = []
        storages: list[dict[str, Any] | None] = []
        best: tuple[float, int] | None = None
        for i, (used, n_float) in enumerate(plan):
            path = work / f"attempt-{i}.onnx"
            kept = set(ranked[:n_float])
            todo = [t for t in weight_nodes(model, tower_ops(tower, used), set(excluded)) if t not in kept]
            if used == "dynamic":
                _dynamic(src, path, todo, excluded, rr)
            elif used == "weight-only":
                _weight_only(model, path, todo, excluded)
            else:
                _static(pre, path, calibration, todo, excluded, rr, calibrate_method)
            storages.append(compact(path) if compact_storage else None)
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
        with written_beside(dst) as tmp:
            shutil.copyfile(work / f"attempt-{chosen}.onnx", tmp)
    quantized = onnx.load(str(dst), load_external_data=False)
    counts = quantized_counts(quantized)
    info.update(_describe(used, rr and used != "weight-only", calibrate_method, counts["quantized_matmuls"]))
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
    info["kept_float_sensitive"] = [{"node": n, "scope": scope_of(model, n), "outlier_ratio": round(ratios[n], 1)}
                                    for n in ranked[:n_float]]
    info["int8_ops"] = int8_op_counts(quantized)
    info.update(counts)
    info["bytes"] = dst.stat().st_size
    info["fp32_bytes"] = src.stat().st_size
    if not info["int8_ops"]:
        raise ConfigError(f"{src}: nothing was quantized ({len(targets)} candidate nodes)")
    return info


# ------------------------------------------------------------------------------------------------ schemes


def _dynamic(src: Path, dst: Path, targets: list[str], excluded: list[str], reduce_range: bool) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), op_types_to_quantize=list(QUANT_OPS), nodes_to_quantize=targets,
                     nodes_to_exclude=excluded, weight_type=QuantType.QInt8, reduce_range=reduce_range,
                     per_channel=True, extra_options={"MatMulConstBOnly": True})


def _weight_only(model: onnx.ModelProto, dst: Path, targets: list[str], excluded: list[str]) -> None:
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
                             nodes_to_exclude=excluded, nodes_to_include=matmuls, op_types_to_quantize=("MatMul",))
    q.process()
    if not gathers:
        q.model.save_model_to_file(str(dst), use_external_data_format=False)
        return
    nbits = dst.with_name(dst.stem + ".nbits.onnx")
    q.model.save_model_to_file(str(nbits), use_external_data_format=False)
    try:
        quantize_dynamic(str(nbits), str(dst), op_types_to_quantize=["Gather"], nodes_to_quantize=gathers,
                         nodes_to_exclude=excluded, weight_type=QuantType.QUInt8)
    finally:
        nbits.unlink(missing_ok=True)


def _static(pre: Path, dst: Path, calibration: Any, targets: list[str], excluded: list[str], reduce_range: bool,
            calibrate_method: str) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if calibrate_method not in methods:
        raise ConfigError(f"unknown calibration method {calibrate_method!r}; expected one of {', '.join(methods)}")
    calibration.rewind()
    quantize_static(str(pre), str(dst), calibration.reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    reduce_range=reduce_range, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=list(QUANT_OPS), nodes_to_quantize=targets, nodes_to_exclude=excluded,
                    calibrate_method=methods[calibrate_method], extra_options={"MatMulConstBOnly": True})
