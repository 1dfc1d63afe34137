"""The search candidates that benchmarks/gallery_search.py compares, each as build -> save -> open -> search.

exact numpy, FAISS flat / IVF / HNSW (the build side's reference library), hnswlib, USearch with f32, f16 and i8
vectors (the device's library), and the gallery's IVF fallback (gallery/ivf.py: FAISS-trained lists, a numpy probe
over memory-mapped vectors). The graphs of hnswlib and USearch and the IVF fallback are built and opened with the
product's own code (gallery.backends, gallery.ivf); FAISS and numpy are driven here.

Open time and memory are measured in a fresh process per candidate (``probe``): resident memory (VmRSS) before
opening, after opening and after the held-out queries, the open time, and each query's time and answer - one query
per call on one thread, as on a device. The probe runs ``python -m benchmarks.gallery_candidates --probe SPEC``.
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # one query, one thread, as on a device (before numpy loads)
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gallery import backends
from gallery import index as vindex

REPO = Path(__file__).resolve().parents[1]
NPROBE_LADDER: tuple[int, ...] = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256)


@dataclass(frozen=True)
class Candidate:
    name: str
    label: str
    knob: str | None  # the search-time setting tuned over ``ladder`` ("ef", "nprobe"), None for exact search
    device: bool  # whether a phone could run it (a mobile build exists)
    suffix: str


CANDIDATES: dict[str, Candidate] = {c.name: c for c in (
    Candidate("exact-numpy", "exact numpy", None, True, "npy"),
    Candidate("faiss-flat", "FAISS flat (exact)", None, False, "faiss"),
    Candidate("faiss-ivf", "FAISS IVF-flat", "nprobe", False, "faiss"),
    Candidate("faiss-hnsw", "FAISS HNSW-flat", "ef", False, "faiss"),
    Candidate("hnswlib", "hnswlib", "ef", False, "hnsw"),
    Candidate("usearch-f32", "USearch f32", "ef", True, "usearch"),
    Candidate("usearch-f16", "USearch f16", "ef", True, "usearch"),
    Candidate("usearch-i8", "USearch i8", "ef", True, "usearch"),
    Candidate("gallery-ivf", "IVF lists, numpy (gallery/ivf.py)", "nprobe", True, "ivf.npz"),
)}


def vectors_path(lists: Path) -> Path:
    """The IVF fallback's vectors file beside its lists file (x.ivf.npz -> x.ivf.npy)."""
    return lists.with_suffix(".npy")


def ivf_lists(n: int) -> int:
    """FAISS IVF list count: about 4 sqrt(n), rounded to a power of two (1024 at 100k, 4096 at 1M)."""
    return int(2 ** round(np.log2(max(4.0, 4 * np.sqrt(n)))))


def build(name: str, items: np.ndarray, *, m: int, ef_construction: int, threads: int) -> Any:
    """The candidate's index over ``items`` (unit rows), built with ``threads`` threads."""
    x = np.ascontiguousarray(items, dtype=np.float32)
    labels = np.arange(len(x), dtype=np.int64)
    if name == "exact-numpy":
        return x
    if name == "gallery-ivf":
        from gallery.tuning import train_ivf

        return train_ivf(x, threads=threads)
    if name.startswith("usearch") or name == "hnswlib":
        library, dtype = (name.split("-") + ["f32"])[:2]
        return vindex.build_hnsw(x, labels, m=m, ef_construction=ef_construction, threads=threads, library=library,
                                 dtype=dtype)
    import faiss

    faiss.omp_set_num_threads(threads)
    d = int(x.shape[1])
    if name == "faiss-flat":
        index = faiss.IndexFlatIP(d)
    elif name == "faiss-hnsw":
        index = faiss.IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
    elif name == "faiss-ivf":
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, ivf_lists(len(x)), faiss.METRIC_INNER_PRODUCT)
        sample = x[np.random.default_rng(0).choice(len(x), size=min(len(x), 64 * index.nlist), replace=False)]
        index.train(sample)
    else:
        raise SystemExit(f"unknown candidate {name!r}; known: {', '.join(CANDIDATES)}")
    index.add(x)
    return index


def save(name: str, index: Any, path: Path) -> int:
    """Write the index to ``path``; its size in bytes."""
    if name == "exact-numpy":
        np.save(path, index, allow_pickle=False)
    elif name == "gallery-ivf":
        from gallery.ivf import save_ivf

        save_ivf(index, path, vectors_path(path))
        return path.stat().st_size + vectors_path(path).stat().st_size
    elif name.startswith("faiss"):
        import faiss

        faiss.write_index(index, str(path))
    else:
        index.save(path)
    return path.stat().st_size


