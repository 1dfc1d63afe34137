"""CPU latency of every hot path, at batch 1 on 1 and 2 threads, against the issue's targets and the paper.

    python -m benchmarks.latency [--preset default] [--run runs/demo] [--out runs/bench/latency] [--quick]

What is timed (each item after a warm-up, then as many calls as fit in a fixed time box; median and p90):

- towers: image (+ the five metadata fields), audio (log-mel in) and text (token ids in) of the teacher and the
  student, per runtime: PyTorch fp32, PyTorch int8 (``torch.ao.quantization.quantize_dynamic`` of every Linear),
  ONNX Runtime fp32 / int8 and LiteRT fp32 / int8. The student shares the teacher's frozen text tower (MiniLM, text
  query map and codebook are copied), so text is timed once. Each runtime's embedding is compared with PyTorch
  fp32 (cosine), so a fast but broken file shows;
- gallery search: exact numpy top-10 vs HNSW (gallery/index.py, the product's M / ef_construction and its rule for
  ef: the cheapest reaching recall@10 0.99) over embedding-like unit vectors at 10k and 100k items;
- end to end on a bundle (mobile_app.engine.Soundscape, the app's own code path): location -> MBTiles view read ->
  preprocessing -> int8 image tower -> gallery search -> clip bytes.

Artifacts: trained ones from ``--run`` (the pipeline's layout: teacher/, student/, int8/, export/, bundle/; each
checked through its manifest and fingerprint) where present; otherwise untrained models of the preset, exported
here (latency does not depend on the weights' values; the output says "untrained"). Exports and the synthetic
galleries' HNSW indexes are cached under ``--work``, keyed by model fingerprint / data parameters, so a rerun
times instead of rebuilding.

Writes ``OUT.json`` and ``OUT.md`` and prints the table. Speed-ups are ratios of figures measured in this run.
Nothing here asserts a time: a missed target is reported as a finding.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import random
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]

TOWERS: tuple[str, ...] = ("image", "audio", "text")
ROLES: tuple[str, ...] = ("teacher", "student")
RUNTIMES: tuple[str, ...] = ("torch", "torch-int8", "ort", "ort-int8", "litert", "litert-int8")
RUNTIME_LABELS = {"torch": "PyTorch fp32", "torch-int8": "PyTorch int8 (dynamic)", "ort": "ORT fp32",
                  "ort-int8": "ORT int8", "litert": "LiteRT fp32", "litert-int8": "LiteRT int8"}
SECTIONS: tuple[str, ...] = ("towers", "gallery", "e2e")

# The paper's retrieval-based synthesis (REFERENCE.md): 0.5 s on CPU with a 130M-parameter model.
PAPER_SYNTHESIS_MS = 500.0
PAPER_PARAMS = 130_000_000
# The issue's targets.
TARGET_IMAGE_INT8_MS = 10.0  # int8 student image tower, p50 at 1 thread
TARGET_E2E_MS = 25.0  # location -> clip bytes, p50 (20x faster than the paper's 0.5 s)
TARGET_DEVICE_MB = 15.0  # model files for the device

DEFAULT_GALLERY_SIZES = (10_000, 100_000)
QUICK_GALLERY_SIZES = (1_000, 10_000)


# ------------------------------------------------------------------------------------------------------ timing


@dataclass(frozen=True)
class Budget:
    """How long one item is timed: a warm-up (``warmup_calls`` calls and ``warmup_s``, whichever is longer), then
    timed calls until ``run_s`` has passed, never fewer than ``min_runs`` nor more than ``max_runs``. A call so slow
    that ``min_runs`` would overrun the box (PyTorch on 2 threads of a busy 2-core machine took 0.5-1.7 s a call) is
    cut at ``hard_s`` seconds per phase once ``floor_runs`` calls are in; the stats then say ``time_boxed``."""

    warmup_calls: int = 5
    warmup_s: float = 0.3
    run_s: float = 2.0
    min_runs: int = 20
    max_runs: int = 5000
    hard_s: float = 6.0
    floor_runs: int = 5


FULL = Budget()
QUICK = Budget(warmup_calls=2, warmup_s=0.02, run_s=0.15, min_runs=5, max_runs=300, hard_s=1.0, floor_runs=3)


def stats(ms: list[float] | np.ndarray) -> dict[str, float]:
    """p50 (median), p90, mean, min and count of timings in milliseconds."""
    a = np.asarray(ms, dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    return {"n": int(a.size), "p50_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90)),
            "mean_ms": float(a.mean()), "min_ms": float(a.min())}


def measure(fn: Callable[[], Any], budget: Budget) -> dict[str, Any]:
    """Time ``fn`` per ``budget`` (see Budget); returns ``stats`` of the timed calls."""
    start = time.perf_counter()
    done = 0
    while done < budget.warmup_calls or time.perf_counter() - start < budget.warmup_s:
        fn()
        done += 1
        if done >= 1 and time.perf_counter() - start >= budget.hard_s:
            break
    times: list[float] = []
    start = time.perf_counter()
    boxed = False
    while len(times) < budget.max_runs and (len(times) < budget.min_runs or time.perf_counter() - start < budget.run_s):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
        if len(times) >= budget.floor_runs and time.perf_counter() - start >= budget.hard_s:
            boxed = len(times) < budget.min_runs
            break
    out: dict[str, Any] = stats(times)
    if boxed:
        out["time_boxed"] = True
    return out


@contextlib.contextmanager
def blas_threads(n: int) -> Iterator[bool]:
    """Limit numpy's BLAS pool to ``n`` threads (threadpoolctl, when installed); yields whether it could."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield False
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield True


# ------------------------------------------------------------------------------------------------------ machine


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform.processor() is empty on most Linux systems)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine_info(threads: tuple[int, ...]) -> dict[str, Any]:
    flags = cpu_flags()
    return {
        "cpu": cpu_model(), "arch": platform.machine(), "cores": os.cpu_count(), "threads_tested": list(threads),
        "avx2": "avx2" in flags, "vnni": sorted(flags & {"avx512_vnni", "avx_vnni", "amx_int8"}),
        "platform": platform.platform(), "python": platform.python_version(),
        "versions": {d: _version(d) for d in ("torch", "onnxruntime", "ai-edge-litert", "litert-torch", "numpy",
                                               "hnswlib", "onnx")},
        "load_avg_start": [round(x, 2) for x in os.getloadavg()],
    }


# ------------------------------------------------------------------------------------------------------ models


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


