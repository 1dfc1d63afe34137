"""`sat2sound export` end to end: checkpoint -> files per target, tower and variant -> parity -> manifest.

Everything is written into a temporary folder beside OUT and renamed into place only when every runnable file
passed its parity gate, so a failure (or Ctrl-C) leaves no half-written export. Layout of OUT:

    manifest.json                  files, preprocessing, source fingerprint, quantization, parity (export/manifest.py)
    onnx/<tower>.{fp32,int8}.onnx  single-file ONNX, dynamic batch
    ort/<tower>.{fp32,int8}.ort    ORT format for phones + required_operators.config + mobile_usability/
    coreml/<tower>.{fp16,int8}.mlpackage   ML program, iOS 16, batch 1
    tflite/<tower>.{fp32,int8}.tflite      LiteRT, batch 1
    tokenizer/                     tokenizer.json & co. (when the text tower is exported)

The model may be a teacher or a student checkpoint, or a `sat2sound quantize` folder: then its int8 ONNX towers
(checked against their sha256) are used as the ONNX/ORT int8 variants instead of quantizing again here.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contracts.errors import CheckpointError, ConfigError
from core.artifacts import move_into_place
from export.manifest import MANIFEST_FILE, SCHEMA, copy_tokenizer, file_entry, preprocessing, sha256_path
from export.parity import (
    PARITY_BATCH,
    PARITY_SEED,
    Gates,
    ParityError,
    cosine_figures,
    embed_batches,
    format_failures,
    gate,
    i2a_figures,
    retrieval_inputs,
)
from export.towers import DEFAULT_TOWERS, TOWERS, build_tower, example_inputs, example_texts, tower_outputs

TARGETS: tuple[str, ...] = ("onnx", "ort", "coreml", "tflite")
MODEL_KINDS: tuple[str, ...] = ("sat2sound-model", "sat2sound-student", "sat2sound-int8")
COMPRESS_QUANT_FILE = "quantization.json"
FP16_MIN_COSINE = 0.999  # Core ML float16, checked on macOS only


def _split_list(values: str | Iterable[str] | None) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [v.strip().lower() for item in values for v in str(item).split(",") if v.strip()]


def parse_targets(values: str | Iterable[str] | None) -> tuple[str, ...]:
    """Targets from repeated and/or comma-separated values; unknown names are a ConfigError listing the known."""
    names = _split_list(values)
    if not names:
        raise ConfigError(f"no --target given; choose from {', '.join(TARGETS)}")
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        raise ConfigError(f"unknown target(s) {', '.join(map(repr, unknown))}; known targets: {', '.join(TARGETS)}")
    return tuple(dict.fromkeys(names))


def parse_towers(values: str | Iterable[str] | None) -> tuple[str, ...]:
    names = _split_list(values) or list(DEFAULT_TOWERS)
    unknown = [n for n in names if n not in TOWERS]
    if unknown:
        raise ConfigError(f"unknown tower(s) {', '.join(map(repr, unknown))}; known towers: {', '.join(TOWERS)}")
    return tuple(dict.fromkeys(names))


# ------------------------------------------------------------------------------------------------ sources


def _compress_int8(model_dir: Path, manifest: dict[str, Any]) -> dict[str, Path]:
    """The int8 ONNX towers of a `sat2sound quantize` folder, verified against their recorded sha256."""
    if not (model_dir / COMPRESS_QUANT_FILE).is_file():
        return {}
    found = {}
    for tower, info in (manifest.get("int8") or {}).items():
        path = model_dir / info["file"]
        if not path.is_file():
            raise CheckpointError(f"{model_dir}: int8 tower {info['file']} listed in manifest.json is missing")
        if info.get("sha256") and sha256_path(path) != info["sha256"]:
            raise CheckpointError(f"{path} does not match the sha256 in {model_dir / MANIFEST_FILE} (corrupt?)")
        found[tower] = path
    return found


def _onnx_io(session: Any) -> tuple[list[dict], list[dict]]:
    def fmt(v: Any) -> dict:
        dtype = v.type.replace("tensor(", "").rstrip(")")
        dtype = {"float": "float32", "double": "float64"}.get(dtype, dtype)
        return {"name": v.name, "shape": [d if isinstance(d, int) else str(d) for d in v.shape], "dtype": dtype}

    return [fmt(i) for i in session.get_inputs()], [fmt(o) for o in session.get_outputs()]


def _tflite_io(sig: dict[str, Any], order_in: Sequence[str], order_out: Sequence[str]) -> tuple[list, list]:
    ins = [{"name": k, **sig["inputs"][k]} for k in order_in if k in sig["inputs"]]
    outs = [{"name": k, **sig["outputs"][k]} for k in order_out if k in sig["outputs"]]
    return ins, outs


class _Run:
    """State of one export: stage folder, references, file entries, parity records and failures."""

    def __init__(self, loaded: Any, stage: Path, towers: tuple[str, ...], gates: Gates, threads: int):
        self.loaded = loaded
        self.model = loaded.model
        self.cfg = loaded.cfg
        self.stage = stage
        self.towers = towers
        self.gates = gates
        self.threads = threads
        self.files: list[dict[str, Any]] = []
        self.parity: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []
        self.held = {t: example_inputs(self.cfg, t, PARITY_BATCH, seed=PARITY_SEED) for t in towers}
        with torch.no_grad():
            self.reference = {}
            for t in towers:
                out = build_tower(self.model, t)(*self.held[t].values())
                self.reference[t] = (out[0] if isinstance(out, tuple) else out).float().numpy()

    def check(self, entry: dict[str, Any], got: np.ndarray | None, *, note: str | None = None,
              variant_gate: str | None = None) -> None:
        tower, variant = entry["tower"], entry["variant"]
        record: dict[str, Any] = {"file": entry["path"], "target": entry["target"], "tower": tower,
                                  "variant": variant}
        if got is None:
            record.update(ran=False, note=note or "not runnable here")
        else:
            figs = cosine_figures(got, self.reference[tower])
            if variant_gate == "fp16":
                g = {"gate": "min_cosine", "threshold": FP16_MIN_COSINE,
                     "passed": bool(figs["min_cosine"] >= FP16_MIN_COSINE)}
            else:
                g = gate(variant, figs, self.gates)
            record.update(ran=True, **figs, **g)
            if not g["passed"]:
                self.failures.append(record)
        entry["parity"] = {k: v for k, v in record.items() if k not in ("file", "target", "tower", "variant")}
        self.parity.append(record)


# -------------------------------------------------------------------------------------------------- targets


def _export_onnx_files(run: _Run, onnx_dir: Path, int8: bool, given_int8: dict[str, Path],
                       bar: Any) -> dict[tuple[str, str], tuple[Path, dict | None]]:
    from export.onnx_export import export_onnx
    from export.onnx_int8 import quantize_onnx_int8

    out: dict[tuple[str, str], tuple[Path, dict | None]] = {}
    for tower in run.towers:
        bar.set_postfix_str(f"onnx {tower}")
        fp32 = export_onnx(run.model, run.cfg, tower, onnx_dir / f"{tower}.fp32.onnx")
        out[(tower, "fp32")] = (fp32, None)
        if int8:
            dst = onnx_dir / f"{tower}.int8.onnx"
            if tower in given_int8:
                shutil.copy2(given_int8[tower], dst)
                info = {"method": "from the sat2sound quantize folder", "source_file": given_int8[tower].name}
                qfile = run.loaded.path / COMPRESS_QUANT_FILE
                towers_info = json.loads(qfile.read_text()).get("towers", {})
                info.update({k: v for k, v in towers_info.get(tower, {}).items()
                             if k in ("scheme", "weight_type", "per_channel", "reduce_range", "n_excluded")})
            else:
                info = quantize_onnx_int8(fp32, dst, tower=tower,
                                          keep_head_float=run.cfg.model.codebook.head == "codebook")
            out[(tower, "int8")] = (dst, info)
        bar.update(1)
    return out


def _onnx_target(run: _Run, files: dict[tuple[str, str], tuple[Path, dict | None]], record: bool) -> None:
    from export.onnx_export import onnx_session, run_onnx

    for (tower, variant), (path, qinfo) in files.items():
        sess = onnx_session(path, run.threads)
        ins, outs = _onnx_io(sess)
        entry = file_entry(run.stage, path, target="onnx", tower=tower, variant=variant, inputs=ins, outputs=outs,
                           batch="dynamic", quantization=qinfo)
        run.check(entry, run_onnx(path, run.held[tower], session=sess))
        if record:
            run.files.append(entry)


def _ort_target(run: _Run, files: dict[tuple[str, str], tuple[Path, dict | None]]) -> dict[str, Any]:
    from export.onnx_export import onnx_session, run_onnx
    from export.ort_format import OPS_CONFIG, check_mobile_usability, convert_to_ort

    ort_dir = run.stage / "ort"
    stems = {f"{t}.{v}": p for (t, v), (p, _) in files.items()}
    converted = convert_to_ort(stems, ort_dir)
    usability_dir = ort_dir / "mobile_usability"
    usability_dir.mkdir(parents=True, exist_ok=True)
    summaries = {}
    for (tower, variant), (src, qinfo) in files.items():
        stem = f"{tower}.{variant}"
        log, summary = check_mobile_usability(src)
        (usability_dir / f"{stem}.txt").write_text(log)
        summaries[stem] = summary
        path = converted[stem]
        sess = onnx_session(path, run.threads)
        ins, outs = _onnx_io(sess)
        entry = file_entry(run.stage, path, target="ort", tower=tower, variant=variant, inputs=ins, outputs=outs,
                           batch="dynamic", quantization=qinfo)
        entry["mobile_usability"] = f"ort/mobile_usability/{stem}.txt"
        run.check(entry, run_onnx(path, run.held[tower], session=sess))
        run.files.append(entry)
    (usability_dir / "summary.json").write_text(json.dumps(summaries, indent=2) + "\n")
    return {"required_operators": [p.relative_to(run.stage).as_posix() for p in sorted(ort_dir.glob("*.config"))],
            "ops_config": f"ort/{OPS_CONFIG}", "mobile_usability": "ort/mobile_usability/summary.json",
            "target_platform": "arm", "optimization_style": "Fixed"}


def _coreml_target(run: _Run, int8: bool, bar: Any) -> None:
    from export.coreml_export import export_coreml, predict_coreml, validate_mlpackage

    on_mac = sys.platform == "darwin"
    for tower in run.towers:
        bar.set_postfix_str(f"coreml {tower}")
        made = export_coreml(run.model, run.cfg, tower, run.stage / "coreml", int8=int8)
        for variant, (path, qinfo) in made.items():
            facts = validate_mlpackage(path, run.cfg, tower, int8=variant == "int8")
            entry = file_entry(run.stage, path, target="coreml", tower=tower, variant=variant,
                               inputs=facts["inputs"], outputs=facts["outputs"], batch=1, quantization=qinfo)
            entry["validation"] = {k: facts[k] for k in ("spec_version", "program", "ops", "quantized_weights")}
            entry["validation"]["minimum_deployment_target"] = "iOS16"
            got = predict_coreml(path, run.held[tower]) if on_mac else None
            run.check(entry, got, note="Core ML predicts on macOS only; spec, inputs and outputs validated here",
                      variant_gate="fp16" if variant == "fp16" else None)
            run.files.append(entry)
        bar.update(1)


def _tflite_target(run: _Run, int8: bool, bar: Any) -> None:
    from export.tflite_export import export_tflite, quantize_tflite_int8, run_tflite, tflite_ops, tflite_signature
    from export.towers import tower_inputs

    for tower in run.towers:
        bar.set_postfix_str(f"tflite {tower}")
        fp32 = export_tflite(run.model, run.cfg, tower, run.stage / "tflite" / f"{tower}.fp32.tflite")
        made: list[tuple[str, Path, dict | None]] = [("fp32", fp32, None)]
        if int8:
            dst = run.stage / "tflite" / f"{tower}.int8.tflite"
            made.append(("int8", dst, quantize_tflite_int8(fp32, dst, tower=tower)))
        for variant, path, qinfo in made:
            ops = tflite_ops(path)
            bad = [op for op in ops if any(f in op for f in ("SORT", "TOPK", "STABLEHLO"))]
            if bad:
                raise RuntimeError(f"{path.name} contains ops the LiteRT runtime cannot run: {bad}")
            ins, outs = _tflite_io(tflite_signature(path), tower_inputs(tower), tower_outputs(tower))
            entry = file_entry(run.stage, path, target="tflite", tower=tower, variant=variant, inputs=ins,
                               outputs=outs, batch=1, quantization=qinfo)
            entry["ops"] = ops
            run.check(entry, run_tflite(path, run.held[tower]))
            run.files.append(entry)
        bar.update(1)


# ------------------------------------------------------------------------------------------------ retrieval


def _retrieval(run: _Run, data: Path, split: str, progress: bool) -> dict[str, Any]:
    """I2A R@10% of PyTorch and of every runnable exported image+audio pair on a dataset split."""
    from core.data.features import FeatureTable
    from export.onnx_export import onnx_session, run_onnx
    from export.tflite_export import _interpreter, run_tflite

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
        if e["tower"] in ("image", "audio") and e["target"] in ("onnx", "ort", "tflite"):
            pairs.setdefault((e["target"], e["variant"]), {})[e["tower"]] = e
    for (target, variant), pair in sorted(pairs.items()):
        if set(pair) != {"image", "audio"}:
            continue
        embs = {}
        for tower, e in pair.items():
            path = run.stage / e["path"]
            if target == "tflite":
                it = _interpreter(path, run.threads)
                embs[tower] = embed_batches(batches, tower, lambda b, it=it, p=path: run_tflite(p, b, interpreter=it))
            else:
                sess = onnx_session(path, run.threads)
                embs[tower] = embed_batches(batches, tower, lambda b, s=sess, p=path: run_onnx(p, b, session=s))
        r10, mr = i2a_figures(embs["image"], embs["audio"])
        drop = torch_r10 - r10
        passed = drop <= run.gates.max_r10_drop + 1e-12
        key = f"{target}.{variant}"
        result["files"][key] = {"i2a_r10": r10, "i2a_median_rank": mr, "drop": drop,
                                "threshold": run.gates.max_r10_drop, "passed": passed}
        if not passed:
            run.failures.append({"file": f"{target} {variant} image+audio", "r10": r10, "r10_torch": torch_r10,
                                 "drop": drop, "threshold": run.gates.max_r10_drop})
    return result


def _text_cache_note(run: _Run) -> dict[str, Any] | None:
    """How far the exported text path (float32 MiniLM states) is from the training path (float16-cached states)."""
    if "text" not in run.towers:
        return None
    texts = example_texts(PARITY_BATCH, seed=PARITY_SEED)
    with torch.no_grad():
        cached = run.model.encode_text(texts).embedding.float().numpy()
    figs = cosine_figures(run.reference["text"], cached)
    return {"compared": "PyTorch text tower (fp32 MiniLM states) vs model.encode_text (fp16-cached states)", **figs}


# ------------------------------------------------------------------------------------------------- export




def export_model(model_dir: str | Path, out_dir: str | Path, targets: str | Iterable[str], *,
                 towers: str | Iterable[str] | None = None, int8: bool = True, force: bool = False,
                 data: str | Path | None = None, split: str = "test", gates: Gates | None = None,
                 progress: bool = True, threads: int = 1) -> dict[str, Any]:
    """Export a checkpoint's towers to ``targets`` in ``out_dir`` (see the module docstring); returns the manifest.

    Raises ConfigError (unknown target/tower, OUT exists without ``force``), CheckpointError (bad model folder),
    ParityError (a file failed its gate; nothing is written).
    """
    from tqdm.auto import tqdm

    from core.checkpoint import load_checkpoint

    targets = parse_targets(targets)
    towers_t = parse_towers(towers)
    gates = gates or Gates()
    model_dir, out = Path(model_dir), Path(out_dir)
    if out.exists() and not force:
        raise ConfigError(f"output folder {out} already exists; pass --force to replace it")
    if data is not None and not Path(data).exists():
        raise ConfigError(f"--data {data} does not exist")
    loaded = load_checkpoint(model_dir)
    kind = loaded.manifest.get("kind")
    if kind not in MODEL_KINDS:
        raise CheckpointError(f"{model_dir} holds a {kind!r}, not a Sat2Sound model ({', '.join(MODEL_KINDS)})")
    if "image_grounding" in towers_t and loaded.cfg.model.codebook.head != "codebook":
        raise ConfigError("the image_grounding tower needs the codebook head; this model uses the global head")
    given_int8 = _compress_int8(model_dir, loaded.manifest) if int8 else {}

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        run = _Run(loaded, stage, towers_t, gates, threads)
        steps = len(towers_t) * (int("onnx" in targets or "ort" in targets) + int("coreml" in targets)
                                 + int("tflite" in targets)) + int("ort" in targets)
        bar = tqdm(total=steps, desc="export", unit="step", disable=not progress)
        extra: dict[str, Any] = {}
        if "onnx" in targets or "ort" in targets:
            onnx_dir = stage / "onnx" if "onnx" in targets else Path(tempfile.mkdtemp(prefix="onnx-", dir=stage))
            onnx_files = _export_onnx_files(run, onnx_dir, int8, given_int8, bar)
            _onnx_target(run, onnx_files, record="onnx" in targets)
            if "ort" in targets:
                bar.set_postfix_str("ort format")
                extra["ort"] = _ort_target(run, onnx_files)
                bar.update(1)
            if "onnx" not in targets:
                shutil.rmtree(onnx_dir, ignore_errors=True)
                run.parity = [p for p in run.parity if p["target"] != "onnx"]
                run.failures = [f for f in run.failures if f.get("target") != "onnx"]
        if "tflite" in targets:
            _tflite_target(run, int8, bar)
        if "coreml" in targets:
            _coreml_target(run, int8, bar)
        bar.close()
        retrieval = _retrieval(run, Path(data), split, progress) if data is not None else None
        if run.failures:
            raise ParityError(f"parity check failed for {len(run.failures)} file(s); nothing was written:\n"
                              + format_failures(run.failures))
        tokenizer = copy_tokenizer(run.model, stage, run.cfg.model.text.max_tokens) if "text" in towers_t else []
        manifest = _manifest(run, targets, int8, given_int8, tokenizer, retrieval, extra)
        (stage / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        move_into_place(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return manifest


def _manifest(run: _Run, targets: tuple[str, ...], int8: bool, given_int8: dict[str, Path], tokenizer: list[str],
              retrieval: dict[str, Any] | None, extra: dict[str, Any]) -> dict[str, Any]:
    src = run.loaded.manifest
    cfg = run.cfg
    return {
        "schema": SCHEMA,
        "kind": "sat2sound-export",
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "source": {
            "path": str(run.loaded.path), "kind": src.get("kind"), "source_kind": src.get("source_kind"),
            "fingerprint": run.loaded.fingerprint, "preset": cfg.name, "head": cfg.model.codebook.head,
            "metadata": cfg.model.fusion.use_metadata, "text_backbone": src.get("text_backbone"),
        },
        "embedding_dim": cfg.model.codebook.dim,
        "codebook_size": cfg.model.codebook.size,
        "targets": list(targets),
        "towers": {t: {"inputs": list(build_tower(run.model, t).INPUTS), "outputs": list(tower_outputs(t))}
                   for t in run.towers},
        "preprocessing": preprocessing(cfg),
        "tokenizer_files": [f"tokenizer/{f}" for f in tokenizer],
        "quantization": {
            "int8": int8,
            "onnx_int8_source": ("sat2sound quantize folder: " + ", ".join(sorted(given_int8))) if given_int8
            else "onnxruntime dynamic (this export)",
            "float_kept": "codebook head (token-code scores, max-pool, sparsemax, weighted codes) in every variant",
        },
        "parity": {
            "held_out": {"batch": PARITY_BATCH, "seed": PARITY_SEED,
                         "inputs": "random normalised images, plausible metadata with partial masks, random log-mel "
                                   "and waves, real captions tokenized"},
            "gates": {**asdict(run.gates), "fp16_min_cosine_macos": FP16_MIN_COSINE},
            "files": run.parity,
            "text_cache": _text_cache_note(run),
            "retrieval": retrieval,
        },
        **extra,
        "hashing": "sha256 of each file; of a folder (.mlpackage): every file's relative path, a NUL byte and its "
                   "bytes, in path order (export/manifest.py sha256_path)",
        "files": run.files,
    }
