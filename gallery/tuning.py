"""Build-side tuning of a gallery's search index: queries that stand for real use, FAISS exact search as the truth,
and the IVF fallback's lists trained with FAISS's k-means.

A graph's search depth (ef) is chosen per gallery: the smallest ef of EF_LADDER whose recall@10 against exact
search reaches the target for *every* kind of tuning query (IVF lists: the smallest nprobe of NPROBE_LADDER).
Which queries matter: the last measurement tuned a caption index on the gallery's own audio vectors and held-out
text queries then fell to recall 0.81. So the builder tunes with what the app and the CLI send:

- ``place``: image embeddings of places, the app's query (a tap on the map), at the locations and zooms of the
  gallery's own items (the embedded world's tiles; imported galleries without coordinates have none);
- ``text``: typed-query stand-ins, a contiguous run of about half the words of a gallery caption (new texts in
  the text tower's distribution, never an item itself);
- ``other-kind``: the gallery's other-kind vectors (audio clips querying captions and the reverse), as before.

Build side only: FAISS (``faiss-cpu``) gives the exact top-k (IndexFlatIP, inner product on unit vectors); numpy
stands in when it is not installed. The device never imports this module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gallery import index as vindex
from gallery.ivf import NPROBE_LADDER, IVFIndex, default_lists, from_assignment, ivf_topk
from gallery.layout import EF_LADDER, TARGET_RECALL


def exact_truth(matrix: np.ndarray, queries: np.ndarray, k: int, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k (rows (Q,k) int64, scores (Q,k) float32) by inner product, with FAISS's flat index."""
    k = min(k, len(matrix))
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss-cpu is in requirements/base.txt
        return vindex.exact_topk(matrix, queries, k)
    faiss.omp_set_num_threads(max(1, threads))
    flat = faiss.IndexFlatIP(int(matrix.shape[1]))
    flat.add(np.ascontiguousarray(matrix, dtype=np.float32))
    scores, rows = flat.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return rows.astype(np.int64), scores.astype(np.float32)


