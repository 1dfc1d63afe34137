"""Gallery search at batch 1: exact numpy top-10 against the product's HNSW graph (its default library and vector
type, USearch f16, with the product's parameters and ef rule) and the builder's IVF fallback where the graph misses
the recall target, over synthetic or the run's own embeddings, with the vectors and indexes cached by their data
parameters. The library comparison (FAISS, hnswlib, USearch f32/f16/i8) is benchmarks/gallery_search.py."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.gallery_search import make_data
from benchmarks.latency.plan import FULL
from benchmarks.teacher_embeddings import teacher_data
from compress.latency import Budget, measure
from contracts.artifacts import MANIFEST_FILE
from gallery import index as vindex
from gallery import layout


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


def cycling(fn: Callable[[np.ndarray], Any], queries: np.ndarray) -> Callable[[], Any]:
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
    return f"teacher-{json.loads((real[0] / MANIFEST_FILE).read_text())['fingerprint'][:12]}"


def _gallery_vectors(kind: str, n: int, queries: int, dim: int, seed: int, cache: Path,
                     real: tuple[Path, Path] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic vectors (``codebook``/``clustered``), or ``teacher``: the trained checkpoint's own embeddings of n
    world tiles with caption and place queries (benchmarks/teacher_embeddings.py; ``real`` = (checkpoint, world))."""
    tag = _data_tag(kind, real)
    path = cache / f"{tag}-{n}x{dim}-q{queries}-s{seed}.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["items"], z["queries"]
    if kind == "teacher":
        # the tile embeddings live beside the gallery cache (runs/bench/cache/tiles by default), where
        # `python -m benchmarks.gallery_search --ckpt` keeps them too: either benchmark reuses the other's
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
    """Embedding-like unit vectors, fresh queries and an HNSW graph over them with the product's library and
    parameters (``index``: a gallery.backends.GraphIndex)."""

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
    Sat2Sound head produces; ``clustered``) and an HNSW graph of the product's default library and vector type with
    gallery/layout.py's M and ef_construction, both cached under ``cache`` (a 100k graph takes minutes to build
    on 2 cores). The cached graph is opened as the device opens it (USearch: memory-mapped)."""
    items, qs = _gallery_vectors(kind, n, queries, dim, seed, cache, real)
    m, efc = layout.HNSW_M, layout.HNSW_EF_CONSTRUCTION
    library, dtype = layout.DEFAULT_INDEX, layout.DEFAULT_DTYPE
    name = f"{_data_tag(kind, real)}-{n}x{dim}-s{seed}-{library}-{dtype}-M{m}-efc{efc}.{layout.INDEX_SUFFIX[library]}"
    path = cache / name
    if not path.is_file():
        t0 = time.perf_counter()
        graph = vindex.build_hnsw(items, np.arange(n, dtype=np.int64), m=m, ef_construction=efc,
                                  threads=build_threads, library=library, dtype=dtype)
        build_s: float | None = round(time.perf_counter() - t0, 2)
        tmp = path.with_name(path.name + ".tmp")
        graph.save(tmp)
        os.replace(tmp, path)
        del graph
    else:
        build_s = None
    return SyntheticGallery(items, qs, vindex.load_hnsw(path, dim, n, library=library), path, build_s)


def _ivf_fallback(g: SyntheticGallery, exact_p50: float, target: float) -> tuple[dict[str, Any], bool]:
    """The gallery builder's fallback where the graph misses the target: IVF lists (FAISS k-means, numpy probe),
    their cheapest nprobe reaching it; their figures and whether the builder would search by them (target
    reached, faster than exact search)."""
    from gallery.tuning import train_ivf, tune_ivf

    t0 = time.perf_counter()
    ivf = train_ivf(g.items)
    ivf_build_s = round(time.perf_counter() - t0, 2)
    result = tune_ivf(ivf, g.items, {"queries": g.queries}, k=10, target=target)
    best = result["chosen"]
    figures = {"n_lists": ivf.n_lists, "build_s": ivf_build_s, "nprobe": best["nprobe"],
               "recall_at_10": best["recall"], "top1": best["top1"], "p50_ms": best["p50_ms"],
               "p90_ms": best["p90_ms"], "table": result["table"]}
    return figures, best["recall"] >= target and best["p50_ms"] < exact_p50


def bench_gallery(sizes: tuple[int, ...], dim: int, threads: tuple[int, ...], budget: Budget, work: Path, *,
                  kind: str = "codebook", queries: int = 200, seed: int = 0, build_threads: int = 2,
                  progress: bool = True, real: tuple[Path, Path] | None = None) -> dict[str, Any]:
    """Exact numpy top-10 vs the product's HNSW graph at each gallery size, with its library, parameters and ef
    rule (gallery/layout.py: the cheapest ef of its ladder reaching the target recall@10, else exact search)."""
    target = layout.TARGET_RECALL
    out: dict[str, Any] = {"data": kind, "dim": dim, "queries": queries, "k": 10, "M": layout.HNSW_M,
                           "ef_construction": layout.HNSW_EF_CONSTRUCTION, "library": layout.DEFAULT_INDEX,
                           "dtype": layout.DEFAULT_DTYPE, "target_recall": target, "sizes": []}
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
                search = cycling(lambda q, items=g.items: vindex.exact_topk(items, q[None, :], 10), g.queries)
                size["exact"][str(t)] = measure(search, budget)
        ladder = layout.EF_LADDER if budget.run_s >= FULL.run_s else tuple(
            e for e in layout.EF_LADDER if e in (16, 64, 256, 1024))
        table = vindex.measure_ef(g.index, g.items, g.labels, g.queries, k=10, ladder=ladder)
        chosen = vindex.choose_ef(table, target)
        size["ef_table"] = table
        size["hnsw"] = {"ef": chosen["ef"], "recall_at_10": chosen["recall"], "top1": chosen["top1"],
                        "p50_ms": chosen["p50_ms"], "p90_ms": chosen["p90_ms"], "n": len(g.queries), "threads": 1}
        size["gallery_mode"] = "hnsw" if chosen["recall"] >= target else "exact"
        exact1 = size["exact"].get("1") or next(iter(size["exact"].values()))
        if size["gallery_mode"] == "exact":
            size["ivf"], use_ivf = _ivf_fallback(g, exact1["p50_ms"], target)
            if use_ivf:
                size["gallery_mode"] = "ivf"
        size["hnsw_speedup_vs_exact_1t"] = round(exact1["p50_ms"] / chosen["p50_ms"], 2)
        out["sizes"].append(size)
        del g
    return out
