"""`sat2sound quantize`: int8 of a model's towers, natively per target or once in PyTorch (PT2E), behind a gate.

    sat2sound quantize --ckpt DIR --calib DIR --out DIR [--method auto|pt2e|native] [--pt2e-scheme static|dynamic]
                       [--qat EPOCHS] [--scheme dynamic|static|weight-only] [--max-drop 0.02]
                       [--data DIR --split validation] [--towers image,audio,text] [--force]

``--method`` picks the int8 implementation per target (compress/pt2e_stage.py): ``native`` is the ORT path below
for ONNX (TFLite and Core ML are then quantized by `sat2sound export` with their own tools); ``pt2e`` quantizes each
tower once with torchao (compress/pt2e.py), lowers that one model to ONNX, TFLite and Core ML
(compress/pt2e_lower.py) and, with ``--qat N``, fine-tunes it with quantization-aware training when post-training
int8 misses the gate (compress/qat.py); ``auto`` takes the measured winner per target. The gate scores every ONNX
int8 set the run wrote (compress/gate.py).

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
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from compress.calibration import calibration_reader, open_calibration_table
from compress.gate import GateRun, gate_message
from compress.pt2e_stage import (
    DEFAULT_PT2E_SCHEME,
    PT2E_DIR,
    PT2E_TARGETS,
    check_pt2e_args,
    pt2e_ptq,
    pt2e_qat,
    resolve_methods,
    write_pt2e,
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
from contracts.durability import staging_folder
from contracts.errors import ConfigError, DataError, Sat2SoundError
from core.artifacts import move_into_place
from core.cli_args import add_ckpt, add_shared
from export.int8 import MIN_PARITY, SCHEMES, cpu_int8_quirks, quantize_tower

FORMAT = "sat2sound-quantization/1"
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
    from compress.pt2e import export_error
    from export.onnx_export import export_onnx

    name = f"{tower}.fp32.onnx"
    path = work / name if cache_dir is None else Path(cache_dir) / fingerprint[:24] / name
    if cache_dir is None or not path.is_file():
        try:
            export_onnx(model, cfg, tower, path)
        except Exception as exc:  # torch.export's many error types: one line naming the op
            raise export_error(tower, exc) from exc
    return path


def quantize_model(model_dir: str | Path, out_dir: str | Path, *, calib: str | Path | None = None,
                   scheme: str = "dynamic", max_drop: float | None = 0.02, data: str | Path | None = None,
                   split: str = "validation", towers: list[str] | tuple[str, ...] = QUANTIZED_TOWERS,
                   calib_size: int = 256, calib_method: str = "minmax", min_parity: float = MIN_PARITY,
                   force: bool = False,
                   cache_dir: str | Path | None = None, progress: bool = True, threads: int = 1,
                   method: str = "native", pt2e_scheme: str = DEFAULT_PT2E_SCHEME,
                   qat_epochs: int = 0) -> dict[str, Any]:
    """Quantize ``model_dir`` into ``out_dir`` (see the module docstring); returns the quantization.json content.

    ``max_drop=None`` switches the gate off (the figures are still measured when ``data`` or a dataset ``calib``
    is there). Raises QualityGateError when the gate refuses, DataError for bad calibration/evaluation data.
    ``method``: "native" (ORT int8 of the ONNX graph; TFLite / Core ML quantized at export), "pt2e" (one torchao
    model lowered to every target) or "auto" (per target the measured default, compress/pt2e_stage.py);
    ``qat_epochs``: when PT2E misses the gate, fine-tune with QAT on ``data``'s train split and gate again.
    """
    from core.checkpoint import load_checkpoint, read_manifest

    if scheme not in SCHEMES:
        raise ConfigError(f"unknown scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    resolve_methods(method)
    train_data = Path(data) if data is not None else None
    check_pt2e_args(pt2e_scheme, qat_epochs, train_data)
    if int(calib_size) < 1:
        raise ConfigError(f"the calibration set must hold at least 1 sample (--calib-size {calib_size})")
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
    root = staging_folder(out)  # named by pid: the next run sweeps what a killed one left
    stage, work = root / "stage", root / "work"
    stage.mkdir()
    work.mkdir()
    try:
        result = _quantize_into(stage, work, loaded, model, cfg, source_manifest, calib=calib, scheme=scheme,
                                max_drop=max_drop, eval_data=eval_data, split=split, towers=towers,
                                calib_size=calib_size, calib_method=calib_method, min_parity=min_parity,
                                cache_dir=cache_dir, progress=progress, threads=threads, method=method,
                                pt2e_scheme=pt2e_scheme, qat_epochs=qat_epochs, train_data=train_data)
        move_into_place(stage, out)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return result


def _quantize_into(stage: Path, work: Path, loaded: Any, model: Any, cfg: Any, source_manifest: dict[str, Any], *,
                   calib: str | Path | None, scheme: str, max_drop: float | None, eval_data: Path | None, split: str,
                   towers: list[str], calib_size: int, calib_method: str, min_parity: float,
                   cache_dir: str | Path | None, progress: bool, threads: int, method: str = "native",
                   pt2e_scheme: str = DEFAULT_PT2E_SCHEME, qat_epochs: int = 0,
                   train_data: Path | None = None) -> dict[str, Any]:
    methods = resolve_methods(method)
    native = methods["onnx"] == "native"
    pt2e_targets = [t for t in PT2E_TARGETS if methods[t] == "pt2e"]
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
    if pt2e_targets and calib is None and table is None:
        raise ConfigError("--method pt2e calibrates in PyTorch: pass --calib (a dataset folder or an .npz)")
    if scheme != "static" and native:
        calib_info["note"] = (f"the {scheme} scheme sets no activation ranges; the calibration samples serve the "
                              "per-tower parity check")

    fp32_paths: dict[str, Path] = {}
    int8_paths: dict[str, Path] = {}
    tower_info: dict[str, Any] = {}
    batches: dict[str, Any] = {}
    bar = tqdm(total=(1 + int(native)) * len(towers), desc=f"int8 ({method})", unit="step", disable=not progress)
    for tower in towers:
        bar.set_postfix_str(f"export {tower}")
        fp32_paths[tower] = export_fp32(model, cfg, tower, work, fingerprint=loaded.fingerprint, cache_dir=cache_dir)
        bar.update(1)
        if calib is not None or table is not None:
            batches[tower] = calibration_reader(calib if calib is not None else eval_data, fp32_paths[tower], cfg,
                                                tower, table=table, n_samples=calib_size)
        if not native:
            continue
        bar.set_postfix_str(f"quantize {tower}")
        tb = batches.get(tower)
        parity = tb.batches[:PARITY_BATCHES] if tb is not None else None
        int8_paths[tower] = stage / int8_filename(tower)
        info = quantize_tower(fp32_paths[tower], int8_paths[tower], scheme, tower=tower,
                              calibration=tb if scheme == "static" else None, parity_feeds=parity,
                              min_parity=min_parity, calibrate_method=calib_method)
        if scheme == "static":
            info["calibration_batches"] = len(tb.batches)
            info["calibration_samples"] = tb.n_samples
        info.update(int8_method="native", file=int8_filename(tower), sha256=sha256_file(int8_paths[tower]))
        tower_info[tower] = info
        bar.update(1)
    bar.close()
    if scheme == "static" and native:
        calib_info["samples"] = {t: tower_info[t].get("calibration_samples") for t in towers}

    pt2e: dict[str, Any] | None = None
    pts = None
    if pt2e_targets:
        pts = pt2e_ptq(model, cfg, towers, pt2e_scheme, {t: b.batches for t, b in batches.items()}, progress)
        pt2e = write_pt2e(stage, pts, cfg, sorted(set(pt2e_targets) | {"onnx"}), top_onnx=not native)
        calib_info["pt2e_samples"] = {t: p.calibration_samples for t, p in pts.items()}

    def gated_sets() -> dict[str, dict[str, Path]]:
        sets = {"native": int8_paths} if native else {}
        if pt2e is not None:
            sets["pt2e"] = {t: stage / r["file"] for t, r in pt2e["onnx"].items()}
        return sets

    evaluation: dict[str, Any] | None = None
    if eval_data is not None:
        ev = GateRun(model, cfg, eval_data, split, towers, fp32_paths, threads, progress)
        evaluation = ev.score(gated_sets(), max_drop)
        failed = [m for m, r in evaluation["methods"].items() if not r["passed"]]
        if "pt2e" in failed and qat_epochs and pts is not None:
            if train_data is None:
                raise ConfigError("--qat needs training data: pass --data DIR (a dataset folder with a train split)")
            pts = pt2e_qat(model, cfg, towers, train_data, qat_epochs, progress, pts)
            shutil.rmtree(stage / PT2E_DIR, ignore_errors=True)
            pt2e = write_pt2e(stage, pts, cfg, sorted(set(pt2e_targets) | {"onnx"}), top_onnx=not native)
            evaluation = ev.score(gated_sets(), max_drop, qat_after_ptq=evaluation["methods"]["pt2e"])
            failed = [m for m, r in evaluation["methods"].items() if not r["passed"]]
        if failed:
            m = failed[0]
            raise QualityGateError(f"[{m}] " + gate_message(evaluation["methods"][m], evaluation["fp32"],
                                                               evaluation["methods"][m]["int8"]))
        primary = "native" if native else "pt2e"
        evaluation.update({k: evaluation["methods"][primary][k] for k in ("int8", "drop", "max_drop", "passed",
                                                                          "failed", "parity_cosine")})
    if not native and pt2e is not None:
        for tower, rec in pt2e["onnx"].items():
            tower_info[tower] = {**rec, "scheme_used": f"pt2e-{pt2e_scheme}", "fp32_bytes": fp32_paths[tower].stat(
            ).st_size, "n_excluded": 0, "kept_float_sensitive": [], "parity": {"attempts": []}}

    for name in COPIED_FILES:
        shutil.copy2(loaded.path / name, stage / name)
    created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    quant = {
        "format": FORMAT, "kind": ArtifactKind.INT8, "scheme": scheme if native else f"pt2e-{pt2e_scheme}",
        "created": created, "method": method, "methods": methods, "pt2e_scheme": pt2e_scheme if pt2e else None,
        "source": {"path": str(loaded.path), "fingerprint": loaded.fingerprint, "kind": source_manifest.get("kind"),
                   "preset": cfg.name},
        "cpu": cpu_int8_quirks(), "float_kept": "codebook head (scores, max-pool, sparsemax, weighted codes)",
        "towers": tower_info, "pt2e": pt2e, "calibration": calib_info, "evaluation": evaluation,
    }
    (stage / QUANT_FILE).write_text(json.dumps(quant, indent=2, default=str) + "\n")
    manifest = {
        **source_manifest,
        "kind": ArtifactKind.INT8, "source_kind": source_manifest.get("kind"), "source_fingerprint": loaded.fingerprint,
        "fingerprint": loaded.fingerprint, "created": created, "scheme": quant["scheme"], "methods": methods,
        "int8": {t: {"file": i["file"], "sha256": i["sha256"], "bytes": i["bytes"]} for t, i in tower_info.items()},
        "pt2e": None if pt2e is None else {tg: {t: {k: r[k] for k in ("file", "sha256", "bytes")}
                                                for t, r in recs.items()} for tg, recs in pt2e.items()
                                           if methods.get(tg) == "pt2e"},
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
    parser.add_argument("--method", default="auto",
                        help="int8 method: pt2e (torchao, one model lowered to ONNX / TFLite / Core ML), native "
                             "(per-target tools) or auto (default: per target the measured winner, "
                             "docs/int8_methods.md); unknown names are refused")
    parser.add_argument("--pt2e-scheme", default=DEFAULT_PT2E_SCHEME,
                        help="PT2E: static (calibrated int8 activations) or dynamic (int8 weights; default "
                             "%(default)s)")
    parser.add_argument("--qat", type=int, default=0, metavar="EPOCHS",
                        help="PT2E: when post-training int8 misses the gate, quantization-aware training for this "
                             "many epochs on --data's train split (needs --data), then gate again")
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
                         threads=max(1, args.threads), method=args.method, pt2e_scheme=args.pt2e_scheme,
                         qat_epochs=args.qat)
    for tower, info in res["towers"].items():
        if info.get("int8_method") == "pt2e":
            qat = f", QAT {info['qat_epochs']} epochs" if info["qat_epochs"] else ""
            print(f"{tower:6s} {info['fp32_bytes'] / 1e6:7.2f} MB -> {info['bytes'] / 1e6:7.2f} MB  (PT2E "
                  f"{info['scheme']}{qat}; {info['float_kept']} kept float)")
            continue
        parity = info["parity"]["attempts"][-1]["parity"] if info["parity"]["attempts"] else None
        used = "" if info["scheme_used"] == res["scheme"] else f" [{info['scheme_used']}: {res['scheme']} fell short]"
        print(f"{tower:6s} {info['fp32_bytes'] / 1e6:7.2f} MB -> {info['bytes'] / 1e6:7.2f} MB{used}  "
              f"({info['n_excluded']} head nodes and {len(info['kept_float_sensitive'])} outlier layers kept float"
              + (f"; cosine to fp32 {parity:.4f})" if parity is not None else ")"))
    print("methods: " + ", ".join(f"{t} {m}" for t, m in res["methods"].items()))
    for target, recs in (res.get("pt2e") or {}).items():
        print(f"pt2e {target}: " + ", ".join(f"{r['file']} {r['bytes'] / 1e6:.2f} MB" for r in recs.values()))
    ev = res.get("evaluation")
    if ev:
        for name, m in ev["methods"].items():
            for k in ("i2a_r10", "i2t_r10"):
                print(f"[{name}] {k}: fp32 {ev['fp32'][k]:.4f}  int8 {m['int8'][k]:.4f}  drop {m['drop'][k]:+.4f}"
                      + ("  (after QAT)" if m.get("qat") else ""))
        print("gate: off (figures measured only)" if ev["max_drop"] is None
              else f"gate: passed (max drop {ev['max_drop']:g})")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    from core.cli import main

    sys.exit(main(["quantize", *sys.argv[1:]]))
