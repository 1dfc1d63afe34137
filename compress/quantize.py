"""`sat2sound quantize`: post-training int8 of a model's towers with ONNX Runtime, behind a quality gate.

    sat2sound quantize --ckpt DIR --calib DIR --out DIR [--scheme dynamic|static|weight-only] [--max-drop 0.02]
                       [--data DIR --split validation] [--towers image,audio,text] [--force]

Steps: load the fp32 checkpoint (teacher or student) -> export each tower to ONNX (export/onnx_export.py) ->
quantize it (export/int8.py: MatMul/Gemm weights and large embedding tables - the text tower's tables only -,
codebook head in float, reduce_range on CPUs without VNNI; the static scheme calibrates on real batches from
--calib, compress/calibration.py) -> score the int8 towers and the
fp32 towers alike with ONNX Runtime on the validation split (zoom 1, every metadata field; compress/onnx_eval.py)
-> the gate: when I2A R@10% or image->text R@10% of the int8 towers falls more than --max-drop below the fp32
towers', nothing is written and the command exits non-zero saying by how much.

The output folder holds the fp32 checkpoint files (config.json, model.safetensors: it still loads with
core.checkpoint.load_checkpoint), the int8 towers ``<tower>.int8.onnx``, quantization.json (scheme, CPU quirk
decision, excluded nodes, calibration size, figures) and manifest.json (kind "sat2sound-int8", the source's
fingerprint, files with sha256). It is assembled in a temporary folder beside OUT and renamed into place at the end,
so a failure or a refusal leaves nothing half-written.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from compress.calibration import calibration_reader, open_calibration_table
from compress.onnx_eval import (
    OrtTowers,
    cosine_parity,
    embed_with_ort,
    eval_zoom,
    retrieval_figures,
    torch_text_fallback,
)
from contracts.artifacts import (
    CONFIG_FILE,
    MANIFEST_FILE,
    QUANT_FILE,
    QUANTIZED_TOWERS,
    RETRIEVAL_TOWERS,
    WEIGHTS_FILE,
    ArtifactKind,
    parse_towers,
    sha256_file,
)
from contracts.errors import ConfigError, DataError, Sat2SoundError
from core.artifacts import move_into_place
from core.cli_args import add_ckpt, add_shared
from export.int8 import MIN_PARITY, SCHEMES, cpu_int8_quirks, quantize_tower

FORMAT = "sat2sound-quantization/1"
GATED = ("i2a_r10", "i2t_r10")
PARITY_BATCHES = 2  # calibration batches (of 32) the per-tower parity check runs on
COPIED_FILES = (CONFIG_FILE, WEIGHTS_FILE)


class QualityGateError(Sat2SoundError):
    """The int8 model lost more retrieval quality than allowed; nothing was written."""

    exit_code = 3


def int8_filename(tower: str) -> str:
    return f"{tower}.int8.onnx"


def quantized_towers(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """The towers to quantize, in QUANTIZED_TOWERS order; image and audio must be among them."""
    items = parse_towers(text, allowed=QUANTIZED_TOWERS, default=())
    for needed in RETRIEVAL_TOWERS:
        if needed not in items:
            raise ConfigError(f"--towers must include '{needed}' (the quality gate scores image<->audio retrieval)")
    return [str(t) for t in QUANTIZED_TOWERS if t in items]


def export_fp32(model: Any, cfg: Any, tower: str, work: Path, *, fingerprint: str,
                cache_dir: str | Path | None = None) -> Path:
    """The fp32 ONNX of one tower: from ``cache_dir`` when this exact model was exported before, else exported."""
    from export.onnx_export import export_onnx

    if cache_dir is not None:
        cached = Path(cache_dir) / fingerprint[:24] / f"{tower}.fp32.onnx"
        if not cached.is_file():
            export_onnx(model, cfg, tower, cached)
        return cached
    return export_onnx(model, cfg, tower, work / f"{tower}.fp32.onnx")


def gate_check(fp32: dict[str, float], int8: dict[str, float], max_drop: float | None) -> dict[str, Any]:
    """Drops of the gated metrics (fp32 - int8) and whether each stays within ``max_drop``."""
    drops = {k: float(fp32[k] - int8[k]) for k in GATED if k in fp32 and k in int8}
    failed = [] if max_drop is None else [k for k, d in drops.items() if d > max_drop]
    return {"drop": drops, "max_drop": max_drop, "passed": not failed, "failed": failed}


def _gate_message(gate: dict[str, Any], fp32: dict[str, float], int8: dict[str, float]) -> str:
    names = {"i2a_r10": "I2A R@10%", "i2t_r10": "image->text R@10%"}
    parts = [f"{names[k]} fell by {gate['drop'][k]:.4f} (fp32 {fp32[k]:.4f} -> int8 {int8[k]:.4f}), "
             f"{gate['drop'][k] - gate['max_drop']:.4f} more than --max-drop {gate['max_drop']:g}"
             for k in gate["failed"]]
    return "int8 model refused by the quality gate: " + "; ".join(parts) + ". Nothing was written."


def quantize_model(model_dir: str | Path, out_dir: str | Path, *, calib: str | Path | None = None,
                   scheme: str = "dynamic", max_drop: float | None = 0.02, data: str | Path | None = None,
                   split: str = "validation", towers: list[str] | tuple[str, ...] = QUANTIZED_TOWERS,
                   calib_size: int = 256, calib_method: str = "minmax", min_parity: float = MIN_PARITY,
                   force: bool = False,
                   cache_dir: str | Path | None = None, progress: bool = True, threads: int = 1) -> dict[str, Any]:
    """Quantize ``model_dir`` into ``out_dir`` (see the module docstring); returns the quantization.json content.

    ``max_drop=None`` switches the gate off (the figures are still measured when ``data`` or a dataset ``calib``
    is there). Raises QualityGateError when the gate refuses, DataError for bad calibration/evaluation data.
    """
    from core.checkpoint import load_checkpoint, read_manifest

    if scheme not in SCHEMES:
        raise ConfigError(f"unknown scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    towers = quantized_towers(list(towers))
    model_dir, out = Path(model_dir), Path(out_dir)
    if out.exists() and not force:
        raise ConfigError(f"{out} already exists; pass --force to replace it")
    if out.resolve() == model_dir.resolve():
        raise ConfigError("--out must not be the source model's folder")
    if calib is not None and not Path(calib).exists():
        raise DataError("calibration data not found", path=calib)
    if scheme == "static" and calib is None:
        raise ConfigError("--scheme static needs --calib (a dataset folder or an .npz of tower inputs)")
    eval_data = Path(data) if data is not None else (Path(calib) if calib is not None and Path(calib).is_dir()
                                                      else None)
    if max_drop is not None and eval_data is None:
        raise ConfigError("the quality gate needs a dataset to score on: pass --data DIR (or a dataset --calib), "
                          "or --no-gate")
    loaded = load_checkpoint(model_dir)
    model, cfg = loaded.model.eval(), loaded.cfg
    source_manifest = read_manifest(model_dir)
    if cfg.model.codebook.head != "codebook":
        raise ConfigError(f"{model_dir} uses the {cfg.model.codebook.head!r} head; int8 here keeps a codebook head "
                          "in float and needs one")

    out.parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    stage, work = root / "stage", root / "work"
    stage.mkdir()
    work.mkdir()
    try:
        result = _quantize_into(stage, work, loaded, model, cfg, source_manifest, calib=calib, scheme=scheme,
                                max_drop=max_drop, eval_data=eval_data, split=split, towers=towers,
                                calib_size=calib_size, calib_method=calib_method, min_parity=min_parity,
                                cache_dir=cache_dir,
                                progress=progress, threads=threads)
        move_into_place(stage, out)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return result


def _quantize_into(stage: Path, work: Path, loaded: Any, model: Any, cfg: Any, source_manifest: dict[str, Any], *,
                   calib: str | Path | None, scheme: str, max_drop: float | None, eval_data: Path | None, split: str,
                   towers: list[str], calib_size: int, calib_method: str, min_parity: float,
                   cache_dir: str | Path | None,
                   progress: bool, threads: int) -> dict[str, Any]:
    calib_info: dict[str, Any] = {"source": str(calib) if calib is not None else None}
    table = None
    if calib is not None and Path(calib).is_dir():
        table = open_calibration_table(calib, cfg, cache_dir=None, progress=progress)
        calib_info.update(kind="dataset", split=table.split, rows=len(table))
    elif calib is not None:
        calib_info.update(kind="npz")
    elif eval_data is not None:  # no calibration data: the parity check borrows a few samples of the gate's split
        from core.data.features import FeatureTable

        table = FeatureTable.build(eval_data, split, cfg, progress=progress)
        calib_info.update(kind="evaluation split (parity check only)", split=table.split, rows=len(table))
    if scheme != "static":
        calib_info["note"] = (f"the {scheme} scheme sets no activation ranges; the calibration samples serve the "
                              "per-tower parity check")

    fp32_paths: dict[str, Path] = {}
    int8_paths: dict[str, Path] = {}
    tower_info: dict[str, Any] = {}
    bar = tqdm(total=2 * len(towers), desc=f"int8 ({scheme})", unit="step", disable=not progress)
    for tower in towers:
        bar.set_postfix_str(f"export {tower}")
        fp32_paths[tower] = export_fp32(model, cfg, tower, work, fingerprint=loaded.fingerprint, cache_dir=cache_dir)
        bar.update(1)
        bar.set_postfix_str(f"quantize {tower}")
        batches = None
        if calib is not None or table is not None:
            batches = calibration_reader(calib if calib is not None else eval_data, fp32_paths[tower], cfg, tower,
                                         table=table, n_samples=calib_size)
        parity = batches.batches[:PARITY_BATCHES] if batches is not None else None
        int8_paths[tower] = stage / int8_filename(tower)
        info = quantize_tower(fp32_paths[tower], int8_paths[tower], scheme, tower=tower,
                              calibration=batches if scheme == "static" else None, parity_feeds=parity,
                              min_parity=min_parity, calibrate_method=calib_method)
        if scheme == "static":
            info["calibration_batches"] = len(batches.batches)
            info["calibration_samples"] = batches.n_samples
        info["file"] = int8_filename(tower)
        info["sha256"] = sha256_file(int8_paths[tower])
        tower_info[tower] = info
        bar.update(1)
    bar.close()
    if scheme == "static":
        calib_info["samples"] = {t: tower_info[t].get("calibration_samples") for t in towers}

    evaluation: dict[str, Any] | None = None
    if eval_data is not None:
        from core.data.features import FeatureTable

        eval_table = FeatureTable.build(eval_data, split, cfg, progress=progress)
        if len(eval_table) < 2:
            raise DataError(f"split {split!r} has {len(eval_table)} sample(s); the gate needs at least 2",
                            path=eval_data)
        zoom = eval_zoom(cfg)
        fallback = None if "text" in towers else torch_text_fallback(model)
        emb32 = embed_with_ort(OrtTowers(fp32_paths, threads), eval_table, cfg, zoom=zoom, text_fallback=fallback,
                               progress=progress, desc="fp32 towers")
        emb8 = embed_with_ort(OrtTowers(int8_paths, threads), eval_table, cfg, zoom=zoom, text_fallback=fallback,
                              progress=progress, desc="int8 towers")
        fig32, fig8 = retrieval_figures(emb32), retrieval_figures(emb8)
        gate = gate_check(fig32, fig8, max_drop)
        evaluation = {"data": str(eval_data), "split": eval_table.split, "n": len(eval_table), "zoom": zoom,
                      "metadata": "all", "runtime": "onnxruntime (fp32 and int8 graphs alike)",
                      "text": "int8 text tower" if "text" in towers else "fp32 PyTorch text path (not quantized)",
                      "fp32": fig32, "int8": fig8, **gate,
                      "parity_cosine": {k: cosine_parity(emb8[k], emb32[k]) for k in emb32}}
        if not gate["passed"]:
            raise QualityGateError(_gate_message(gate, fig32, fig8))

    for name in COPIED_FILES:
        shutil.copy2(loaded.path / name, stage / name)
    created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    quant = {
        "format": FORMAT, "kind": ArtifactKind.INT8, "scheme": scheme, "created": created,
        "source": {"path": str(loaded.path), "fingerprint": loaded.fingerprint, "kind": source_manifest.get("kind"),
                   "preset": cfg.name},
        "cpu": cpu_int8_quirks(), "float_kept": "codebook head (scores, max-pool, sparsemax, weighted codes)",
        "towers": tower_info, "calibration": calib_info, "evaluation": evaluation,
    }
    (stage / QUANT_FILE).write_text(json.dumps(quant, indent=2) + "\n")
    manifest = {
        **source_manifest,
        "kind": ArtifactKind.INT8, "source_kind": source_manifest.get("kind"), "source_fingerprint": loaded.fingerprint,
        "fingerprint": loaded.fingerprint, "created": created, "scheme": scheme,
        "int8": {t: {"file": i["file"], "sha256": i["sha256"], "bytes": i["bytes"]} for t, i in tower_info.items()},
        "quantization": QUANT_FILE,
        "gate": None if evaluation is None else {k: evaluation[k] for k in ("drop", "max_drop", "passed")},
    }
    (stage / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return quant


# ----------------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_ckpt(parser, help="fp32 checkpoint folder (student or teacher)", old=("--model",))
    parser.add_argument("--calib", default=None,
                        help="calibration data: a dataset folder (train, else validation split) or an .npz of "
                             "tower inputs; required by --scheme static")
    parser.add_argument("--out", required=True, help="output folder (refused if it exists, unless --force)")
    parser.add_argument("--scheme", choices=SCHEMES, default="dynamic",
                        help="dynamic (default), static (QDQ, calibrated) or weight-only (int8 weights, float math)")
    parser.add_argument("--max-drop", type=float, default=0.02,
                        help="largest allowed fall of I2A and image->text R@10%% vs fp32 (default 0.02)")
    parser.add_argument("--no-gate", action="store_true", help="measure, but do not refuse")
    parser.add_argument("--data", default=None, help="dataset scored by the gate (default: --calib's folder)")
    parser.add_argument("--split", default="validation", help="split the gate scores (default validation)")
    parser.add_argument("--towers", default=",".join(QUANTIZED_TOWERS),
                        help="towers to quantize (image and audio required; without text, captions are embedded "
                             "by the fp32 PyTorch text path)")
    parser.add_argument("--calib-size", type=int, default=256, help="calibration samples per tower (static)")
    parser.add_argument("--calib-method", choices=("minmax", "percentile", "entropy"), default="minmax")
    parser.add_argument("--min-parity", type=float, default=MIN_PARITY,
                        help="per tower, keep the most outlier-prone layers float until the int8 embeddings reach "
                             "this mean cosine to fp32 on calibration samples (default %(default)s; 0 = off)")
    parser.add_argument("--threads", type=int, default=1, help="ORT / torch threads")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    add_shared(parser, "cache-dir", "no-progress")


def run(args: argparse.Namespace) -> int:
    import torch

    if args.threads and args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.calib_size < 1:
        raise ConfigError("--calib-size must be >= 1")
    res = quantize_model(args.ckpt, args.out, calib=args.calib, scheme=args.scheme,
                         max_drop=None if args.no_gate else args.max_drop, data=args.data, split=args.split,
                         towers=quantized_towers(args.towers), calib_size=args.calib_size,
                         calib_method=args.calib_method, min_parity=args.min_parity,
                         force=args.force, cache_dir=args.cache_dir, progress=not args.no_progress,
                         threads=max(1, args.threads))
    for tower, info in res["towers"].items():
        parity = info["parity"]["attempts"][-1]["parity"] if info["parity"]["attempts"] else None
        used = "" if info["scheme_used"] == res["scheme"] else f" [{info['scheme_used']}: {res['scheme']} fell short]"
        print(f"{tower:6s} {info['fp32_bytes'] / 1e6:7.2f} MB -> {info['bytes'] / 1e6:7.2f} MB{used}  "
              f"({info['n_excluded']} head nodes and {len(info['kept_float_sensitive'])} outlier layers kept float"
              + (f"; cosine to fp32 {parity:.4f})" if parity is not None else ")"))
    ev = res.get("evaluation")
    if ev:
        for k in ("i2a_r10", "i2t_r10"):
            print(f"{k}: fp32 {ev['fp32'][k]:.4f}  int8 {ev['int8'][k]:.4f}  drop {ev['drop'][k]:+.4f}")
        print("gate: off (figures measured only)" if ev["max_drop"] is None
              else f"gate: passed (max drop {ev['max_drop']:g})")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    from core.cli import main

    sys.exit(main(["quantize", *sys.argv[1:]]))