def open_saved(name: str, path: Path, dim: int, count: int) -> Any:
    """Open a saved index as a reader would: USearch memory-maps it, the others read it whole."""
    if name == "exact-numpy":
        return np.load(path, allow_pickle=False)
    if name == "gallery-ivf":
        from gallery.ivf import load_ivf

        return load_ivf(path, vectors_path(path), count=count, dim=dim)
    if name.startswith("faiss"):
        import faiss

        faiss.omp_set_num_threads(1)
        return faiss.read_index(str(path))
    return backends.open_graph(name.split("-")[0], path, dim=dim, count=count)


def searcher(name: str, index: Any, setting: int | None) -> Callable[[np.ndarray, int], np.ndarray]:
    """One query (d,) -> its k labels, with the search-time ``setting`` (ef or nprobe) applied."""
    if name == "exact-numpy":
        return lambda q, k: vindex.exact_topk(index, q[None, :], k)[0][0]
    if name == "gallery-ivf":
        from gallery.ivf import ivf_topk

        return lambda q, k: ivf_topk(index, q, k, int(setting))[0][0]
    if name.startswith("faiss"):
        if name == "faiss-ivf":
            index.nprobe = int(setting)
        elif name == "faiss-hnsw":
            index.hnsw.efSearch = int(max(setting, 10))
        return lambda q, k: index.search(q[None, :], k)[1][0]
    return lambda q, k: index.topk(q[None, :], k, int(setting))[0][0]


def run_queries(search: Callable[[np.ndarray, int], np.ndarray], queries: np.ndarray, k: int = 10
                ) -> tuple[np.ndarray, np.ndarray]:
    """(labels (Q,k), per-query milliseconds) for one query a call."""
    found, times = np.full((len(queries), k), -1, dtype=np.int64), np.zeros(len(queries))
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        lab = search(q, k)
        times[i] = (time.perf_counter() - t0) * 1e3
        found[i, :len(lab)] = lab
    return found, times


def rss_mb() -> float:
    """This process's resident memory (VmRSS) in MB (0 where /proc is not there)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def import_library(name: str) -> None:
    """Load the candidate's library before timing the open: an app pays its import once at start, not per open."""
    if name.startswith("faiss"):
        import faiss  # noqa: F401
    elif name not in ("exact-numpy", "gallery-ivf"):
        backends.have(name.split("-")[0])


def probe(spec: dict[str, Any]) -> dict[str, Any]:
    """In this (fresh) process: open the saved index, search the queries once each; timings, memory, answers."""
    queries = np.load(spec["queries"])
    import_library(spec["name"])
    before = rss_mb()
    t0 = time.perf_counter()
    index = open_saved(spec["name"], Path(spec["path"]), int(queries.shape[1]), int(spec["count"]))
    open_ms = (time.perf_counter() - t0) * 1e3
    after_open = rss_mb()
    found, times = run_queries(searcher(spec["name"], index, spec.get("setting")), queries, int(spec["k"]))
    np.save(spec["found"], found)
    return {"open_ms": open_ms, "rss_before_mb": before, "rss_open_mb": after_open, "rss_search_mb": rss_mb(),
            "times_ms": times.tolist()}


def run_probe(spec: dict[str, Any], module: str = "benchmarks.gallery_candidates") -> dict[str, Any]:
    """``probe`` (or ``module``'s probe) in a fresh Python process with one BLAS thread; its JSON answer."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", module, "--probe", json.dumps(spec)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise SystemExit(f"probe of {spec.get('name')} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def ladder_table(name: str, index: Any, items: np.ndarray, queries: np.ndarray, kinds: np.ndarray,
                 truth_scores: np.ndarray, ladder: tuple[int, ...], target: float, k: int = 10) -> list[dict]:
    """Recall@k (overall and per query kind) and latency for each setting of the ladder, stopping one step after
    the target is reached for every kind (the next step shows the trend; more costs time at 1M)."""
    table: list[dict] = []
    for setting in ladder:
        found, times = run_queries(searcher(name, index, setting), queries, k)
        scores = score_found(items, queries, found)
        row = {"setting": int(setting), "recall": vindex.recall_at_k(scores, truth_scores),
               "recall_by_kind": {str(kd): vindex.recall_at_k(scores[kinds == kd], truth_scores[kinds == kd])
                                  for kd in sorted(set(kinds.tolist()))},
               "p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}
        table.append(row)
        reached = [r for r in table if vindex.worst_recall(r) >= target]
        if reached and row is not reached[0]:
            break
    return table


def score_found(items: np.ndarray, queries: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Exact cosine scores of the returned labels (-inf for empty slots), for tie-aware recall."""
    safe = np.maximum(found, 0)
    return np.where(found >= 0, np.einsum("qkd,qd->qk", items[safe], queries), -np.inf).astype(np.float32)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--probe":
        print(json.dumps(probe(json.loads(sys.argv[2]))))
    else:
        raise SystemExit("internal module of benchmarks.gallery_search: run that instead")
