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


def _ivf_gallery(root, n=120, dim=16):
    from test_gallery_helpers import SR, make_rows

    from gallery.store import GalleryWriter

    rows = make_rows(n, dim, seed=4)
    with GalleryWriter.open(root, fingerprint="b" * 64, dim=dim, clip_format="ogg", sample_rate=SR) as w:
        w.add_batch(rows)
        info = w.finish(try_hnsw=False, must_beat_exact=False)  # small galleries would never pick IVF by speed
    return rows, info


def test_gallery_searches_by_ivf_lists_when_recorded(tmp_path):
    from gallery.query import Gallery

    _, info = _ivf_gallery(tmp_path / "g")
    assert info["params"]["mode"] == {"caption": "ivf", "audio": "ivf"}
    assert set(info["files"]) == {"caption", "audio", "caption.ivf", "audio.ivf"}
    assert info["measured"]["caption"]["ivf"]["chosen"]["recall"] >= 0.99
    assert (tmp_path / "g" / "caption.ivf.npz").is_file()
    with Gallery.open(tmp_path / "g") as g:
        assert g.ivf_kinds == {"caption", "audio"} and not g.exact_kinds
        matrix, labels = g.vectors("audio")
        for q in g.vectors("caption")[0][:20]:
            got = g.search(q, k=3, kind="audio")
            best = exact_topk(matrix, q[None, :], 1)[1][0, 0]
            assert got[0].score == pytest.approx(float(best), abs=1e-5)
            assert [h.label for h in got] == [h.label for h in g.search(q, k=3, kind="audio", exact=True)]
    with Gallery.open(tmp_path / "g", exact=True) as g:  # exact=True still overrides every index
        assert not g.ivf_kinds and g.exact_kinds == {"caption", "audio"}


def test_damaged_or_missing_ivf_lists_are_refused(tmp_path):
    from gallery.query import Gallery

    _ivf_gallery(tmp_path / "g")
    lists = tmp_path / "g" / "audio.ivf.npz"
    data = bytearray(lists.read_bytes())
    data[-10] ^= 0xFF
    lists.write_bytes(bytes(data))
    with pytest.raises(GalleryError, match="audio.ivf.npz does not match its gallery"):
        Gallery.open(tmp_path / "g")
    lists.unlink()
    with pytest.raises(GalleryError, match="audio.ivf.npz is missing"):
        Gallery.open(tmp_path / "g")


def test_ivf_lists_that_do_not_fit_are_refused(tmp_path, data):
    from gallery.ivf import load_ivf, save_ivf

    items, _ = data
    save_ivf(build_ivf(items[:100], 5), tmp_path / "x.ivf.npz")
    assert len(load_ivf(tmp_path / "x.ivf.npz", items[:100])) == 100
    with pytest.raises(GalleryError, match="do not fit this gallery's 99 vectors"):
        load_ivf(tmp_path / "x.ivf.npz", items[:99])
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(GalleryError, match="do not load"):
        load_ivf(tmp_path / "bad.npz", items[:100])
