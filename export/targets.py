"""The files of each target, written into the export's stage folder and parity-checked as they are made.

- ONNX: fp32 per tower and its int8 copy (``export.int8.quantize_tower``, or the int8 tower a `sat2sound
  quantize` folder supplies); with the ORT target only, the ONNX files are the converter's input and not kept.
- ORT: the ONNX files converted for ONNX Runtime Mobile, the operator config and the mobile usability verdicts.
- TFLite: fp32 per tower and its ai-edge-quantizer int8 copy, or the PT2E lowering a quantize folder supplies.
- Core ML: fp16 and int8-weight ML programs, validated here, run on macOS only; int8 from the quantize folder's PT2E
  lowering when it has one.

Given files (``GivenInt8``: a `sat2sound quantize --method pt2e|auto` folder's lowerings, verified by sha256) are
copied, not made again, and go through the same parity checks as files made here.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from export.coreml_export import export_coreml, predict_coreml, validate_mlpackage
from export.export_run import ExportRun, onnx_io, tflite_io
from export.int8 import quantize_tower
from export.manifest import file_entry
from export.onnx_export import export_onnx, onnx_session, run_onnx
from export.ort_format import OPS_CONFIG, check_mobile_usability, convert_to_ort
from export.tflite_export import (
    FORBIDDEN_OPS,
    export_tflite,
    quantize_tflite_int8,
    run_tflite,
    tflite_ops,
    tflite_signature,
)
from export.towers import tower_inputs, tower_outputs

# what an export manifest repeats of a quantize folder's record of each int8 tower
GIVEN_INT8_KEYS = ("scheme", "scheme_used", "weights", "activations", "reduce_range", "float_kept", "n_excluded")

OnnxFiles = dict[tuple[str, str], tuple[Path, dict | None]]  # (tower, variant) -> (file, quantization info)


@dataclass(frozen=True)
class GivenInt8:
    """An int8 ONNX tower of a `sat2sound quantize` folder (checked against its sha256) and how it was made."""

    path: Path
    info: dict[str, Any]


def export_onnx_files(run: ExportRun, onnx_dir: Path, int8: bool, given_int8: dict[str, GivenInt8],
                      bar: Any) -> OnnxFiles:
    """fp32 ONNX of every tower and, with ``int8``, its int8 copy; returns {(tower, variant): (file, quant info)}."""
    out: OnnxFiles = {}
    for tower in run.towers:
        bar.set_postfix_str(f"onnx {tower}")
        fp32 = export_onnx(run.model, run.cfg, tower, onnx_dir / f"{tower}.fp32.onnx")
        out[(tower, "fp32")] = (fp32, None)
        if int8:
            dst = onnx_dir / f"{tower}.int8.onnx"
            if tower in given_int8:
                given = given_int8[tower]
                shutil.copy2(given.path, dst)
                info = given_info(given)
            else:
                info = quantize_tower(fp32, dst, "dynamic", tower=tower,
                                      keep_head_float=run.cfg.model.codebook.head == "codebook")
            out[(tower, "int8")] = (dst, info)
        bar.update(1)
    return out


def onnx_target(run: ExportRun, files: OnnxFiles, record: bool) -> None:
    """Parity of every ONNX file; ``record``: list them in the manifest (the ONNX target was asked for)."""
    for (tower, variant), (path, qinfo) in files.items():
        sess = onnx_session(path, run.threads)
        ins, outs = onnx_io(sess)
        entry = file_entry(run.stage, path, target="onnx", tower=tower, variant=variant, inputs=ins, outputs=outs,
                           batch="dynamic", quantization=qinfo)
        run.check(entry, run_onnx(path, run.held[tower], session=sess))
        if record:
            run.files.append(entry)


def ort_target(run: ExportRun, files: OnnxFiles) -> dict[str, Any]:
    """The ORT files of ``files``, checked; returns the manifest's ``ort`` section."""
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
        ins, outs = onnx_io(sess)
        entry = file_entry(run.stage, path, target="ort", tower=tower, variant=variant, inputs=ins, outputs=outs,
                           batch="dynamic", quantization=qinfo)
        entry["mobile_usability"] = f"ort/mobile_usability/{stem}.txt"
        run.check(entry, run_onnx(path, run.held[tower], session=sess))
        run.files.append(entry)
    (usability_dir / "summary.json").write_text(json.dumps(summaries, indent=2) + "\n")
    return {"required_operators": [p.relative_to(run.stage).as_posix() for p in sorted(ort_dir.glob("*.config"))],
            "ops_config": f"ort/{OPS_CONFIG}", "mobile_usability": "ort/mobile_usability/summary.json",
            "target_platform": "arm", "optimization_style": "Fixed"}


def given_info(given: GivenInt8) -> dict[str, Any]:
    """The manifest's quantization record of a file copied from a quantize folder."""
    keys = GIVEN_INT8_KEYS + ("method", "int8_method", "qat_epochs", "quantizer", "minimum_deployment_target")
    return {"source": "the sat2sound quantize folder", "source_file": given.path.name,
            **{k: v for k, v in given.info.items() if k in keys}}


def coreml_target(run: ExportRun, int8: bool, bar: Any, given: dict[str, GivenInt8] | None = None) -> None:
    """fp16 (and int8-weight) ML programs of every tower, validated; compared with PyTorch on macOS only.
    ``given``: int8 packages (PT2E lowerings) to copy instead of quantizing the fp16 program."""
    on_mac = sys.platform == "darwin"
    given = given or {}
    for tower in run.towers:
        bar.set_postfix_str(f"coreml {tower}")
        made = export_coreml(run.model, run.cfg, tower, run.stage / "coreml", int8=int8 and tower not in given)
        if int8 and tower in given:
            dst = run.stage / "coreml" / f"{tower}.int8.mlpackage"
            shutil.copytree(given[tower].path, dst)
            made["int8"] = (dst, given_info(given[tower]))
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


def tflite_target(run: ExportRun, int8: bool, bar: Any, given: dict[str, GivenInt8] | None = None) -> None:
    """fp32 (and int8) LiteRT files of every tower, checked for forbidden ops and parity; ``given``: int8 files
    (PT2E lowerings) to copy instead of running ai-edge-quantizer."""
    given = given or {}
    for tower in run.towers:
        bar.set_postfix_str(f"tflite {tower}")
        fp32 = export_tflite(run.model, run.cfg, tower, run.stage / "tflite" / f"{tower}.fp32.tflite")
        made: list[tuple[str, Path, dict | None]] = [("fp32", fp32, None)]
        if int8:
            dst = run.stage / "tflite" / f"{tower}.int8.tflite"
            if tower in given:
                shutil.copy2(given[tower].path, dst)
                made.append(("int8", dst, given_info(given[tower])))
            else:
                made.append(("int8", dst, quantize_tflite_int8(fp32, dst, tower=tower)))
        for variant, path, qinfo in made:
            ops = tflite_ops(path)
            bad = [op for op in ops if any(f in op for f in FORBIDDEN_OPS)]
            if bad:
                raise RuntimeError(f"{path.name} contains ops the LiteRT runtime cannot run: {bad}")
            ins, outs = tflite_io(tflite_signature(path), tower_inputs(tower), tower_outputs(tower))
            entry = file_entry(run.stage, path, target="tflite", tower=tower, variant=variant, inputs=ins,
                               outputs=outs, batch=1, quantization=qinfo)
            entry["ops"] = ops
            run.check(entry, run_tflite(path, run.held[tower]))
            run.files.append(entry)
        bar.update(1)
