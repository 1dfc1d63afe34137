"""The quality gate of `sat2sound quantize`: int8 towers scored against fp32 on the validation split, per method.

The fp32 towers are embedded once (``GateRun``); every set of int8 ONNX towers that the run wrote (native: ORT's
quantization of the fp32 graph; pt2e: the ONNX lowering of the PT2E model, the same int8 model every target gets)
is scored the same way with ONNX Runtime (compress/onnx_eval.py), and each must keep I2A and image->text R@10%
within ``max_drop`` of fp32 (``gate_check``). The gate applies to whichever method runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compress.onnx_eval import (
    OrtTowers,
    cosine_parity,
    embed_with_ort,
    eval_zoom,
    retrieval_figures,
    torch_text_fallback,
)
from contracts.errors import DataError

GATED = ("i2a_r10", "i2t_r10")


def gate_check(fp32: dict[str, float], int8: dict[str, float], max_drop: float | None) -> dict[str, Any]:
    """Drops of the gated metrics (fp32 - int8) and whether each stays within ``max_drop``."""
    drops = {k: float(fp32[k] - int8[k]) for k in GATED if k in fp32 and k in int8}
    failed = [] if max_drop is None else [k for k, d in drops.items() if d > max_drop]
    return {"drop": drops, "max_drop": max_drop, "passed": not failed, "failed": failed}


def gate_message(gate: dict[str, Any], fp32: dict[str, float], int8: dict[str, float]) -> str:
    names = {"i2a_r10": "I2A R@10%", "i2t_r10": "image->text R@10%"}
    parts = [f"{names[k]} fell by {gate['drop'][k]:.4f} (fp32 {fp32[k]:.4f} -> int8 {int8[k]:.4f}), "
             f"{gate['drop'][k] - gate['max_drop']:.4f} more than --max-drop {gate['max_drop']:g}"
             for k in gate["failed"]]
    return "int8 model refused by the quality gate: " + "; ".join(parts) + ". Nothing was written."


class GateRun:
    """The gate's split, embedded once by the fp32 towers; ``score`` scores sets of int8 towers against it."""

    def __init__(self, model: Any, cfg: Any, data: Path, split: str, towers: list[str],
                 fp32_paths: dict[str, Path], threads: int, progress: bool):
        from core.data.features import FeatureTable

        self.table = FeatureTable.build(data, split, cfg, progress=progress)
        if len(self.table) < 2:
            raise DataError(f"split {split!r} has {len(self.table)} sample(s); the gate needs at least 2", path=data)
        self.cfg, self.data, self.towers, self.threads, self.progress = cfg, data, towers, threads, progress
        self.zoom = eval_zoom(cfg)
        self.fallback = None if "text" in towers else torch_text_fallback(model)
        self.emb32 = self._embed(fp32_paths, "fp32 towers")
        self.fig32 = retrieval_figures(self.emb32)

    def _embed(self, paths: dict[str, Path], desc: str) -> dict[str, Any]:
        return embed_with_ort(OrtTowers(paths, self.threads), self.table, self.cfg, zoom=self.zoom,
                              text_fallback=self.fallback, progress=self.progress, desc=desc)

    def score(self, sets: dict[str, dict[str, Path]], max_drop: float | None,
              qat_after_ptq: dict[str, Any] | None = None) -> dict[str, Any]:
        methods: dict[str, Any] = {}
        for name, paths in sets.items():
            emb8 = self._embed(paths, f"int8 towers ({name})")
            fig8 = retrieval_figures(emb8)
            methods[name] = {"int8": fig8, **gate_check(self.fig32, fig8, max_drop),
                             "parity_cosine": {k: cosine_parity(emb8[k], self.emb32[k]) for k in self.emb32}}
        if qat_after_ptq is not None and "pt2e" in methods:
            methods["pt2e"]["qat"] = True
            methods["pt2e"]["before_qat"] = {k: qat_after_ptq[k] for k in ("int8", "drop", "passed")}
        return {"data": str(self.data), "split": self.table.split, "n": len(self.table), "zoom": self.zoom,
                "metadata": "all", "runtime": "onnxruntime (fp32 and int8 graphs alike)",
                "text": "int8 text tower" if "text" in self.towers else "fp32 PyTorch text path (not quantized)",
                "fp32": self.fig32, "methods": methods}
