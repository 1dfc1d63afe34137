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
Each target's files are written by export/targets.py, the retrieval check by export/retrieval.py.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from contracts.artifacts import MANIFEST_FILE, QUANT_FILE, ArtifactKind, parse_towers, sha256_file
from contracts.durability import staging_folder
from contracts.errors import CheckpointError, ConfigError
from core.artifacts import move_into_place
from core.checkpoint import load_checkpoint
from export.export_run import FP16_MIN_COSINE, ExportRun
from export.manifest import build_manifest, copy_tokenizer, tree_sha256, write_manifest
from export.parity import PARITY_BATCH, PARITY_SEED, Gates, ParityError, format_failures
from export.retrieval import retrieval_check, text_cache_note
from export.targets import (
    GivenInt8,
    coreml_target,
    export_onnx_files,
    onnx_target,
    ort_target,
    tflite_target,
)

TARGETS: tuple[str, ...] = ("onnx", "ort", "coreml", "tflite")
MODEL_KINDS: tuple[str, ...] = (ArtifactKind.MODEL, ArtifactKind.STUDENT, ArtifactKind.INT8)
HELD_OUT = {"batch": PARITY_BATCH, "seed": PARITY_SEED,
            "inputs": "random normalised images, plausible metadata with partial masks, random log-mel and waves, "
                      "real captions tokenized"}
FLOAT_KEPT = ("codebook head (token-code scores, max-pool, sparsemax, weighted codes) in every variant, and the "
              "audio_wave tower's log-mel front end")


@dataclass(frozen=True)
class ExportResult:
    """What ``export_model`` wrote: the folder, its manifest (as in OUT/manifest.json), the targets and towers."""

    out: Path
    manifest: dict[str, Any]
    targets: tuple[str, ...]
    towers: tuple[str, ...]

    @property
    def files(self) -> list[dict[str, Any]]:
        """The manifest's file entries (path, target, tower, variant, I/O, sha256, bytes, quantization, parity)."""
        return self.manifest["files"]

    @property
    def retrieval(self) -> dict[str, Any] | None:
        """The I2A retrieval check (with ``data``), or None."""
        return self.manifest["parity"].get("retrieval")


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


def quantize_folder_int8(model_dir: Path, manifest: dict[str, Any]) -> dict[str, GivenInt8]:
    """The int8 ONNX towers of a `sat2sound quantize` folder, verified against their recorded sha256."""
    if not (model_dir / QUANT_FILE).is_file():
        return {}
    records = json.loads((model_dir / QUANT_FILE).read_text()).get("towers", {})
    found = {}
    for tower, info in (manifest.get("int8") or {}).items():
        path = model_dir / info["file"]
        if not path.is_file():
            raise CheckpointError(f"{model_dir}: int8 tower {info['file']} listed in {MANIFEST_FILE} is missing")
        if info.get("sha256") and sha256_file(path) != info["sha256"]:
            raise CheckpointError(f"{path} does not match the sha256 in {model_dir / MANIFEST_FILE} (corrupt?)")
        found[tower] = GivenInt8(path, records.get(tower, {}))
    return found


def quantize_folder_pt2e(model_dir: Path, manifest: dict[str, Any]) -> dict[str, dict[str, GivenInt8]]:
    """{target: {tower: file}} of the PT2E lowerings a quantize folder lists for TFLite and Core ML (its ONNX one is
    its ``<tower>.int8.onnx``), each verified against the sha256 recorded in its manifest."""
    if not (model_dir / QUANT_FILE).is_file():
        return {}
    records = (json.loads((model_dir / QUANT_FILE).read_text()).get("pt2e") or {})
    found: dict[str, dict[str, GivenInt8]] = {}
    for target, towers in (manifest.get("pt2e") or {}).items():
        if target not in ("tflite", "coreml"):
            continue
        for tower, info in towers.items():
            path = model_dir / info["file"]
            if not path.exists():
                raise CheckpointError(f"{model_dir}: PT2E file {info['file']} listed in {MANIFEST_FILE} is missing")
            digest = sha256_file(path) if path.is_file() else tree_sha256(path)
            if digest != info.get("sha256"):
                raise CheckpointError(f"{path} does not match the sha256 in {model_dir / MANIFEST_FILE} (corrupt?)")
            found.setdefault(target, {})[tower] = GivenInt8(path, records.get(target, {}).get(tower, {}))
    return found


