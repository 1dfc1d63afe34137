"""Ranking under the paper's protocol, shared by the oracles: ranks of the true items, their report, and the
likelihood scoring of sampled signatures against the stored ones.

Ranks are 1-based, ties take the average rank, R@10% = share of queries with rank < 0.1 N (strict), median rank.
"""

from __future__ import annotations

import numpy as np

from contracts.errors import DataError


def with_progress(items: list, desc: str, progress: bool):
    """``items`` (a list) behind a tqdm bar when ``progress`` (the generator oracles take minutes on a CPU)."""
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="place", disable=not progress, leave=False)


def ranks_of_diagonal(rows: np.ndarray, offset: int) -> np.ndarray:
    """1-based rank, ties averaged, of item offset + r in row r (the paper's protocol)."""
    diag = rows[np.arange(len(rows)), np.arange(offset, offset + len(rows))][:, None]
    return 1.0 + (rows > diag).sum(axis=1) + ((rows == diag).sum(axis=1) - 1) / 2.0


def ranks_report(ranks: np.ndarray, n: int) -> dict[str, float]:
    """R@10%, median rank, R@1 and R@5 of the true items' ranks among ``n``."""
    return {"r10": float(np.mean(ranks < 0.1 * n)), "median_rank": float(np.median(ranks)),
            "r1": float(np.mean(ranks < 1.5)), "r5": float(np.mean(ranks < 5.5))}


def signature_likelihoods(sampled: list[list[frozenset[str]]], captions: list[frozenset[str]],
                          backoff: float = 1e-3, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(counts, scores), both (N_images, N_captions): counts[i, j] = share of image i's sampled signatures equal to
    caption j's; scores = counts + ``backoff`` * mean Jaccard similarity of image i's samples to caption j's
    signature (a smooth tie-break and a floor for signatures the samples never hit)."""
    if not sampled or not captions or any(not s for s in sampled):
        raise DataError("the resampling oracle needs images with at least one sampled caption, and captions",
                        field="llava_caption")
    vocab: dict[frozenset[str], int] = {}
    for sig in [*(s for row in sampled for s in row), *captions]:
        vocab.setdefault(sig, len(vocab))
    names = {n: k for k, n in enumerate(sorted({n for sig in vocab for n in sig}))}
    hot = np.zeros((len(vocab), max(1, len(names))), np.float64)
    for sig, u in vocab.items():
        hot[u, [names[n] for n in sig]] = 1.0
    weights = np.zeros((len(sampled), len(vocab)), np.float64)  # image i's share of samples with signature u
    for i, row in enumerate(sampled):
        np.add.at(weights[i], [vocab[s] for s in row], 1.0 / len(row))
    cap_ids = np.array([vocab[s] for s in captions])
    counts = weights[:, cap_ids]
    sizes = hot.sum(axis=1)
    scores = counts.copy()
    for s in range(0, len(captions), chunk):
        ids = cap_ids[s:s + chunk]
        inter = hot @ hot[ids].T  # (U, chunk)
        union = np.maximum(sizes[:, None] + sizes[ids][None, :] - inter, 1.0)
        scores[:, s:s + chunk] += backoff * (weights @ (inter / union))
    return counts, scores


def diagonal_report(scores: np.ndarray) -> dict[str, float]:
    """ranks_report of a (N_queries, N_items) score matrix whose true item for query i is item i."""
    n = scores.shape[1]
    return ranks_report(ranks_of_diagonal(scores, 0), n)


def likelihood_ratio(scores: np.ndarray) -> np.ndarray:
    """p(item j | query i) / p(item j): each column over its mean across the queries (0 where that mean is 0, i.e.
    no query's draws come near the item)."""
    marginal = scores.mean(axis=0, keepdims=True)
    return np.divide(scores, marginal, out=np.zeros_like(scores), where=marginal > 0)


def own_draw_stats(counts: np.ndarray) -> dict[str, float]:
    """own_hit (share of queries whose draws hit their own item's signature), own_p (its mean probability) and
    other_p (the same for every other item: the chance level) from a (N, N) matrix of draw shares."""
    own = np.diag(counts)
    n = len(own)
    return {"own_hit": float(np.mean(own > 0)), "own_p": float(own.mean()),
            "other_p": float((counts.sum() - own.sum()) / max(1, n * n - n))}