def _manifest(folder: Path) -> dict[str, Any] | None:
    path = folder / "manifest.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def student_preset(preset: str) -> str | None:
    """The student preset that goes with a teacher preset (``student-<preset>``), when there is one."""
    from core.config import PRESETS

    name = f"student-{preset}"
    return name if name in PRESETS else None


def _tower_params(model: Any) -> dict[str, int]:
    from compress.student import tower_parameters

    text_backbone = sum(p.numel() for p in model.text_backbone.model.parameters())
    return {"image": tower_parameters(model, "image"), "audio": tower_parameters(model, "audio"),
            "text": tower_parameters(model, "text") + text_backbone, "text_backbone": text_backbone,
            "total": sum(p.numel() for p in model.parameters()) + text_backbone}


def training_state(folder: Path) -> dict[str, Any]:
    """How far the training behind a checkpoint got: the manifest's epoch of the kept weights and, when the run's
    resumable state (``last/state.json``) is there, its step out of the total (a run still going, or stopped)."""
    info = (_manifest(folder) or {}).get("training") or {}
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


def load_models(preset: str, run: Path | None, roles: tuple[str, ...], *, seed: int = 0,
                notes: list[str] | None = None) -> dict[str, ModelEntry]:
    """Teacher and student: trained from ``run`` when its folders hold valid checkpoints, else untrained.

    An untrained student is built from the teacher (compress.student.build_student: the teacher's codebook and text
    query map), as distillation starts it.
    """
    import torch

    from contracts.errors import CheckpointError
    from core.checkpoint import fingerprint_state, load_checkpoint
    from core.config import get_preset
    from core.model import build_model

    notes = notes if notes is not None else []
    out: dict[str, ModelEntry] = {}

    def trained(role: str, kinds: tuple[str, ...]) -> ModelEntry | None:
        folder = run / role if run is not None else None
        if folder is None or _manifest(folder) is None:
            return None
        kind = _manifest(folder).get("kind")
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

    teacher = trained("teacher", ("sat2sound-model",))
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
        student = trained("student", ("sat2sound-student", "sat2sound-model"))
        if student is None:
            name = student_preset(teacher.cfg.name)
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


# ------------------------------------------------------------------------------------------------------ files

EXTENSIONS = {"ort": "onnx", "ort-int8": "onnx", "litert": "tflite", "litert-int8": "tflite"}


def _variant(runtime: str) -> str:
    return "int8" if runtime.endswith("int8") else "fp32"


def _run_file(run: Path | None, entry: ModelEntry, tower: str, runtime: str) -> tuple[Path, str] | None:
    """The file the pipeline wrote for this model/tower/runtime, when its manifest says it came from this model."""
    if run is None:
        return None
    from export.manifest import sha256_path

    ext, variant = EXTENSIONS[runtime], _variant(runtime)
    target = "onnx" if ext == "onnx" else "tflite"
    export = _manifest(run / "export")
    if export and export.get("source", {}).get("fingerprint") == entry.fingerprint:
        for f in export.get("files", []):
            if (f.get("target"), f.get("tower"), f.get("variant")) == (target, tower, variant):
                path = run / "export" / f["path"]
                if path.is_file() and sha256_path(path) == f.get("sha256"):
                    return path, f"{run / 'export'} ({f['path']})"
    int8 = _manifest(run / "int8")
    if ext == "onnx" and variant == "int8" and int8 and int8.get("source_fingerprint") == entry.fingerprint:
        info = (int8.get("int8") or {}).get(tower)
        if info:
            path = run / "int8" / info["file"]
            if path.is_file() and sha256_path(path) == info.get("sha256"):
                return path, f"{run / 'int8'} ({info['file']})"
    return None


def tower_file(entry: ModelEntry, tower: str, runtime: str, work: Path, run: Path | None) -> tuple[Path, str]:
    """(path, where it came from) of the exported file ``runtime`` runs: the run's own, or exported here (cached
    under ``work`` by the model's fingerprint) with the export helper's functions."""
    found = _run_file(run, entry, tower, runtime)
    if found is not None:
        return found
    ext, variant = EXTENSIONS[runtime], _variant(runtime)
    folder = work / "models" / entry.fingerprint[:16]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{tower}.{variant}.{ext}"
    if path.is_file():
        return path, f"exported here (cached, {path.parent})"
    fp32 = folder / f"{tower}.fp32.{ext}"
    if not fp32.is_file():
        if ext == "onnx":
            from export.onnx_export import export_onnx

            export_onnx(entry.model, entry.cfg, tower, fp32, dynamic_batch=True)
        else:
            from export.tflite_export import export_tflite

            export_tflite(entry.model, entry.cfg, tower, fp32)
    if variant == "int8":
        if ext == "onnx":
            from export.onnx_int8 import quantize_onnx_int8

            quantize_onnx_int8(fp32, path, tower=tower)
        else:
            from export.tflite_export import quantize_tflite_int8

            quantize_tflite_int8(fp32, path, tower=tower)
    return path, f"exported here ({path.parent})"


# ------------------------------------------------------------------------------------------------------ runners


def example_feed(cfg: Any, tower: str) -> dict[str, Any]:
    """Batch-1 inputs of a tower (torch tensors): every metadata field given, a real caption for text."""
    from export.towers import example_inputs

    return example_inputs(cfg, tower, 1, seed=1)


@contextlib.contextmanager
def quiet_torch_quantization() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def torch_int8_tower(model: Any, tower: str) -> Any:
    """The tower wrapper with every nn.Linear dynamically quantized to int8 (torch.ao.quantization.quantize_dynamic;
    deprecated in torch 2.13 but working). The codebook head has no Linear, so it stays float as in every int8 file."""
    import torch

    from export.towers import build_tower

    with quiet_torch_quantization():
        return torch.ao.quantization.quantize_dynamic(build_tower(model, tower), {torch.nn.Linear},
                                                      dtype=torch.qint8)


