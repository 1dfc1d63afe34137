"""Vector search over unit vectors: an HNSW graph of the gallery's library, its exact numpy twin, and ef tuning.

Device-safe: numpy, and the graph library through gallery.backends (USearch or hnswlib, each optional: without
the gallery's library, ``exact_topk`` serves every query, about 0.2 ms per query at 10k items, 6-16 ms at 100k).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from gallery import backends
from gallery.errors import GalleryError
from gallery.layout import DEFAULT_DTYPE, DEFAULT_INDEX, EF_LADDER, TARGET_RECALL


def normalise_rows(x: np.ndarray) -> np.ndarray:
    """L2-normalise rows (float32); a zero or non-finite row is an error, since it has no direction to search by."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if not np.all(np.isfinite(x)):
        raise GalleryError("a query or gallery vector holds NaN or infinite values")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise GalleryError("a query or gallery vector is all zeros")
    return (x / norms).astype(np.float32)


def exact_topk(matrix: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product: (rows (Q,k) int64, scores (Q,k) float32), best first; ties by lower row."""
    k = min(k, matrix.shape[0])
    scores = queries @ matrix.T  # (Q, N)
    if k < matrix.shape[0]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(matrix.shape[0]), (queries.shape[0], matrix.shape[0]))
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    rows = np.take_along_axis(part, order, axis=1).astype(np.int64)
    return rows, np.take_along_axis(scores, rows, axis=1).astype(np.float32)


def build_hnsw(vectors: np.ndarray, labels: np.ndarray, *, m: int, ef_construction: int, threads: int = 1,
               seed: int = 100, library: str = DEFAULT_INDEX, dtype: str = DEFAULT_DTYPE) -> backends.GraphIndex:
    """An HNSW graph of ``library`` over unit ``vectors`` with integer ``labels`` (cosine). hnswlib keeps f32 only."""
    return backends.build_graph(library, vectors, labels, m=m, ef_construction=ef_construction,
                                dtype=dtype if library == "usearch" else "f32", threads=threads, seed=seed)


def load_hnsw(path: Path, dim: int, count: int, ef: int = 0, *, library: str = DEFAULT_INDEX) -> backends.GraphIndex:
    """Open a saved graph (USearch: memory-mapped) after checking its header holds ``count`` vectors of width
    ``dim``; ``ef`` is given per search (kept for the callers that pass one)."""
    head = backends.read_header(library, Path(path))
    if (head["count"], head["dim"]) != (count, dim):
        raise GalleryError(f"index {path} holds {head['count']} vectors of width {head['dim']}, expected {count} of "
                           f"width {dim}")
    return backends.open_graph(library, Path(path), dim=dim, count=count)


def hnsw_topk(index: backends.GraphIndex, queries: np.ndarray, k: int, ef: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k labels and cosine scores from a graph of either library (ef is raised to k when smaller)."""
    return index.topk(queries, k, ef)


def recall_at_k(found_scores: np.ndarray, truth_scores: np.ndarray, tol: float = 1e-5) -> float:
    """Tie-aware recall@k: the share of returned items that score at least the exact k-th best score.

    Counting by score, not by label, matters for embeddings with exact duplicates (a sparse codebook head maps
    different captions onto the same code mixture): any of the tied items is an equally right answer.
    """
    kth = truth_scores[:, -1:]
    k = truth_scores.shape[1]
    good = (found_scores >= kth - tol).sum(axis=1).clip(max=k)
    return float(good.sum() / (k * len(truth_scores)))


def measure_ef(index: backends.GraphIndex, vectors: np.ndarray, labels: np.ndarray, queries: np.ndarray, *,
               k: int = 10, ladder: Iterable[int] = EF_LADDER, truth_scores: np.ndarray | None = None,
               kinds: np.ndarray | None = None, stop_at: float | None = None) -> list[dict]:
    """Recall@k against exact search and per-query latency for each ef of ``ladder`` (1 thread, 1 query a call).

    ``truth_scores``: the exact top-k scores of ``queries`` when already known (the builder gets them from FAISS);
    ``kinds``: a name per query (e.g. "text", "place"), to report recall per kind of query as well; ``stop_at``:
    stop after the first ef whose recall reaches it for every kind (build-time tuning needs no more).
    """
    if truth_scores is None:
        _, truth_scores = exact_topk(vectors, queries, k)
    row_of = np.full(int(labels.max()) + 1 if len(labels) else 0, -1, dtype=np.int64)
    row_of[labels] = np.arange(len(labels))
    table = []
    for ef in ladder:
        found, times = [], []
        for q in queries:
            t0 = time.perf_counter()
            lab, _ = hnsw_topk(index, q[None, :], k, ef)
            times.append(time.perf_counter() - t0)
            found.append(lab[0])
        times_ms = np.asarray(times) * 1e3
        # score the returned items exactly with the float32 vectors (an f16/i8 index's own distances are rounded)
        found_arr = np.asarray(found)
        found_scores = np.where(found_arr >= 0, np.einsum("qkd,qd->qk", vectors[row_of[np.maximum(found_arr, 0)]],
                                                          queries), -np.inf)
        # top1: what the app plays - the first hit scores within 1e-4 of the true best (a near-tie is as good)
        top1 = float(np.mean(found_scores[:, 0] >= truth_scores[:, 0] - 1e-4))
        row = {"ef": int(ef), "recall": recall_at_k(found_scores, truth_scores), "top1": top1,
               "p50_ms": float(np.percentile(times_ms, 50)), "p90_ms": float(np.percentile(times_ms, 90)),
               "p99_ms": float(np.percentile(times_ms, 99))}
        if kinds is not None:
            row["recall_by_kind"] = {str(name): recall_at_k(found_scores[kinds == name], truth_scores[kinds == name])
                                     for name in sorted(set(np.asarray(kinds).tolist()))}
        table.append(row)
        if stop_at is not None and worst_recall(row) >= stop_at:
            break
    return table


def exact_latency_ms(matrix: np.ndarray, queries: np.ndarray, k: int = 10) -> float:
    """Median time (ms) of one exact query against ``matrix``."""
    times = []
    for q in queries:
        t0 = time.perf_counter()
        exact_topk(matrix, q[None, :], k)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3) if times else 0.0


def worst_recall(row: dict) -> float:
    """A tuning row's recall for its worst kind of query (its overall recall when kinds were not told apart)."""
    return min([row["recall"], *row.get("recall_by_kind", {}).values()])


def choose_ef(table: list[dict], target: float = TARGET_RECALL, key: str = "ef") -> dict:
    """The cheapest row of a tuning table whose recall reaches ``target`` for every kind of query; the best row
    (by worst-kind recall) when none does. ``key`` names the cost column ("ef", or "nprobe" for IVF tables)."""
    ok = [row for row in table if worst_recall(row) >= target]
    return min(ok, key=lambda r: r[key]) if ok else max(table, key=lambda r: (worst_recall(r), -r[key]))
