"""An inverted-file (IVF) index in plain numpy: spherical k-means lists, search by probing the nearest lists.

Why: HNSW's greedy graph walk misses neighbours of queries that lie away from the items, and the gallery's queries
are cross-modal (an image or a text looking for captions or places). On 100,000 real teacher embeddings HNSW tops
out near recall@10 0.97 at ef 1024, while probing 24 of 506 lists here scores every item in the lists that matter
and reached 0.993 at 0.36 ms a query (``python -m benchmarks.gallery_search --teacher ... --ivf``).

Device-safe: numpy only. The gallery builder falls back to it (search mode "ivf") for an embedding kind whose HNSW
graph cannot reach the target recall, when it does and is faster than exact search; the lists are saved as
``{kind}.ivf.npz`` (centroids and list order; the vectors themselves stay in the db).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gallery.errors import GalleryError

NPROBE_LADDER: tuple[int, ...] = (4, 8, 16, 24, 32, 48, 64, 96, 128)


@dataclass(frozen=True)
class IVFIndex:
    centroids: np.ndarray  # (L, d) unit vectors
    order: np.ndarray  # (N,) item row of each position in list order
    starts: np.ndarray  # (L + 1,) where each list begins in ``order``
    vectors: np.ndarray  # (N, d) the items in list order (contiguous per list)

    @property
    def n_lists(self) -> int:
        return int(self.centroids.shape[0])

    def __len__(self) -> int:
        return int(self.order.shape[0])


def default_lists(n: int) -> int:
    """About 1.6 sqrt(n) lists (512 at 100k): lists of a few hundred items, so probing 32 of them stays cheap."""
    return max(1, min(n, int(round(1.6 * np.sqrt(max(n, 1))))))


def build_ivf(vectors: np.ndarray, n_lists: int | None = None, *, iters: int = 8, seed: int = 0) -> IVFIndex:
    """Spherical k-means (inner product on unit vectors) into ``n_lists`` lists; empty lists are re-seeded."""
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise GalleryError("an IVF index needs a non-empty (N, d) matrix of vectors")
    n_lists = default_lists(len(x)) if n_lists is None else int(n_lists)
    if not 1 <= n_lists <= len(x):
        raise GalleryError(f"an IVF index over {len(x)} vectors needs 1..{len(x)} lists, got {n_lists}")
    rng = np.random.default_rng(seed)
    centroids = x[rng.choice(len(x), size=n_lists, replace=False)].copy()
    assign = np.zeros(len(x), dtype=np.int64)
    for _ in range(max(1, iters)):
        assign = _nearest(x, centroids)
        sums = np.zeros_like(centroids)
        np.add.at(sums, assign, x)
        counts = np.bincount(assign, minlength=n_lists)
        empty = np.flatnonzero(counts == 0)
        sums[empty] = x[rng.choice(len(x), size=len(empty), replace=False)]
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        centroids = (sums / np.maximum(norms, 1e-12)).astype(np.float32)
    assign = _nearest(x, centroids)
    order = np.argsort(assign, kind="stable").astype(np.int64)
    starts = np.searchsorted(assign[order], np.arange(n_lists + 1)).astype(np.int64)
    return IVFIndex(centroids, order, starts, np.ascontiguousarray(x[order]))


def _nearest(x: np.ndarray, centroids: np.ndarray, chunk: int = 16384) -> np.ndarray:
    out = np.empty(len(x), dtype=np.int64)
    for s in range(0, len(x), chunk):
        out[s:s + chunk] = np.argmax(x[s:s + chunk] @ centroids.T, axis=1)
    return out


def ivf_topk(index: IVFIndex, queries: np.ndarray, k: int, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k item rows and scores (best first) from the ``nprobe`` lists nearest each query; rows are the items'
    original rows. Fewer than k items in the probed lists: the rest are -1 with score -inf."""
    q = np.asarray(queries, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    nprobe = max(1, min(int(nprobe), index.n_lists))
    k = max(1, min(int(k), len(index)))
    rows = np.full((len(q), k), -1, dtype=np.int64)
    scores = np.full((len(q), k), -np.inf, dtype=np.float32)
    for i, qv in enumerate(q):
        cs = index.centroids @ qv
        probe = np.argpartition(-cs, nprobe - 1)[:nprobe] if nprobe < index.n_lists else np.arange(index.n_lists)
        # lists are contiguous slices of ``vectors``: score each slice in place (no gather copy of the candidates)
        spans = [(int(index.starts[j]), int(index.starts[j + 1])) for j in probe]
        spans = [(a, b) for a, b in spans if b > a]
        if not spans:
            continue
        sc = np.concatenate([index.vectors[a:b] @ qv for a, b in spans])
        pos = np.concatenate([np.arange(a, b) for a, b in spans])
        kk = min(k, len(pos))
        top = np.argpartition(-sc, kk - 1)[:kk] if kk < len(pos) else np.arange(len(pos))
        top = top[np.argsort(-sc[top], kind="stable")]
        rows[i, :kk] = index.order[pos[top]]
        scores[i, :kk] = sc[top]
    return rows, scores


def measure_nprobe(index: IVFIndex, vectors: np.ndarray, queries: np.ndarray, *, k: int = 10,
                   ladder: Iterable[int] = NPROBE_LADDER) -> list[dict]:
    """Recall@k (tie-aware, as gallery.index.recall_at_k) and per-query latency for each nprobe (one query a call)."""
    from gallery.index import exact_topk, recall_at_k

    _, truth = exact_topk(np.asarray(vectors, dtype=np.float32), queries, k)
    table = []
    for nprobe in ladder:
        if nprobe > index.n_lists:
            continue
        found, times = [], []
        for qv in queries:
            t0 = time.perf_counter()
            r, _ = ivf_topk(index, qv, k, nprobe)
            times.append(time.perf_counter() - t0)
            found.append(r[0])
        found_arr = np.asarray(found)
        found_scores = np.where(found_arr >= 0, np.einsum("qkd,qd->qk", vectors[np.maximum(found_arr, 0)], queries),
                                -np.inf)
        ms = np.asarray(times) * 1e3
        table.append({"nprobe": int(nprobe), "recall": recall_at_k(found_scores, truth),
                      "top1": float(np.mean(found_scores[:, 0] >= truth[:, 0] - 1e-4)),
                      "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90))})
    return table


def save_ivf(index: IVFIndex, path: Path) -> None:
    """Centroids and list layout only (the vectors are the gallery's own); plain arrays, no pickle."""
    with open(path, "wb") as f:
        np.savez(f, centroids=index.centroids, order=index.order, starts=index.starts)


def load_ivf(path: Path, vectors: np.ndarray) -> IVFIndex:
    """Rebuild an index from its saved layout and the gallery's (N, d) vectors in label order, checking they fit."""
    try:
        with np.load(path, allow_pickle=False) as z:
            centroids, order, starts = z["centroids"], z["order"].astype(np.int64), z["starts"].astype(np.int64)
    except (OSError, ValueError, KeyError) as exc:
        raise GalleryError(f"IVF lists {path} do not load: {exc}") from None
    n = len(vectors)
    ok = (centroids.ndim == 2 and centroids.shape[1] == vectors.shape[1] and len(order) == n
          and len(starts) == len(centroids) + 1 and starts[0] == 0 and starts[-1] == n
          and np.array_equal(np.sort(order), np.arange(n)))
    if not ok:
        raise GalleryError(f"IVF lists {path} do not fit this gallery's {n} vectors of width {vectors.shape[1]}")
    return IVFIndex(centroids.astype(np.float32), order, starts, np.ascontiguousarray(vectors[order]))