class Case:
    """One tower of one model on one runtime: builds a callable per thread count, and its embedding."""

    def __init__(self, entry: ModelEntry, tower: str, runtime: str, work: Path, run: Path | None):
        from export.towers import tower_inputs

        self.entry, self.tower, self.runtime = entry, tower, runtime
        self.feed = example_feed(entry.cfg, tower)
        self.names = tower_inputs(tower)
        self.file: Path | None = None
        self.file_source = "in memory"
        self._module: Any = None
        if runtime in ("torch", "torch-int8"):
            from export.towers import build_tower

            self._module = build_tower(entry.model, tower) if runtime == "torch" else torch_int8_tower(entry.model,
                                                                                                      tower)
            self.file_source = "in memory" if runtime == "torch" else "in memory (quantize_dynamic, Linear -> int8)"
        else:
            self.file, self.file_source = tower_file(entry, tower, runtime, work, run)

    @property
    def bytes(self) -> int | None:
        return self.file.stat().st_size if self.file is not None else None

    def callable(self, threads: int) -> Callable[[], np.ndarray]:
        """A no-argument call of the tower at batch 1 with ``threads`` threads, returning the (1, d) embedding."""
        if self._module is not None:
            import torch

            torch.set_num_threads(threads)
            args = tuple(self.feed[k] for k in self.names)
            module = self._module

            def run_torch() -> np.ndarray:
                with torch.inference_mode():
                    return module(*args).numpy()

            return run_torch
        from export.onnx_export import as_numpy_inputs

        feed = as_numpy_inputs(self.feed)
        if self.runtime.startswith("ort"):
            from export.onnx_export import onnx_session

            sess = onnx_session(self.file, threads=threads)
            names = [i.name for i in sess.get_inputs()]
            ort_feed = {k: feed[k] for k in names}
            return lambda: sess.run(["embedding"], ort_feed)[0]
        from mobile_app.runtime import LiteRtTower

        tower = LiteRtTower(self.file, self.names, "embedding", threads)
        return lambda: tower.run(feed)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def bench_towers(models: dict[str, ModelEntry], towers: tuple[str, ...], runtimes: tuple[str, ...],
                 threads: tuple[int, ...], budget: Budget, work: Path, run: Path | None,
                 progress: bool = True) -> list[dict[str, Any]]:
    """Time every (tower, model, runtime) at every thread count; a case that cannot run is recorded with why."""
    import torch
    from tqdm.auto import tqdm

    plan = [(t, role, rt) for t in towers for role in models for rt in runtimes
            if not (t == "text" and role == "student")]
    rows: list[dict[str, Any]] = []
    before = torch.get_num_threads()
    reference: dict[tuple[str, str], np.ndarray] = {}
    bar = tqdm(plan, desc="towers", unit="case", disable=not progress)
    try:
        for tower, role, runtime in bar:
            bar.set_postfix_str(f"{tower} {role} {runtime}")
            entry = models[role]
            row: dict[str, Any] = {"tower": tower, "role": role, "runtime": runtime, "trained": entry.trained,
                                   "threads": {}}
            try:
                case = Case(entry, tower, runtime, work, run)
                row.update(file=str(case.file) if case.file else None, file_source=case.file_source,
                           bytes=case.bytes)
                for t in threads:
                    fn = case.callable(t)
                    out = fn()
                    if runtime == "torch" and (role, tower) not in reference:
                        reference[(role, tower)] = out
                    if "cosine_to_torch_fp32" not in row and (role, tower) in reference:
                        row["cosine_to_torch_fp32"] = cosine(out, reference[(role, tower)])
                    row["threads"][str(t)] = measure(fn, budget)
                    del fn
            except Exception as exc:  # a runtime that is missing or fails here is a finding, not a crash
                row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
            rows.append(row)
    finally:
        torch.set_num_threads(before)
        bar.close()
    return rows


def prune_exports(work: Path, keep: set[str]) -> list[str]:
    """Remove cached exports of models other than ``keep`` (fingerprints): a training run writes a new best
    checkpoint every few epochs, and the exports of each (the text tower alone is ~270 MB) would pile up."""
    import shutil

    removed = []
    for folder in sorted((work / "models").glob("*")):
        if folder.is_dir() and not any(fp.startswith(folder.name) for fp in keep):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed


def speedups(rows: list[dict[str, Any]], threads: tuple[int, ...]) -> None:
    """Add to each row, per thread count, its speed-up over the teacher's PyTorch fp32 of the same tower."""
    base = {(r["tower"], t): r["threads"][t]["p50_ms"] for r in rows if r["role"] == "teacher"
            and r["runtime"] == "torch" and "error" not in r for t in r["threads"]}
    for r in rows:
        r["speedup_vs_teacher_torch_fp32"] = {
            str(t): round(base[(r["tower"], str(t))] / r["threads"][str(t)]["p50_ms"], 3)
            for t in threads if (r["tower"], str(t)) in base and str(t) in r.get("threads", {})}


# ------------------------------------------------------------------------------------------------------ gallery


def _cycling(fn: Callable[[np.ndarray], Any], queries: np.ndarray) -> Callable[[], Any]:
    """A no-argument call of ``fn`` on the next query each time (round robin), so no query is timed warm twice in a
    row more than the gallery's size allows."""
    state = {"i": 0}

    def call() -> Any:
        q = queries[state["i"] % len(queries)]
        state["i"] += 1
        return fn(q)

    return call


def _data_tag(kind: str, real: tuple[Path, Path] | None) -> str:
    """Cache name of a gallery data kind; the teacher's own vectors are keyed by its fingerprint."""
    if kind != "teacher":
        return kind
    if real is None:
        raise SystemExit("--gallery-data teacher needs a run with a trained teacher/ and world/ (--run)")
    return f"teacher-{json.loads((real[0] / 'manifest.json').read_text())['fingerprint'][:12]}"


