"""Hand-computed cases for the benchmark metrics (1-based, average-tie ranks, strict R@10%)."""

from __future__ import annotations

import numpy as np
import pytest

from core.metrics import (
    chance_recall_at_percent,
    compose,
    l2_normalise,
    median_rank,
    recall_at_k,
    recall_at_percent,
    retrieval_ranks,
    retrieval_report,
)


def test_ties_take_the_average_rank():
    gallery = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    query = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])  # scale must not matter (cosine)
    ranks = retrieval_ranks(query, gallery)
    # q0: items 0,1 tie at 1 -> (1+2)/2; q1 same; q2: true item scores 0 below two items scoring 1 -> 3
    np.testing.assert_array_equal(ranks, [1.5, 1.5, 3.0])
    assert median_rank(ranks) == 1.5


def test_all_identical_embeddings_rank_in_the_middle():
    x = np.ones((13, 4))
    ranks = retrieval_ranks(x, x)
    np.testing.assert_array_equal(ranks, np.full(13, 7.0))  # 1 + (13-1)/2
    assert recall_at_percent(ranks, 13) == 0.0
    assert median_rank(ranks) == 7.0


def test_perfect_retrieval_and_sizes_not_divisible_by_ten():
    e7 = np.eye(7)
    r7 = retrieval_ranks(e7, e7)
    np.testing.assert_array_equal(r7, np.ones(7))
    assert recall_at_percent(r7, 7) == 0.0  # rank 1 is not < 0.7
    e13 = np.eye(13)
    r13 = retrieval_ranks(e13, e13)
    assert recall_at_percent(r13, 13) == 1.0  # rank 1 < 1.3
    assert median_rank(r13) == 1.0


def test_reversed_retrieval_is_last():
    g = np.eye(13)
    ranks = retrieval_ranks(-g, g)  # true item scores -1, every other 0
    np.testing.assert_array_equal(ranks, np.full(13, 13.0))
    assert recall_at_percent(ranks, 13) == 0.0
    assert median_rank(ranks) == 13.0


def test_strict_threshold_counts_half_ranks():
    # N = 20: threshold 2.0. A tie at the top (rank 1.5) counts, rank 2 does not.
    ranks = np.array([1.0, 1.5, 2.0, 2.5] + [10.0] * 16)
    assert recall_at_percent(ranks, 20) == pytest.approx(2 / 20)
    assert recall_at_k(ranks, 2) == pytest.approx(3 / 20)
    assert median_rank(ranks) == 10.0


def test_hand_made_rank_matrix():
    # 4 items in 2-D at angles; query i is near item i except query 3, which points at item 0.
    ang = np.deg2rad([0, 40, 80, 120])
    g = np.stack([np.cos(ang), np.sin(ang)], 1)
    q = g.copy()
    q[3] = g[0]
    ranks = retrieval_ranks(q, g)
    # q3 = item 0's direction: sims to items 0,1,2,3 = cos 0, cos 40, cos 80, cos 120 -> item 3 is last (4)
    np.testing.assert_array_equal(ranks, [1.0, 1.0, 1.0, 4.0])
    assert recall_at_percent(ranks, 4, pct=50) == pytest.approx(0.75)  # rank < 2
    assert median_rank(ranks) == 1.0


def test_chunking_does_not_change_ranks():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(301, 16))
    g = q + 0.8 * rng.normal(size=q.shape)
    np.testing.assert_array_equal(retrieval_ranks(q, g, chunk=7), retrieval_ranks(q, g, chunk=10_000))


def test_matches_a_brute_force_average_rank():
    rng = np.random.default_rng(1)
    # few distinct vectors -> many exact ties
    base = rng.normal(size=(5, 3))
    g = base[rng.integers(0, 5, size=40)]
    q = base[rng.integers(0, 5, size=40)]
    ranks = retrieval_ranks(q, g)
    sims = l2_normalise(q) @ l2_normalise(g).T
    for i in range(40):
        order = -sims[i]
        # average rank by definition: mean position (1-based) of all items tied with the true one
        sorted_vals = np.sort(order)
        positions = np.nonzero(sorted_vals == order[i])[0] + 1
        assert ranks[i] == pytest.approx(positions.mean())


def test_larger_gallery_is_allowed_and_smaller_is_not():
    g = np.eye(5)
    ranks = retrieval_ranks(g[:3], g)
    np.testing.assert_array_equal(ranks, np.ones(3))
    with pytest.raises(ValueError, match="smaller"):
        retrieval_ranks(g, g[:3])


def test_bad_inputs():
    with pytest.raises(ValueError, match="2-D"):
        retrieval_ranks(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="width"):
        retrieval_ranks(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        retrieval_ranks(np.array([[np.nan, 1.0]]), np.ones((1, 2)))
    with pytest.raises(ValueError, match="no queries"):
        retrieval_ranks(np.ones((0, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError):
        recall_at_percent(np.ones(3), 0)
    with pytest.raises(ValueError):
        median_rank(np.array([]))


def test_chance_level():
    assert chance_recall_at_percent(10_000) == pytest.approx(0.0999)
    assert chance_recall_at_percent(7) == 0.0
    assert chance_recall_at_percent(13) == pytest.approx(1 / 13)
    # a random ranking's R@10% sits near the chance level
    rng = np.random.default_rng(3)
    q, g = rng.normal(size=(2000, 8)), rng.normal(size=(2000, 8))
    assert retrieval_report(q, g)["r10"] == pytest.approx(0.1, abs=0.025)


def test_report_keys_and_values():
    e = np.eye(20)
    rep = retrieval_report(e, e)
    assert rep["r10"] == 1.0 and rep["mr"] == 1.0 and rep["r1"] == 1.0 and rep["r5"] == 1.0
    assert rep["n"] == 20 and rep["chance_r10"] == pytest.approx(1 / 20)


def test_compose_is_normalised_sum_of_normalised_parts():
    a = np.array([[3.0, 0.0]])
    b = np.array([[0.0, 0.5]])
    np.testing.assert_allclose(compose(a, b), [[np.sqrt(0.5), np.sqrt(0.5)]])


def test_metrics_module_is_device_safe():
    import subprocess
    import sys

    code = "import sys, core.metrics; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