def export_model(model_dir: str | Path, out_dir: str | Path, targets: str | Iterable[str], *,
                 towers: str | Iterable[str] | None = None, int8: bool = True, force: bool = False,
                 data: str | Path | None = None, split: str = "test", gates: Gates | None = None,
                 progress: bool = True, threads: int = 1) -> ExportResult:
    """Export a checkpoint's towers to ``targets`` in ``out_dir`` (see the module docstring).

    Raises ConfigError (unknown target/tower, OUT exists without ``force``), CheckpointError (bad model folder),
    ParityError (a file failed its gate; nothing is written).
    """
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
    given_int8 = quantize_folder_int8(model_dir, loaded.manifest) if int8 else {}
    given_pt2e = quantize_folder_pt2e(model_dir, loaded.manifest) if int8 else {}

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = staging_folder(out)  # named by pid: the next run sweeps what a killed one left
    try:
        run = ExportRun(loaded, stage, towers_t, gates, threads)
        steps = len(towers_t) * (int("onnx" in targets or "ort" in targets) + int("coreml" in targets)
                                 + int("tflite" in targets)) + int("ort" in targets)
        bar = tqdm(total=steps, desc="export", unit="step", disable=not progress)
        extra: dict[str, Any] = {}
        if "onnx" in targets or "ort" in targets:
            onnx_dir = stage / "onnx" if "onnx" in targets else Path(tempfile.mkdtemp(prefix="onnx-", dir=stage))
            onnx_files = export_onnx_files(run, onnx_dir, int8, given_int8, bar)
            onnx_target(run, onnx_files, record="onnx" in targets)
            if "ort" in targets:
                bar.set_postfix_str("ort format")
                extra["ort"] = ort_target(run, onnx_files)
                bar.update(1)
            if "onnx" not in targets:
                shutil.rmtree(onnx_dir, ignore_errors=True)
                run.drop_target("onnx")
        if "tflite" in targets:
            tflite_target(run, int8, bar, given=given_pt2e.get("tflite"))
        if "coreml" in targets:
            coreml_target(run, int8, bar, given=given_pt2e.get("coreml"))
        bar.close()
        retrieval = retrieval_check(run, Path(data), split, progress) if data is not None else None
        if run.failures:
            raise ParityError(f"parity check failed for {len(run.failures)} file(s); nothing was written:\n"
                              + format_failures(run.failures))
        text_cfg = run.cfg.model.text
        tokenizer = (copy_tokenizer(run.model, stage, text_cfg.export_tokens or text_cfg.max_tokens)
                     if "text" in towers_t else [])
        manifest = build_manifest(
            loaded, targets=targets, towers=towers_t, files=run.files, tokenizer_files=tokenizer,
            quantization={"int8": int8, "onnx_int8_source": _int8_source(given_int8), "float_kept": FLOAT_KEPT,
                          "methods": int8_methods(loaded.manifest, given_pt2e) if int8 else None},
            parity={"held_out": HELD_OUT, "gates": {**asdict(gates), "fp16_min_cosine_macos": FP16_MIN_COSINE},
                    "files": run.parity, "text_cache": text_cache_note(run), "retrieval": retrieval},
            extra=extra)
        write_manifest(stage, manifest)
        move_into_place(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return ExportResult(out=out, manifest=manifest, targets=targets, towers=towers_t)


def int8_methods(manifest: dict[str, Any], given_pt2e: dict[str, dict[str, GivenInt8]]) -> dict[str, str]:
    """Which int8 method each target's files come from (what the report shows)."""
    onnx = (manifest.get("methods") or {}).get("onnx") or ("native" if manifest.get("int8") else "native (export)")
    return {"onnx": onnx, "ort": onnx, "tflite": "pt2e" if "tflite" in given_pt2e else "native",
            "coreml": "pt2e" if "coreml" in given_pt2e else "native"}


def _int8_source(given_int8: dict[str, GivenInt8]) -> str:
    if given_int8:
        return "sat2sound quantize folder: " + ", ".join(sorted(given_int8))
    return "export.int8.quantize_tower, dynamic (this export)"