def _gallery_vectors(kind: str, n: int, queries: int, dim: int, seed: int, cache: Path,
                     real: tuple[Path, Path] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic vectors (``codebook``/``clustered``), or ``teacher``: the trained checkpoint's own embeddings of n
    world tiles with caption and place queries (benchmarks/teacher_embeddings.py; ``real`` = (checkpoint, world))."""
    from benchmarks.gallery_search import make_data

    tag = _data_tag(kind, real)
    path = cache / f"{tag}-{n}x{dim}-q{queries}-s{seed}.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["items"], z["queries"]
    if kind == "teacher":
        from benchmarks.teacher_embeddings import teacher_data

        # the tile embeddings live beside the gallery cache (runs/bench/cache/tiles by default), where
        # `python -m benchmarks.gallery_search --teacher` keeps them too: either benchmark reuses the other's
        data = teacher_data(real[0], real[1], n, queries, seed, cache.parent / "tiles")
        items, qs = data.items, data.queries
    else:
        items, qs, _ = make_data(kind, n, queries, dim, seed)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, items=items, queries=qs)
    os.replace(tmp, path)
    return items, qs


@dataclass
class SyntheticGallery:
    """Embedding-like unit vectors, fresh queries and an HNSW index over them with the product's parameters."""

    items: np.ndarray
    queries: np.ndarray
    index: Any
    path: Path
    build_s: float | None  # None: loaded from the cache

    @property
    def labels(self) -> np.ndarray:
        return np.arange(len(self.items), dtype=np.int64)


def synthetic_gallery(kind: str, n: int, dim: int, queries: int, seed: int, cache: Path, *,
                      build_threads: int = 2, real: tuple[Path, Path] | None = None) -> SyntheticGallery:
    """Vectors from benchmarks/gallery_search.py (``codebook``: sparse mixtures of codebook entries, the shape the
    Sat2Sound head produces; ``clustered``) and an HNSW index with gallery/layout.py's M and ef_construction,
    both cached under ``cache`` (a 100k index takes minutes to build on 2 cores)."""
    from gallery import index as vindex
    from gallery.layout import EF_LADDER, HNSW_EF_CONSTRUCTION, HNSW_M

    items, qs = _gallery_vectors(kind, n, queries, dim, seed, cache, real)
    path = cache / f"{_data_tag(kind, real)}-{n}x{dim}-s{seed}-M{HNSW_M}-efc{HNSW_EF_CONSTRUCTION}.hnsw"
    if path.is_file():
        return SyntheticGallery(items, qs, vindex.load_hnsw(path, dim, n, EF_LADDER[0]), path, None)
    t0 = time.perf_counter()
    index = vindex.build_hnsw(items, np.arange(n, dtype=np.int64), m=HNSW_M, ef_construction=HNSW_EF_CONSTRUCTION,
                              threads=build_threads)
    build_s = round(time.perf_counter() - t0, 2)
    tmp = path.with_suffix(".tmp")
    index.save_index(str(tmp))
    os.replace(tmp, path)
    index.set_num_threads(1)  # queries one at a time on one thread, as on a device
    return SyntheticGallery(items, qs, index, path, build_s)


def bench_gallery(sizes: tuple[int, ...], dim: int, threads: tuple[int, ...], budget: Budget, work: Path, *,
                  kind: str = "codebook", queries: int = 200, seed: int = 0, build_threads: int = 2,
                  progress: bool = True, real: tuple[Path, Path] | None = None) -> dict[str, Any]:
    """Exact numpy top-10 vs HNSW at each gallery size, with the product's HNSW parameters and ef rule
    (gallery/layout.py: the cheapest ef of its ladder reaching the target recall@10, else exact search)."""
    from gallery import index as vindex
    from gallery.layout import EF_LADDER, HNSW_EF_CONSTRUCTION, HNSW_M, TARGET_RECALL

    out: dict[str, Any] = {"data": kind, "dim": dim, "queries": queries, "k": 10, "M": HNSW_M,
                           "ef_construction": HNSW_EF_CONSTRUCTION, "target_recall": TARGET_RECALL, "sizes": []}
    for n in sizes:
        if progress:
            print(f"[gallery] {n} x {dim} {kind} vectors", flush=True)
        g = synthetic_gallery(kind, n, dim, queries, seed, work / "gallery", build_threads=build_threads, real=real)
        size: dict[str, Any] = {"n": n, "exact": {}, "build_s": g.build_s, "index_cached": g.build_s is None,
                                "index_bytes": g.path.stat().st_size}
        with blas_threads(1) as limited:
            size["exact_blas_threads_limited"] = limited
        for t in threads:
            with blas_threads(t):
                search = _cycling(lambda q, items=g.items: vindex.exact_topk(items, q[None, :], 10), g.queries)
                size["exact"][str(t)] = measure(search, budget)
        ladder = EF_LADDER if budget.run_s >= FULL.run_s else tuple(e for e in EF_LADDER if e in (16, 64, 256, 1024))
        table = vindex.measure_ef(g.index, g.items, g.labels, g.queries, k=10, ladder=ladder)
        chosen = vindex.choose_ef(table, TARGET_RECALL)
        size["ef_table"] = table
        size["hnsw"] = {"ef": chosen["ef"], "recall_at_10": chosen["recall"], "top1": chosen["top1"],
                        "p50_ms": chosen["p50_ms"], "p90_ms": chosen["p90_ms"], "n": len(g.queries), "threads": 1}
        size["gallery_mode"] = "hnsw" if chosen["recall"] >= TARGET_RECALL else "exact"
        if size["gallery_mode"] == "exact":  # the gallery builder's fallback: IVF lists, when they reach the target
            from gallery.ivf import NPROBE_LADDER, build_ivf, measure_nprobe

            t0 = time.perf_counter()
            ivf = build_ivf(g.items)
            ivf_build_s = round(time.perf_counter() - t0, 2)
            ivf_table = measure_nprobe(ivf, g.items, g.queries, k=10, ladder=NPROBE_LADDER)
            best = vindex.choose_ef(ivf_table, TARGET_RECALL, key="nprobe")
            size["ivf"] = {"n_lists": ivf.n_lists, "build_s": ivf_build_s, "nprobe": best["nprobe"],
                           "recall_at_10": best["recall"], "top1": best["top1"], "p50_ms": best["p50_ms"],
                           "p90_ms": best["p90_ms"], "table": ivf_table}
            exact_p50 = (size["exact"].get("1") or next(iter(size["exact"].values())))["p50_ms"]
            if best["recall"] >= TARGET_RECALL and best["p50_ms"] < exact_p50:
                size["gallery_mode"] = "ivf"
        exact1 = size["exact"].get("1") or next(iter(size["exact"].values()))
        size["hnsw_speedup_vs_exact_1t"] = round(exact1["p50_ms"] / chosen["p50_ms"], 2)
        out["sizes"].append(size)
        del g
    return out


# ------------------------------------------------------------------------------------------------------ end to end


def bundle_trained(bundle: Path, run: Path | None) -> bool | None:
    """True when the bundle's model is one of the run's trained checkpoints (or maps into their space); None when
    that cannot be told."""
    model = (_manifest(bundle) or {}).get("model") or {}
    mine = {model.get("fingerprint"), model.get("space_fingerprint")} - {None}
    known = {(_manifest(run / role) or {}).get("fingerprint") for role in ROLES} - {None} if run is not None else set()
    return True if mine & known else None


def resolve_bundle(bundle: Path | None, run: Path | None, preset: str, work: Path, quick: bool,
                   progress: bool = True) -> tuple[Path, bool | None, str]:
    """(bundle folder, trained? (None: unknown), where from): ``--bundle``, the run's bundle, or a demo bundle of an
    untrained student (bundle.demo: the real export, gallery and map code) built once under ``work``."""
    if bundle is not None:
        return bundle, bundle_trained(bundle, run), str(bundle)
    if run is not None and _manifest(run / "bundle") is not None:
        return run / "bundle", bundle_trained(run / "bundle", run), str(run / "bundle")
    from bundle.demo import DEMO_REGION, TEST_BUNDLE_OPTIONS, TEST_REGION, build_demo

    model_preset = student_preset(preset) or preset
    region, options = (TEST_REGION, TEST_BUNDLE_OPTIONS) if quick else (DEMO_REGION, {})
    folder = work / f"bundle-{model_preset}{'-quick' if quick else ''}"
    # the full pass exports through `sat2sound export` (ORT format + LiteRT, parity-gated), so the bundle ships both
    # runtimes' files as the pipeline's does; the quick pass exports ONNX/ORT directly (seconds)
    paths = build_demo(folder, preset=model_preset, region=region, force=False, export_via_cli=not quick,
                       progress=progress, **options)
    return paths["bundle"], False, f"demo bundle of an untrained {model_preset} ({paths['bundle']})"


def bundle_model_files(bundle: Path) -> dict[str, Any]:
    """The model files a bundle ships (bytes each), and the file each runtime loads."""
    from mobile_app.bundle import load_bundle

    manifest = json.loads((bundle / "manifest.json").read_text())
    files = {rel: e["bytes"] for rel, e in manifest["files"].items()
             if rel.startswith("model/") and rel.endswith((".onnx", ".ort", ".tflite"))}
    b = load_bundle(bundle, verify=False)
    loads = {}
    for runtime in ("onnx", "tflite"):
        with contextlib.suppress(Exception):
            path = b.model_file(runtime)
            loads[runtime] = {"file": path.relative_to(bundle).as_posix(), "bytes": path.stat().st_size}
    return {"files": files, "total_bytes": sum(files.values()), "runtime_loads": loads,
            "model_kind": manifest["model"].get("kind"), "variant": manifest["model"].get("variant"),
            "gallery_items": manifest["gallery"].get("count"), "image_size": manifest["model"].get("image_size")}


def bench_end_to_end(bundle: Path, threads: tuple[int, ...], budget: Budget, *, seed: int = 0) -> dict[str, Any]:
    """Taps at random places / zooms / recording styles of the bundle's region: Soundscape.listen + clip bytes."""
    from mobile_app.engine import Soundscape
    from mobile_app.place import When

    info = bundle_model_files(bundle)
    runs = []
    for runtime in [r for r in ("onnx", "tflite") if r in info["runtime_loads"]]:
        for t in threads:
            rng = random.Random(seed)
            parts: dict[str, list[float]] = {"view": [], "model": [], "search": [], "clip": []}
            with Soundscape.open(bundle, runtime=runtime, threads=t) as s:
                r = s.bundle.region

                def tap(s=s, r=r, rng=rng, parts=parts) -> None:
                    lon, lat = rng.uniform(r.west, r.east), rng.uniform(r.south, r.north)
                    a = s.listen(lon, lat, rng.choice(s.zooms), audio_source=rng.choice(["aporee", "yfcc", None]),
                                 when=When(6, 8))
                    t0 = time.perf_counter()
                    data, _fmt = s.clip(a.top.id)
                    parts["clip"].append((time.perf_counter() - t0) * 1e3)
                    if not data:
                        raise RuntimeError(f"clip {a.top.id} has no bytes")
                    for k in ("view", "model", "search"):
                        parts[k].append(a.ms[k])

                total = measure(tap, budget)
                n = total["n"]
                runs.append({"runtime": runtime, "threads": t, "file": info["runtime_loads"][runtime]["file"],
                             "total": total, **{k: stats(v[-n:]) for k, v in parts.items()}})
    return {**info, "runs": runs}


# ------------------------------------------------------------------------------------------------------ summary


def _row(rows: list[dict[str, Any]], tower: str, role: str, runtime: str) -> dict[str, Any] | None:
    return next((r for r in rows if (r["tower"], r["role"], r["runtime"]) == (tower, role, runtime)
                 and "error" not in r), None)


def _p50(row: dict[str, Any] | None, t: int) -> float | None:
    if row is None or str(t) not in row.get("threads", {}):
        return None
    return row["threads"][str(t)]["p50_ms"]


def headline_speedups(rows: list[dict[str, Any]], threads: tuple[int, ...]) -> list[dict[str, Any]]:
    """Named ratios of p50s from this run (base / other)."""
    pairs = [
        ("student int8 ORT vs teacher PyTorch fp32", ("student", "ort-int8"), ("teacher", "torch")),
        ("student int8 LiteRT vs teacher PyTorch fp32", ("student", "litert-int8"), ("teacher", "torch")),
        ("student fp32 vs teacher fp32 (PyTorch): distillation alone", ("student", "torch"), ("teacher", "torch")),
        ("teacher ORT fp32 vs PyTorch fp32: runtime alone", ("teacher", "ort"), ("teacher", "torch")),
        ("teacher ORT int8 vs ORT fp32: int8 alone", ("teacher", "ort-int8"), ("teacher", "ort")),
        ("teacher PyTorch int8 vs PyTorch fp32", ("teacher", "torch-int8"), ("teacher", "torch")),
    ]
    out = []
    for name, (role, rt), (brole, brt) in pairs:
        for tower in TOWERS:
            if tower == "text" and role == "student":
                role_t = "teacher"  # the student's text tower is the teacher's
            else:
                role_t = role
            for t in threads:
                a, b = _p50(_row(rows, tower, role_t, rt), t), _p50(_row(rows, tower, brole, brt), t)
                if a and b and (role_t, rt) != (brole, brt):
                    out.append({"name": name, "tower": tower, "threads": t, "speedup": round(b / a, 2),
                                "p50_ms": round(a, 3), "base_p50_ms": round(b, 3)})
    return out


def check_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's three targets, each as measured (None when the item was not measured)."""
    rows = result.get("towers") or []
    targets = []
    for rt in ("ort-int8", "litert-int8"):
        role = "teacher" if _row(rows, "image", "teacher", rt) and not _row(rows, "image", "student", rt) else "student"
        p50 = _p50(_row(rows, "image", role, rt), 1)
        targets.append({"name": f"int8 {role} image tower, {RUNTIME_LABELS[rt]}, p50 at 1 thread",
                        "target": f"< {TARGET_IMAGE_INT8_MS:g} ms", "measured": None if p50 is None else round(p50, 3),
                        "unit": "ms", "met": None if p50 is None else p50 < TARGET_IMAGE_INT8_MS})
    e2e = result.get("end_to_end") or {}
    for r in e2e.get("runs", []):
        p50 = r["total"]["p50_ms"]
        targets.append({"name": f"end to end location -> clip bytes ({r['runtime']}, {r['threads']} thread"
                                f"{'s' if r['threads'] > 1 else ''}), p50", "target": f"< {TARGET_E2E_MS:g} ms",
                        "measured": round(p50, 3), "unit": "ms", "met": p50 < TARGET_E2E_MS})
    for runtime, load in (e2e.get("runtime_loads") or {}).items():
        mb = load["bytes"] / 1e6
        targets.append({"name": f"device model file ({runtime}: {load['file']})",
                        "target": f"< {TARGET_DEVICE_MB:g} MB", "measured": round(mb, 2), "unit": "MB",
                        "met": mb < TARGET_DEVICE_MB})
    if e2e.get("files"):
        mb = e2e["total_bytes"] / 1e6
        targets.append({"name": "all model files in the bundle", "target": f"< {TARGET_DEVICE_MB:g} MB",
                        "measured": round(mb, 2), "unit": "MB", "met": mb < TARGET_DEVICE_MB})
    return targets


def paper_comparison(result: dict[str, Any]) -> dict[str, Any]:
    """Ratios against the paper's retrieval-based synthesis: 0.5 s on CPU and 130M parameters."""
    out: dict[str, Any] = {"paper_latency_ms": PAPER_SYNTHESIS_MS, "paper_params": PAPER_PARAMS}
    runs = (result.get("end_to_end") or {}).get("runs") or []
    if runs:
        best = min(runs, key=lambda r: r["total"]["p50_ms"])
        out["end_to_end_p50_ms"] = round(best["total"]["p50_ms"], 3)
        out["end_to_end_setting"] = f"{best['runtime']}, {best['threads']} thread(s)"
        out["latency_ratio"] = round(PAPER_SYNTHESIS_MS / best["total"]["p50_ms"], 1)
    models = result.get("models") or {}
    for role, m in models.items():
        p = m["params"]
        out[f"{role}_image_tower_params"] = p["image"]
        out[f"{role}_image_tower_param_ratio"] = round(PAPER_PARAMS / max(p["image"], 1), 1)
        out[f"{role}_all_towers_params"] = p["total"]
        out[f"{role}_all_towers_param_ratio"] = round(PAPER_PARAMS / max(p["total"], 1), 2)
    return out


def projected_search(result: dict[str, Any]) -> list[dict[str, Any]]:
    """End to end with a larger gallery: the measured tap minus its search plus the search measured at that size
    (HNSW at its chosen ef, or exact when HNSW misses the recall target) - derived, not measured."""
    runs = (result.get("end_to_end") or {}).get("runs") or []
    sizes = (result.get("gallery") or {}).get("sizes") or []
    out = []
    for r in runs:
        for s in sizes:
            exact = s["exact"].get(str(r["threads"])) or s["exact"].get("1")
            search = {"hnsw": s["hnsw"]["p50_ms"], "ivf": (s.get("ivf") or {}).get("p50_ms")}.get(
                s["gallery_mode"]) or exact["p50_ms"]
            out.append({"runtime": r["runtime"], "threads": r["threads"], "gallery_n": s["n"],
                        "mode": s["gallery_mode"],
                        "p50_ms": round(r["total"]["p50_ms"] - r["search"]["p50_ms"] + search, 3)})
    return out


# ------------------------------------------------------------------------------------------------------ markdown


def _fmt(x: float | None, nd: int = 2) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def _trained_label(trained: bool | None) -> str:
    if trained is None:
        return "training state unknown"
    return "trained" if trained else "UNTRAINED: latency does not depend on training"


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    threads = tuple(m["threads_tested"])
    lines = [f"# Sat2Sound latency ({result['preset']} preset{', quick pass' if result['quick'] else ''})", "",
             f"Machine: {m['cpu']}, {m['cores']} cores ({m['arch']}; AVX2 {'yes' if m['avx2'] else 'no'}, VNNI "
             f"{', '.join(m['vnni']) or 'no'}); Python {m['python']}, "
             + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v) + ".",
             f"Load average (1/5/15 min) at start {m['load_avg_start']}, at end {m.get('load_avg_end')}. "
             f"Batch 1; per item a warm-up, then timed calls for {result['budget']['run_s']} s (at least "
             f"{result['budget']['min_runs']}); p50 = median.", ""]
    for role, info in (result.get("models") or {}).items():
        state = _trained_label(info["trained"])
        prm = {k: v / 1e6 for k, v in info["params"].items()}
        lines.append(f"- {role}: {info['source']} - {state}; fingerprint {info['fingerprint'][:12]}; params: image "
                     f"tower {prm['image']:.2f}M, audio {prm['audio']:.2f}M, text {prm['text']:.2f}M (MiniLM "
                     f"{prm['text_backbone']:.1f}M)")
    lines.append("")
    rows = result.get("towers")
    if rows:
        head = "| tower | model | runtime | file MB | cos vs fp32 | " + " | ".join(
            f"p50 {t}t ms | p90 {t}t ms | x vs teacher PT {t}t" for t in threads) + " |"
        lines += ["## Towers", "", head, "|" + "---|" * (5 + 3 * len(threads))]
        for r in rows:
            mb = "-" if not r.get("bytes") else f"{r['bytes'] / 1e6:.2f}"
            if "error" in r:
                lines.append(f"| {r['tower']} | {r['role']} | {RUNTIME_LABELS[r['runtime']]} | {mb} | - | "
                             + " | ".join("-" for _ in range(3 * len(threads))) + f" |  <!-- {r['error']} -->")
                continue
            cells = []
            for t in threads:
                s = r["threads"].get(str(t), {})
                cells += [_fmt(s.get("p50_ms")) + ("*" if s.get("time_boxed") else ""), _fmt(s.get("p90_ms")),
                          _fmt(r.get("speedup_vs_teacher_torch_fp32", {}).get(str(t)), 1)]
            lines.append(f"| {r['tower']} | {r['role']} | {RUNTIME_LABELS[r['runtime']]} | {mb} | "
                         f"{_fmt(r.get('cosine_to_torch_fp32'), 4)} | " + " | ".join(cells) + " |")
        errors = [r for r in rows if "error" in r]
        if errors:
            lines += ["", "Not measured:"] + [f"- {r['tower']} {r['role']} {RUNTIME_LABELS[r['runtime']]}: "
                                               f"{r['error']}" for r in errors]
        lines += ["", "The student's text tower is the teacher's (MiniLM, text query map and codebook are copied and "
                  "frozen), so text is timed once. `cos vs fp32`: the runtime's embedding against PyTorch fp32 of the "
                  "same model on the same input. `*`: calls so slow that the item was cut at its time box with fewer "
                  "than the minimum runs.", ""]
        if result.get("headline_speedups"):
            lines += ["### Speed-ups (ratios of p50s measured in this run)", "", "| comparison | tower | threads | "
                      "p50 ms | base p50 ms | speed-up |", "|---|---|---:|---:|---:|---:|"]
            for h in result["headline_speedups"]:
                lines.append(f"| {h['name']} | {h['tower']} | {h['threads']} | {h['p50_ms']:.2f} | "
                             f"{h['base_p50_ms']:.2f} | {h['speedup']:.2f}x |")
            lines.append("")
    g = result.get("gallery")
    if g:
        data = {"teacher": "real (the trained teacher's embeddings of world tiles; caption-text and place queries)",
                "codebook": "synthetic codebook-mixture", "clustered": "synthetic clustered"}.get(g["data"], g["data"])
        lines += [f"## Gallery search (top-10, {g['dim']}-d {data} vectors, {g['queries']} queries; HNSW M "
                  f"{g['M']}, ef_construction {g['ef_construction']}, ef = cheapest with recall@10 >= "
                  f"{g['target_recall']})", "",
                  "| items | exact p50 ms (" + ", ".join(f"{t}t" for t in threads) + ") | exact p90 ms 1t | HNSW ef | "
                  "recall@10 | top-1 | HNSW p50 ms | HNSW p90 ms | HNSW x vs exact 1t | gallery mode | index MB | "
                  "build s |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
        for s in g["sizes"]:
            ex = ", ".join(_fmt(s["exact"][str(t)]["p50_ms"], 3) for t in threads if str(t) in s["exact"])
            h = s["hnsw"]
            build = "cached" if s.get("index_cached") else _fmt(s.get("build_s"), 1)
            lines.append(f"| {s['n']} | {ex} | {_fmt(s['exact'].get('1', {}).get('p90_ms'), 3)} | {h['ef']} | "
                         f"{h['recall_at_10']:.3f} | {h['top1']:.3f} | {h['p50_ms']:.3f} | {h['p90_ms']:.3f} | "
                         f"{s['hnsw_speedup_vs_exact_1t']:.1f} | {s['gallery_mode']} | {s['index_bytes'] / 1e6:.1f} | "
                         f"{build} |")
        ivfs = [s for s in g["sizes"] if s.get("ivf")]
        if ivfs:
            lines += ["", "Where HNSW misses the target, the gallery builder tries IVF lists (gallery/ivf.py) and "
                      "searches by them when they reach it and beat exact search:", "",
                      "| items | IVF lists | nprobe | recall@10 | top-1 | p50 ms | p90 ms | build s |",
                      "|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for s in ivfs:
                v = s["ivf"]
                lines.append(f"| {s['n']} | {v['n_lists']} | {v['nprobe']} | {v['recall_at_10']:.3f} | "
                             f"{v['top1']:.3f} | {v['p50_ms']:.3f} | {v['p90_ms']:.3f} | {v['build_s']:.1f} |")
        lines.append("")
    e = result.get("end_to_end")
    if e:
        lines += ["## End to end: location -> tile (MBTiles) -> preprocess -> model -> search -> clip bytes", "",
                  f"Bundle: {e['source']} ({_trained_label(e['trained'])}); model {e['model_kind']} "
                  f"{e['variant']}, {e['image_size']} px; gallery {e['gallery_items']} clips. Random places, zooms and "
                  "recording styles in the bundle's region (mobile_app.engine.Soundscape, the app's code path).", "",
                  "| runtime | threads | total p50 ms | total p90 ms | view | model | search | clip | taps |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in e["runs"]:
            lines.append(f"| {r['runtime']} ({r['file']}) | {r['threads']} | {r['total']['p50_ms']:.2f} | "
                         f"{r['total']['p90_ms']:.2f} | {r['view']['p50_ms']:.2f} | {r['model']['p50_ms']:.2f} | "
                         f"{r['search']['p50_ms']:.3f} | {r['clip']['p50_ms']:.3f} | {r['total']['n']} |")
        if result.get("projected"):
            lines += ["", "Projected with a larger gallery (measured tap - its search + that size's search; derived): "
                      + "; ".join(f"{p['runtime']} {p['threads']}t, {p['gallery_n']} items ({p['mode']}): "
                                  f"{p['p50_ms']:.2f} ms" for p in result["projected"]) + "."]
        lines.append("")
    p = result.get("paper") or {}
    if p:
        lines += ["## Against the paper's retrieval-based synthesis (0.5 s on CPU, 130M parameters)", ""]
        if "latency_ratio" in p:
            lines.append(f"- end to end p50 {p['end_to_end_p50_ms']:.2f} ms ({p['end_to_end_setting']}): "
                         f"{p['latency_ratio']:.1f}x faster than 500 ms")
        for role in ROLES:
            if f"{role}_image_tower_params" in p:
                lines.append(f"- {role} image tower {p[f'{role}_image_tower_params'] / 1e6:.2f}M parameters: "
                             f"{p[f'{role}_image_tower_param_ratio']:.1f}x fewer than 130M; all towers incl. MiniLM "
                             f"{p[f'{role}_all_towers_params'] / 1e6:.1f}M "
                             f"({p[f'{role}_all_towers_param_ratio']:.2f}x)")
        lines.append("")
    if result.get("targets"):
        lines += ["## Targets (each as measured; a miss is a finding)", "", "| target | goal | measured | met |",
                  "|---|---|---:|---|"]
        for t in result["targets"]:
            met = "n/a" if t["met"] is None else ("yes" if t["met"] else "**no**")
            measured = "not measured" if t["measured"] is None else f"{t['measured']:.2f} {t['unit']}"
            lines.append(f"| {t['name']} | {t['target']} | {measured} | {met} |")
        lines.append("")
    if result.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in result["notes"]] + [""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------ main


def _csv(text: str, allowed: tuple[str, ...] | None = None, name: str = "") -> tuple[str, ...]:
    items = tuple(x.strip() for x in text.split(",") if x.strip())
    if allowed is not None:
        bad = [x for x in items if x not in allowed]
        if bad:
            raise SystemExit(f"unknown {name} {', '.join(bad)}; expected some of {', '.join(allowed)}")
    return items


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Everything ``main`` does except parsing and writing; returns the result dict."""
    from core.config import get_preset

    get_preset(args.preset)  # an unknown preset fails before any work
    towers = _csv(args.towers, TOWERS, "tower")
    runtimes = _csv(args.runtimes, RUNTIMES, "runtime")
    sections = _csv(args.sections, SECTIONS, "section")
    threads = tuple(int(t) for t in _csv(args.threads))
    roles = _csv(args.roles, ROLES, "role")
    budget = QUICK if args.quick else FULL
    sizes = tuple(int(s) for s in _csv(args.gallery_sizes)) if args.gallery_sizes else (
        QUICK_GALLERY_SIZES if args.quick else DEFAULT_GALLERY_SIZES)
    run = Path(args.run) if args.run else None
    if run is not None and not run.is_dir():
        run = None
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    result: dict[str, Any] = {
        "kind": "sat2sound-latency", "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "preset": args.preset, "quick": bool(args.quick), "run": str(run) if run else None,
        "budget": budget.__dict__, "machine": machine_info(threads), "notes": notes,
    }
    print(f"{result['machine']['cpu']}, {result['machine']['cores']} cores; load average "
          f"{result['machine']['load_avg_start']}", flush=True)
    models = load_models(args.preset, run, roles, seed=args.seed, notes=notes) if "towers" in sections or \
        "gallery" in sections else {}
    result["models"] = {role: {"source": e.source, "trained": e.trained, "fingerprint": e.fingerprint,
                               "preset": e.cfg.name, "params": e.params} for role, e in models.items()}
    if "towers" in sections:
        rows = bench_towers(models, towers, runtimes, threads, budget, work, run, progress=not args.no_progress)
        speedups(rows, threads)
        prune_exports(work, {e.fingerprint for e in models.values()})
        result["towers"] = rows
        result["headline_speedups"] = headline_speedups(rows, threads)
        if "torch-int8" in runtimes:
            notes.append("PyTorch int8 = torch.ao.quantization.quantize_dynamic (Linear layers, qint8): works on "
                         "torch 2.13 but is deprecated there (it warns it will be removed); the codebook head has no "
                         "Linear and stays float.")
    if "gallery" in sections:
        dim = models["teacher"].cfg.model.codebook.dim
        real = (run / "teacher", run / "world") if run is not None and models["teacher"].trained and \
            (run / "world").is_dir() else None
        kind = args.gallery_data if args.gallery_data != "auto" else ("teacher" if real else "codebook")
        result["gallery"] = bench_gallery(sizes, dim, threads, budget, work, kind=kind,
                                          queries=50 if args.quick else 200, seed=args.seed,
                                          build_threads=args.build_threads, progress=not args.no_progress, real=real)
        if not result["gallery"]["sizes"][0]["exact_blas_threads_limited"]:
            notes.append("threadpoolctl is not installed: exact search ran with numpy's default BLAS threads")
    if "e2e" in sections:
        try:
            bundle, trained, source = resolve_bundle(Path(args.bundle) if args.bundle else None, run, args.preset,
                                                     work, args.quick, progress=not args.no_progress)
            e2e = bench_end_to_end(bundle, threads, budget if not args.quick else QUICK, seed=args.seed)
            result["end_to_end"] = {"bundle": str(bundle), "trained": trained, "source": source, **e2e}
            result["projected"] = projected_search(result)
        except Exception as exc:
            result["end_to_end"] = None
            notes.append(f"end to end not measured: {type(exc).__name__}: {exc}")
    result["paper"] = paper_comparison(result)
    result["targets"] = check_targets(result)
    result["machine"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    if any(x > (os.cpu_count() or 1) for x in result["machine"]["load_avg_start"][:1]
           + result["machine"]["load_avg_end"][:1]):
        notes.append("the machine was busy (load average above its core count) during the run: figures are slower "
                     "and noisier than on an idle machine")
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.latency", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="default", help="model preset of untrained models (and its student-<preset>)")
    p.add_argument("--run", default="runs/demo", help="pipeline run folder whose trained artifacts are used")
    p.add_argument("--out", default="runs/bench/latency", help="writes OUT.json and OUT.md")
    p.add_argument("--work", default="runs/bench/cache", help="cache of exports, synthetic galleries, demo bundle")
    p.add_argument("--quick", action="store_true", help="short time boxes, small galleries: a fast pass")
    p.add_argument("--towers", default=",".join(TOWERS))
    p.add_argument("--roles", default=",".join(ROLES))
    p.add_argument("--runtimes", default=",".join(RUNTIMES))
    p.add_argument("--threads", default="1,2")
    p.add_argument("--sections", default=",".join(SECTIONS), help="towers, gallery, e2e")
    p.add_argument("--gallery-sizes", default=None, help="comma-separated (default 10000,100000; quick 1000,10000)")
    p.add_argument("--gallery-data", default="auto", choices=("auto", "teacher", "codebook", "clustered"),
                   help="teacher: the run's trained teacher's own embeddings of world tiles (first run embeds them, "
                   "~15 min at 100k); codebook/clustered: synthetic (benchmarks/gallery_search.py); auto: teacher "
                   "when the run has a trained one, else codebook")
    p.add_argument("--build-threads", type=int, default=2, help="threads for building the synthetic HNSW indexes")
    p.add_argument("--bundle", default=None, help="bundle for the end-to-end figures (default: the run's, else a "
                   "demo bundle of an untrained student)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = run_benchmark(args)
    out = Path(args.out)
    json_path = out if out.suffix == ".json" else out.with_name(out.name + ".json")
    md_path = json_path.with_suffix(".md")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    text = markdown(result)
    fd, name = tempfile.mkstemp(prefix=".latency.", dir=json_path.parent)
    os.close(fd)
    tmp = Path(name)
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, json_path)
    md_path.write_text(text + "\n")
    print(text)
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
