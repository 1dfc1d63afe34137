"""Checks of an export beyond the held-out batch: I2A retrieval of the exported image+audio pairs on a dataset split
against PyTorch's, and how far the exported text path sits from the training path's cached text states."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from core.data.features import FeatureTable
from export.export_run import ExportRun
from export.onnx_export import onnx_session, run_onnx
from export.parity import (
    PARITY_BATCH,
    PARITY_SEED,
    cosine_figures,
    embed_batches,
    i2a_figures,
    retrieval_inputs,
)
from export.tflite_export import run_tflite, tflite_interpreter
from export.towers import build_tower, example_texts

RUNNABLE_TARGETS = ("onnx", "ort", "tflite")  # Core ML predicts on macOS only


def retrieval_check(run: ExportRun, data: Path, split: str, progress: bool) -> dict[str, Any]:
    """I2A R@10% of PyTorch and of every runnable exported image+audio pair on a dataset split; a pair that drops
    more than the gate allows is recorded as a failure of ``run``."""
    if not {"image", "audio"} <= set(run.towers):
        return {"skipped": "needs the image and audio towers"}
    table = FeatureTable.build(data, split, run.cfg, progress=progress)
    batches = retrieval_inputs(table)
    image_tower, audio_tower = build_tower(run.model, "image"), build_tower(run.model, "audio")
    with torch.no_grad():
        img = embed_batches(batches, "image", lambda b: image_tower(**b).numpy())
        aud = embed_batches(batches, "audio", lambda b: audio_tower(**b).numpy())
    torch_r10, torch_mr = i2a_figures(img, aud)
    result: dict[str, Any] = {"data": str(data), "split": table.split, "n": len(table), "zoom": 1,
                              "metadata": "all fields the data gives", "pytorch_i2a_r10": torch_r10,
                              "pytorch_i2a_median_rank": torch_mr, "files": {}}
    pairs: dict[tuple[str, str], dict[str, dict]] = {}
    for e in run.files:
        if e["tower"] in ("image", "audio") and e["target"] in RUNNABLE_TARGETS:
            pairs.setdefault((e["target"], e["variant"]), {})[e["tower"]] = e
    for (target, variant), pair in sorted(pairs.items()):
        if set(pair) != {"image", "audio"}:
            continue
        embs = {}
        for tower, e in pair.items():
            path = run.stage / e["path"]
            if target == "tflite":
                it = tflite_interpreter(path, run.threads)
                embs[tower] = embed_batches(batches, tower, lambda b, it=it, p=path: run_tflite(p, b, interpreter=it))
            else:
                sess = onnx_session(path, run.threads)
                embs[tower] = embed_batches(batches, tower, lambda b, s=sess, p=path: run_onnx(p, b, session=s))
        r10, mr = i2a_figures(embs["image"], embs["audio"])
        drop = torch_r10 - r10
        passed = drop <= run.gates.max_r10_drop + 1e-12
        result["files"][f"{target}.{variant}"] = {"i2a_r10": r10, "i2a_median_rank": mr, "drop": drop,
                                                  "threshold": run.gates.max_r10_drop, "passed": passed}
        if not passed:
            run.failures.append({"file": f"{target} {variant} image+audio", "r10": r10, "r10_torch": torch_r10,
                                 "drop": drop, "threshold": run.gates.max_r10_drop})
    return result


def text_cache_note(run: ExportRun) -> dict[str, Any] | None:
    """How far the exported text path (float32 MiniLM states) is from the training path (float16-cached states)."""
    if "text" not in run.towers:
        return None
    texts = example_texts(PARITY_BATCH, seed=PARITY_SEED)
    with torch.no_grad():
        cached = run.model.encode_text(texts).embedding.float().numpy()
    figs = cosine_figures(run.reference["text"], cached)
    return {"compared": "PyTorch text tower (fp32 MiniLM states) vs model.encode_text (fp16-cached states)", **figs}
