"""Gallery search, one query per call on one thread: exact numpy top-10 against HNSW at the product's parameters.

Synthetic embedding-like vectors (sparse mixtures of codebook entries, benchmarks/gallery_search.py) of the
teacher's embedding width; the HNSW ef is chosen as the gallery builder does (cheapest reaching recall@10 0.99 on
these queries, else the best of the ladder), and the recall reached is recorded in extra_info.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from benchmarks.latency.gallery import blas_threads, cycling, synthetic_gallery
from gallery import index as vindex
from gallery.layout import TARGET_RECALL

LADDER = (16, 32, 64, 128, 256, 512, 1024)


@pytest.fixture(scope="module")
def gallery(bench_options: Any, bench_cfg: Any, gallery_n: int) -> dict[str, Any]:
    g = synthetic_gallery("codebook", gallery_n, bench_cfg.model.codebook.dim, 100, 0, bench_options.work / "gallery")
    table = vindex.measure_ef(g.index, g.items, g.labels, g.queries, k=10, ladder=LADDER)
    return {"g": g, "chosen": vindex.choose_ef(table, TARGET_RECALL)}


def test_exact_search(benchmark: Any, gallery: dict[str, Any], gallery_n: int) -> None:
    g = gallery["g"]
    benchmark.group = f"gallery search, {gallery_n} items"
    with blas_threads(1):
        rows, scores = benchmark(cycling(lambda q: vindex.exact_topk(g.items, q[None, :], 10), g.queries))
    assert rows.shape == (1, 10) and np.all(np.diff(scores[0]) <= 1e-6)  # best first


def test_hnsw_search(benchmark: Any, gallery: dict[str, Any], gallery_n: int) -> None:
    g, chosen = gallery["g"], gallery["chosen"]
    benchmark.group = f"gallery search, {gallery_n} items"
    benchmark.extra_info.update(ef=chosen["ef"], recall_at_10=chosen["recall"], top1=chosen["top1"])
    labels, scores = benchmark(cycling(lambda q: vindex.hnsw_topk(g.index, q[None, :], 10, chosen["ef"]),
                                       g.queries))
    assert labels.shape == (1, 10) and 0.0 <= chosen["recall"] <= 1.0
