"""The models and files a latency pass times: trained ones from a pipeline run where they check out, else
untrained models of the preset, and the exported file each runtime runs (the run's own, or exported here and cached
by the model's fingerprint)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.artifacts import MANIFEST_FILE, ArtifactKind, sha256_file
from contracts.errors import CheckpointError
from core.config import get_preset, student_preset_for

EXTENSIONS = {"ort": "onnx", "ort-int8": "onnx", "litert": "tflite", "litert-int8": "tflite"}


@dataclass
class ModelEntry:
    """One model the towers are timed on: the torch module, its config and where it came from."""

    role: str  # teacher | student
    model: Any
    cfg: Any
    fingerprint: str
    trained: bool
    source: str
    params: dict[str, int] = field(default_factory=dict)


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The artifact folder's manifest, or None where it is missing or not a JSON object."""
    path = folder / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _tower_params(model: Any) -> dict[str, int]:
    from compress.student import tower_parameters

    text_backbone = sum(p.numel() for p in model.text_backbone.model.parameters())
    return {"image": tower_parameters(model, "image"), "audio": tower_parameters(model, "audio"),
            "text": tower_parameters(model, "text") + text_backbone, "text_backbone": text_backbone,
            "total": sum(p.numel() for p in model.parameters()) + text_backbone}


def training_state(folder: Path) -> dict[str, Any]:
    """How far the training behind a checkpoint got: the manifest's epoch of the kept weights and, when the run's
    resumable state (``last/state.json``) is there, its step out of the total (a run still going, or stopped)."""
    info = (read_manifest(folder) or {}).get("training") or {}
    parts, out = [], {}
    if "epoch" in info and "epochs" in info:
        parts.append(f"weights of epoch {info['epoch']}/{info['epochs']}")
    try:
        last = json.loads((folder / "last" / "state.json").read_text())
        step, total = int(last["step"]), int(last["total_steps"])
        parts.append(f"run at step {step}/{total}")
        out["unfinished"] = step < total
    except (OSError, ValueError, KeyError, TypeError):
        pass
    out["summary"] = ", ".join(parts)
    return out


def _trained_entry(run: Path | None, role: str, kinds: tuple[str, ...], notes: list[str]) -> ModelEntry | None:
    """The run's checkpoint of ``role`` when its folder holds one of ``kinds`` that loads; else None, with a note
    saying why where there was a folder."""
    from core.checkpoint import load_checkpoint

    folder = run / role if run is not None else None
    manifest = read_manifest(folder) if folder is not None else None
    if manifest is None:
        return None
    kind = manifest.get("kind")
    if kind not in kinds:
        notes.append(f"{folder} holds a {kind!r}, not a {' / '.join(kinds)}: used an untrained {role}")
        return None
    try:
        loaded = load_checkpoint(folder)
    except CheckpointError as exc:
        notes.append(f"{folder} does not load ({exc}): used an untrained {role}")
        return None
    state = training_state(folder)
    if state.get("unfinished"):
        notes.append(f"{folder}: {state['summary']} - a checkpoint of a run that is still going or stopped early")
    source = f"{folder} ({state['summary']})" if state.get("summary") else str(folder)
    return ModelEntry(role, loaded.model.eval(), loaded.cfg, loaded.fingerprint, True, source)


def load_models(preset: str, run: Path | None, roles: tuple[str, ...], *, seed: int = 0,
                notes: list[str] | None = None) -> dict[str, ModelEntry]:
    """Teacher and student: trained from ``run`` when its folders hold valid checkpoints, else untrained.

    An untrained student is built from the teacher (compress.student.build_student: the teacher's codebook and text
    query map), as distillation starts it.
    """
    import torch

    from core.checkpoint import fingerprint_state
    from core.model import build_model

    notes = notes if notes is not None else []
    out: dict[str, ModelEntry] = {}
    teacher = _trained_entry(run, "teacher", (ArtifactKind.MODEL,), notes)
    if teacher is not None and teacher.cfg.name != preset:
        notes.append(f"--run teacher is preset {teacher.cfg.name!r}, not {preset!r}: timed the run's models")
    if teacher is None:
        cfg = get_preset(preset)
        torch.manual_seed(seed)
        model = build_model(cfg).eval()
        teacher = ModelEntry("teacher", model, cfg, fingerprint_state(model.state_dict()), False,
                             f"untrained {preset}")
    out["teacher"] = teacher
    if "student" in roles:
        student = _trained_entry(run, "student", (ArtifactKind.STUDENT, ArtifactKind.MODEL), notes)
        if student is None:
            name = student_preset_for(teacher.cfg.name)
            if name is None:
                notes.append(f"no student preset for {teacher.cfg.name!r}: student rows skipped")
            else:
                from compress.student import build_student

                model = build_student(teacher.model, get_preset(name), seed=seed + 1).eval()
                student = ModelEntry("student", model, model.cfg, fingerprint_state(model.state_dict()), False,
                                     f"untrained {name} (from the {'trained' if teacher.trained else 'untrained'} "
                                     "teacher)")
        if student is not None:
            out["student"] = student
    for entry in out.values():
        entry.params = _tower_params(entry.model)
    return out


