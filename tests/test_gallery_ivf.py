"""The numpy IVF index: exact when every list is probed, recall grows with nprobe, clear errors on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.gallery_search import clustered, main
from gallery.errors import GalleryError
from gallery.index import exact_topk
from gallery.ivf import build_ivf, default_lists, ivf_topk, measure_nprobe


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    both = clustered(3050, 32, rng)
    return both[:3000], both[3000:]


def test_probing_every_list_is_exact_search(data):
    items, queries = data
    index = build_ivf(items, 40, seed=1)
    assert index.n_lists == 40 and len(index) == 3000 and sorted(index.order.tolist()) == list(range(3000))
    assert index.starts[0] == 0 and index.starts[-1] == 3000 and np.all(np.diff(index.starts) >= 0)
    rows, scores = ivf_topk(index, queries, 10, nprobe=40)
    truth_rows, truth_scores = exact_topk(items, queries, 10)
    assert np.allclose(scores, truth_scores, atol=1e-5) and rows.shape == (50, 10)
    assert np.allclose(np.einsum("qkd,qd->qk", items[rows], queries), scores, atol=1e-5)  # rows are item rows


def test_recall_grows_with_nprobe(data):
    items, queries = data
    index = build_ivf(items)
    assert index.n_lists == default_lists(3000) == 88
    table = measure_nprobe(index, items, queries, ladder=(1, 8, 88))
    recalls = [r["recall"] for r in table]
    assert recalls[0] <= recalls[1] <= recalls[2] == 1.0
    assert all(r["p50_ms"] > 0 for r in table) and [r["nprobe"] for r in table] == [1, 8, 88]


def test_small_lists_and_bad_input(data):
    items, _ = data
    index = build_ivf(items[:5], 2)
    rows, scores = ivf_topk(index, items[0], 10, nprobe=1)  # k above the item count is cut to it
    assert rows.shape == (1, 5) and rows[0, 0] == 0 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert (rows[0] == -1).sum() == np.isinf(scores[0]).sum()  # a probed list shorter than k pads with -1 / -inf
    with pytest.raises(GalleryError, match="non-empty"):
        build_ivf(np.zeros((0, 8), np.float32))
    with pytest.raises(GalleryError, match="needs 1..5 lists"):
        build_ivf(items[:5], 6)


def test_benchmark_measures_ivf_beside_hnsw(tmp_path):
    out = tmp_path / "bench.json"
    assert main(["--n", "1200", "--dim", "16", "--queries", "20", "--efs", "16,64", "--m", "8", "--threads", "1",
                 "--ivf", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    ivf = report["ivf"]
    assert ivf["n_lists"] == default_lists(1200) and ivf["build_s"] > 0
    assert [r["nprobe"] for r in ivf["table"]] == [4, 8, 16, 24, 32, 48]  # the ladder up to the list count
    assert ivf["table"][-1]["recall"] >= ivf["table"][0]["recall"]
    assert "## IVF (numpy, gallery/ivf.py)" in out.with_suffix(".md").read_text()
