"""Scoring maps against the embedded world's ground truth.

For a query that names sound sources (found with the world's own caption vocabulary), a tile's truth is how much of
its ground makes one of those sources plausible: the share of its land-cover pixels whose class lists the source
(world.cover_classes.CLASS_SOURCES). A tile is positive when that share is at least ``POSITIVE_SHARE``. A map is scored
by ROC-AUC (positives vs the rest; 0.5 = chance) and by Spearman's rho between score and share.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata, spearmanr

POSITIVE_SHARE = 0.05


def source_share(fractions: np.ndarray, sources: list[str]) -> np.ndarray:
    """(N, K) fine-class fractions -> (N,) share of ground whose class makes any of ``sources`` plausible."""
    from world.cover_classes import CLASS_SOURCES, FINE_CLASSES

    relevant = np.array([bool(set(CLASS_SOURCES[c]) & set(sources)) for c in FINE_CLASSES], dtype=np.float32)
    return fractions @ relevant


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Mann-Whitney AUC with average ranks for ties; NaN when one class is empty."""
    positive = np.asarray(positive, bool).ravel()
    scores = np.asarray(scores, np.float64).ravel()
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def score_against_truth(scores: np.ndarray, fractions: np.ndarray, sources: list[str]) -> dict:
    share = source_share(fractions, sources)
    positive = share >= POSITIVE_SHARE
    rho = spearmanr(scores.ravel(), share).statistic if np.ptp(share) > 0 else float("nan")
    return {
        "sources": sources,
        "positive_tiles": int(positive.sum()),
        "tiles": int(positive.size),
        "auc": roc_auc(scores, positive),
        "spearman": float(rho),
    }
