"""Retrieval metrics exactly as the GeoSound / SoundingEarth benchmarks count them.

Pure numpy and device-safe (no torch): the same code scores the teacher here and the exported models on a device.

The protocol:
- cosine similarity of L2-normalised embeddings; the ground truth of query ``i`` is gallery item ``i``;
- ranks are 1-based and ties take the AVERAGE rank (what ``pandas.Series.rank()`` does in the authors' code):
  ``rank_i = 1 + #{j: s_ij > s_ii} + (#{j: s_ij == s_ii} - 1) / 2`` where the equal count includes ``i`` itself;
- R@10% is the fraction of queries whose rank is STRICTLY below ``0.10 * N`` (N = gallery size);
- MR is the median of the ranks.

Similarities are computed in float64, chunked over queries, so a 10k x 10k evaluation stays within ~100 MB and
exact ties (e.g. duplicated gallery items) are counted as ties rather than split by rounding noise.
"""

from __future__ import annotations

import numpy as np

CHANCE_R10 = 0.10  # the chance level of R@10% in the limit of a large gallery


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length (float64); zero rows stay zero instead of becoming NaN."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (N, d), got shape {x.shape}")
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, eps)


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """normalise(norm(a) + norm(b)): the paper's composed embedding (e.g. audio + its caption)."""
    return l2_normalise(l2_normalise(a) + l2_normalise(b))


def retrieval_ranks(query: np.ndarray, gallery: np.ndarray, *, chunk: int = 512) -> np.ndarray:
    """1-based average-tie rank of the true item ``i`` for each query ``i``, float64 array of shape (Nq,).

    ``gallery`` may be larger than ``query`` (extra items act as distractors), but query ``i`` always belongs
    with gallery item ``i``. Chunking keeps memory at ``chunk x Ng`` float64 values.
    """
    q = l2_normalise(query)
    g = l2_normalise(gallery)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"query width {q.shape[1]} != gallery width {g.shape[1]}")
    if len(q) == 0:
        raise ValueError("no queries")
    if len(g) < len(q):
        raise ValueError(f"gallery ({len(g)}) is smaller than the query set ({len(q)}); query i needs item i")
    if not (np.isfinite(q).all() and np.isfinite(g).all()):
        raise ValueError("embeddings contain NaN or inf")
    ranks = np.empty(len(q), dtype=np.float64)
    for start in range(0, len(q), max(1, int(chunk))):
        stop = min(start + chunk, len(q))
        sims = q[start:stop] @ g.T  # (c, Ng)
        rows = np.arange(stop - start)
        true = sims[rows, np.arange(start, stop)][:, None]
        greater = (sims > true).sum(axis=1)
        equal = (sims == true).sum(axis=1)  # includes the true item itself
        ranks[start:stop] = 1.0 + greater + (equal - 1) / 2.0
    return ranks


def recall_at_percent(ranks: np.ndarray, n: int, pct: float = 10.0) -> float:
    """Fraction of queries whose rank is strictly below ``pct/100 * n`` (the benchmarks' R@10% when pct=10)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if n < 1:
        raise ValueError(f"gallery size must be >= 1, got {n}")
    if ranks.size == 0:
        raise ValueError("no ranks")
    return float(np.mean(ranks < (pct / 100.0) * n))


def recall_at_k(ranks: np.ndarray, k: int) -> float:
    """Fraction of queries whose true item ranks in the top ``k`` (rank <= k; an average-tie rank counts as is)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size == 0:
        raise ValueError("no ranks")
    return float(np.mean(ranks <= k))


def median_rank(ranks: np.ndarray) -> float:
    """Median of the ranks (may be a half-integer with an even count or averaged ties)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size == 0:
        raise ValueError("no ranks")
    return float(np.median(ranks))


def chance_recall_at_percent(n: int, pct: float = 10.0) -> float:
    """Expected R@pct% of a random ranking of ``n`` items: #{r in 1..n : r < pct/100*n} / n (0.0999 at n=10k)."""
    if n < 1:
        raise ValueError(f"gallery size must be >= 1, got {n}")
    limit = (pct / 100.0) * n
    below = int(np.ceil(limit)) - 1  # integers r >= 1 with r < limit
    return max(0, min(below, n)) / n


def retrieval_report(query: np.ndarray, gallery: np.ndarray, *, pct: float = 10.0,
                     ks: tuple[int, ...] = (1, 5), chunk: int = 512) -> dict[str, float]:
    """All numbers for one retrieval direction: r10 (R@pct%), mr (median rank), mean_rank, r1/r5 (top-k), n, chance.

    ``r10`` is always the R@``pct``% number (so the key is stable even if pct is changed); ``chance_r10`` is what a
    random ranking would score at this gallery size.
    """
    ranks = retrieval_ranks(query, gallery, chunk=chunk)
    n = len(np.asarray(gallery))
    report = {
        "r10": recall_at_percent(ranks, n, pct),
        "mr": median_rank(ranks),
        "mean_rank": float(ranks.mean()),
        "n": n,
        "chance_r10": chance_recall_at_percent(n, pct),
    }
    for k in ks:
        report[f"r{k}"] = recall_at_k(ranks, k)
    return report