def caption_fragments(captions: Sequence[str], n: int, rng: np.random.Generator, min_words: int = 3) -> list[str]:
    """Up to ``n`` typed-query stand-ins: for each of ``n`` random captions (no caption twice), a contiguous run of
    about half its words (at least ``min_words``; shorter captions are skipped)."""
    usable = [c.split() for c in captions if len(c.split()) >= min_words]
    if not usable:
        return []
    out = []
    for i in rng.choice(len(usable), size=min(n, len(usable)), replace=False):
        words = usable[int(i)]
        span = max(min_words, (len(words) + 1) // 2)
        start = int(rng.integers(0, len(words) - span + 1))
        out.append(" ".join(words[start:start + span]))
    return out


def real_use_queries(embed_texts: Callable[[list[str]], np.ndarray], captions: Sequence[str],
                     embed_place: Callable[..., np.ndarray] | None, places: Sequence[tuple[float, float, int]], *,
                     n: int = 150, seed: int = 0) -> dict[str, np.ndarray]:
    """Text and place tuning queries (up to ``n`` of each) from a gallery's captions and item places."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    texts = caption_fragments(captions, n, rng)
    if texts:
        out["text"] = vindex.normalise_rows(embed_texts(texts))
    if embed_place is not None and places:
        pick = rng.choice(len(places), size=min(n, len(places)), replace=False)
        out["place"] = vindex.normalise_rows(np.stack([embed_place(*places[int(i)]) for i in pick]))
    return out


def tune_graph(graph: Any, matrix: np.ndarray, labels: np.ndarray, queries: dict[str, np.ndarray], *, k: int = 10,
               ladder: Sequence[int] = EF_LADDER, target: float = TARGET_RECALL, threads: int = 1) -> dict[str, Any]:
    """Measure ``graph`` over the ef ladder with every kind of query in ``queries``; the cheapest ef reaching
    ``target`` for each kind is ``chosen`` (or the best row when none does). Also times exact numpy search."""
    names = [name for name, q in queries.items() if len(q)]
    stacked = np.concatenate([queries[name] for name in names]).astype(np.float32)
    kinds = np.concatenate([np.full(len(queries[name]), name) for name in names])
    k = min(k, len(matrix))
    _, truth = exact_truth(matrix, stacked, k, threads)
    table = vindex.measure_ef(graph, matrix, labels, stacked, k=k, ladder=ladder, truth_scores=truth, kinds=kinds,
                              stop_at=target)
    return {"chosen": vindex.choose_ef(table, target), "table": table,
            "exact_p50_ms": exact_latency(matrix, queries, k), "queries": {name: len(queries[name]) for name in names}}


def exact_latency(matrix: np.ndarray, queries: dict[str, np.ndarray], k: int = 10) -> float:
    """Median ms of one exact numpy query over ``matrix`` (50 of the tuning queries): what an index must beat."""
    stacked = np.concatenate([q for q in queries.values() if len(q)]).astype(np.float32)
    sample = stacked[np.random.default_rng(0).choice(len(stacked), size=min(50, len(stacked)), replace=False)]
    return vindex.exact_latency_ms(matrix, sample, min(k, len(matrix)))


def train_ivf(vectors: np.ndarray, n_lists: int | None = None, *, seed: int = 0, threads: int = 1) -> IVFIndex:
    """IVF lists over unit ``vectors`` (labels 0..N-1): FAISS spherical k-means, each item in its nearest list."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n_lists = default_lists(len(x)) if n_lists is None else int(n_lists)
    faiss.omp_set_num_threads(max(1, threads))
    # trained on at most 64 items a list (FAISS subsamples): minutes saved at 1M items, lists as good for probing
    km = faiss.Kmeans(int(x.shape[1]), n_lists, niter=16, spherical=True, seed=seed + 1, verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=64)
    km.train(x)
    _, assign = km.index.search(x, 1)
    return from_assignment(x, km.centroids, assign[:, 0].astype(np.int64))


def tune_ivf(index: IVFIndex, matrix: np.ndarray, queries: dict[str, np.ndarray], *, k: int = 10,
             ladder: Sequence[int] = NPROBE_LADDER, target: float = TARGET_RECALL, threads: int = 1) -> dict[str, Any]:
    """Recall@k per kind of query and latency for each nprobe (stopping at the first that reaches ``target`` for
    every kind); the cheapest such nprobe is ``chosen`` (or the best row when none does)."""
    import time

    names = [name for name, q in queries.items() if len(q)]
    stacked = np.concatenate([queries[name] for name in names]).astype(np.float32)
    kinds = np.concatenate([np.full(len(queries[name]), name) for name in names])
    k = min(k, len(matrix))
    _, truth = exact_truth(matrix, stacked, k, threads)
    table: list[dict[str, Any]] = []
    steps = [n for n in ladder if n < index.n_lists]
    for nprobe in [*steps, index.n_lists] if len(steps) < len(ladder) else steps:  # probing all lists ends it
        found, times = np.full((len(stacked), k), -1, dtype=np.int64), []
        for i, q in enumerate(stacked):
            t0 = time.perf_counter()
            found[i] = ivf_topk(index, q, k, nprobe)[0][0]
            times.append((time.perf_counter() - t0) * 1e3)
        scores = np.where(found >= 0, np.einsum("qkd,qd->qk", matrix[np.maximum(found, 0)], stacked), -np.inf)
        row = {"nprobe": int(nprobe), "recall": vindex.recall_at_k(scores, truth),
               "top1": float(np.mean(scores[:, 0] >= truth[:, 0] - 1e-4)),
               "p50_ms": float(np.percentile(times, 50)), "p90_ms": float(np.percentile(times, 90)),
               "p99_ms": float(np.percentile(times, 99)),
               "recall_by_kind": {str(n): vindex.recall_at_k(scores[kinds == n], truth[kinds == n]) for n in names}}
        table.append(row)
        if vindex.worst_recall(row) >= target:
            break
    return {"n_lists": index.n_lists, "chosen": vindex.choose_ef(table, target, key="nprobe"), "table": table}