def _variant(runtime: str) -> str:
    return "int8" if runtime.endswith("int8") else "fp32"


def _run_file(run: Path | None, entry: ModelEntry, tower: str, runtime: str) -> tuple[Path, str] | None:
    """The file the pipeline wrote for this model/tower/runtime, when its manifest says it came from this model."""
    if run is None:
        return None
    ext, variant = EXTENSIONS[runtime], _variant(runtime)
    target = "onnx" if ext == "onnx" else "tflite"
    export = read_manifest(run / "export")
    if export and export.get("source", {}).get("fingerprint") == entry.fingerprint:
        for f in export.get("files", []):
            if (f.get("target"), f.get("tower"), f.get("variant")) == (target, tower, variant):
                path = run / "export" / f["path"]
                if path.is_file() and sha256_file(path) == f.get("sha256"):
                    return path, f"{run / 'export'} ({f['path']})"
    int8 = read_manifest(run / "int8")
    if ext == "onnx" and variant == "int8" and int8 and int8.get("source_fingerprint") == entry.fingerprint:
        info = (int8.get("int8") or {}).get(tower)
        if info:
            path = run / "int8" / info["file"]
            if path.is_file() and sha256_file(path) == info.get("sha256"):
                return path, f"{run / 'int8'} ({info['file']})"
    return None


def _export_here(entry: ModelEntry, tower: str, ext: str, variant: str, fp32: Path, path: Path) -> None:
    """Write ``fp32`` (when missing) and, for int8, ``path`` from it, with the functions the export step uses (ONNX
    int8: the one dynamic int8 of export.int8, the codebook head kept float)."""
    if not fp32.is_file():
        if ext == "onnx":
            from export.onnx_export import export_onnx

            export_onnx(entry.model, entry.cfg, tower, fp32, dynamic_batch=True)
        else:
            from export.tflite_export import export_tflite

            export_tflite(entry.model, entry.cfg, tower, fp32)
    if variant == "int8":
        if ext == "onnx":
            from export.int8 import quantize_tower

            quantize_tower(fp32, path, "dynamic", tower=tower,
                           keep_head_float=entry.cfg.model.codebook.head == "codebook")
        else:
            from export.tflite_export import quantize_tflite_int8

            quantize_tflite_int8(fp32, path, tower=tower)


def tower_file(entry: ModelEntry, tower: str, runtime: str, work: Path, run: Path | None) -> tuple[Path, str]:
    """(path, where it came from) of the exported file ``runtime`` runs: the run's own, or exported here (cached
    under ``work`` by the model's fingerprint) with the exporter's functions."""
    found = _run_file(run, entry, tower, runtime)
    if found is not None:
        return found
    ext, variant = EXTENSIONS[runtime], _variant(runtime)
    folder = work / "models" / entry.fingerprint[:16]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{tower}.{variant}.{ext}"
    if path.is_file():
        return path, f"exported here (cached, {path.parent})"
    _export_here(entry, tower, ext, variant, folder / f"{tower}.fp32.{ext}", path)
    return path, f"exported here ({path.parent})"


def prune_exports(work: Path, keep: set[str]) -> list[str]:
    """Remove cached exports of models other than ``keep`` (fingerprints): a training run writes a new best
    checkpoint every few epochs, and the exports of each (the text tower alone is ~270 MB) would pile up."""
    removed = []
    for folder in sorted((work / "models").glob("*")):
        if folder.is_dir() and not any(fp.startswith(folder.name) for fp in keep):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed
