"""The IVF fallback: FAISS-trained lists, a numpy probe over memory-mapped vectors; exact when every list is probed,
recall grows with nprobe, the builder records and the reader checks it, clear errors on bad input."""

from __future__ import annotations

import json
import mmap

import numpy as np
import pytest
from test_gallery_helpers import SR, make_rows

from benchmarks.gallery_search import clustered
from gallery.errors import GalleryError
from gallery.index import exact_topk
from gallery.ivf import default_lists, from_assignment, ivf_topk, load_ivf, save_ivf
from gallery.layout import INDEX_JSON
from gallery.query import Gallery
from gallery.store import GalleryWriter
from gallery.tuning import train_ivf, tune_ivf


def mapped(array: np.ndarray) -> bool:
    """Whether the array's memory is a file mapping (somewhere down its chain of bases)."""
    while array is not None:
        if isinstance(array, np.memmap | mmap.mmap):
            return True
        array = getattr(array, "base", None)
    return False


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    both = clustered(3050, 32, rng)
    return both[:3000], both[3000:]


def test_probing_every_list_is_exact_search(data):
    items, queries = data
    index = train_ivf(items, 40, seed=1)
    assert index.n_lists == 40 and len(index) == 3000 and sorted(index.order.tolist()) == list(range(3000))
    assert index.starts[0] == 0 and index.starts[-1] == 3000 and np.all(np.diff(index.starts) >= 0)
    labels, scores = ivf_topk(index, queries, 10, nprobe=40)
    truth_rows, truth_scores = exact_topk(items, queries, 10)
    assert np.allclose(scores, truth_scores, atol=1e-5) and labels.shape == (50, 10)
    assert np.allclose(np.einsum("qkd,qd->qk", items[labels], queries), scores, atol=1e-5)  # labels are item rows


def test_recall_grows_with_nprobe_and_tuning_stops_at_the_target(data):
    items, queries = data
    index = train_ivf(items)
    assert index.n_lists == default_lists(3000) == 175
    result = tune_ivf(index, items, {"a": queries[:25], "b": queries[25:]}, ladder=(1, 8, 175), target=1.01)
    recalls = [r["recall"] for r in result["table"]]
    assert [r["nprobe"] for r in result["table"]] == [1, 8, 175] and recalls[0] <= recalls[1] <= recalls[2] == 1.0
    assert set(result["table"][0]["recall_by_kind"]) == {"a", "b"} and result["chosen"]["nprobe"] == 175
    stopped = tune_ivf(index, items, {"a": queries}, ladder=(175, 200), target=0.99)
    assert [r["nprobe"] for r in stopped["table"]] == [175]  # 200 lists do not exist; all 175 reach the target


def test_small_lists_and_bad_input(data, tmp_path):
    items, _ = data
    index = from_assignment(items[:5], items[:2], np.array([0, 0, 1, 1, 1]))
    labels, scores = ivf_topk(index, items[0], 10, nprobe=1)  # k above the item count is cut to it
    assert labels.shape == (1, 5) and labels[0, 0] == 0 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert (labels[0] == -1).sum() == np.isinf(scores[0]).sum() == 3  # a probed list shorter than k pads
    save_ivf(index, tmp_path / "x.ivf.npz", tmp_path / "x.ivf.npy")
    opened = load_ivf(tmp_path / "x.ivf.npz", tmp_path / "x.ivf.npy", count=5, dim=32)
    assert mapped(opened.vectors) and np.array_equal(opened.order, index.order)
    with pytest.raises(GalleryError, match="do not fit this gallery's 4 vectors of width 32"):
        load_ivf(tmp_path / "x.ivf.npz", tmp_path / "x.ivf.npy", count=4, dim=32)
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(GalleryError, match="do not load"):
        load_ivf(tmp_path / "bad.npz", tmp_path / "x.ivf.npy", count=5, dim=32)


def _ivf_gallery(root, n=150, dim=16):
    rows = make_rows(n, dim, seed=4)
    with GalleryWriter.open(root, fingerprint="b" * 64, dim=dim, clip_format="ogg", sample_rate=SR) as w:
        w.add_batch(rows)
        info = w.finish(try_graph=False, must_beat_exact=False)  # small galleries would never pick IVF by speed
    return rows, info


def test_gallery_searches_by_memory_mapped_ivf_lists_when_recorded(tmp_path):
    _, info = _ivf_gallery(tmp_path / "g")
    assert info["params"]["mode"] == {"caption": "ivf", "audio": "ivf"} and set(info["params"]["nprobe"]) == {
        "caption", "audio"}
    assert set(info["files"]) == {"caption.ivf", "caption.ivf.vectors", "audio.ivf", "audio.ivf.vectors"}
    assert info["measured"]["caption"]["ivf"]["chosen"]["recall"] >= 0.99
    with Gallery.open(tmp_path / "g") as g:
        assert g.ivf_kinds == {"caption", "audio"} and not g.exact_kinds
        matrix, _ = g.vectors("audio")
        for q in g.vectors("caption")[0][:20]:
            got = g.search(q, k=3, kind="audio")
            assert got[0].score == pytest.approx(float(exact_topk(matrix, q[None, :], 1)[1][0, 0]), abs=1e-5)
            assert [h.label for h in got] == [h.label for h in g.search(q, k=3, kind="audio", exact=True)]
        assert mapped(g._ivf_index("audio").vectors)  # opened without reading the vectors
    with Gallery.open(tmp_path / "g", exact=True) as g:  # exact=True still overrides every index
        assert not g.ivf_kinds and g.exact_kinds == {"caption", "audio"}


def test_damaged_missing_or_foreign_ivf_files_are_refused(tmp_path):
    _ivf_gallery(tmp_path / "g")
    lists, vectors = tmp_path / "g" / "audio.ivf.npz", tmp_path / "g" / "audio.ivf.npy"
    data = bytearray(lists.read_bytes())
    data[-10] ^= 0xFF
    lists.write_bytes(bytes(data))
    with pytest.raises(GalleryError, match="audio.ivf.npz does not match its gallery"):
        Gallery.open(tmp_path / "g")
    vectors.write_bytes(vectors.read_bytes()[:-64])
    with pytest.raises(GalleryError, match=r"audio.ivf.npy is \d+ bytes, index.json records"):
        Gallery.open(tmp_path / "g")
    np.save(vectors, np.zeros((150, 8), np.float32))  # another width, the size recorded to match
    info = json.loads((tmp_path / "g" / INDEX_JSON).read_text())
    info["files"]["audio.ivf.vectors"]["bytes"] = vectors.stat().st_size
    (tmp_path / "g" / INDEX_JSON).write_text(json.dumps(info))
    with pytest.raises(GalleryError, match=r"shape \(150, 8\), the gallery has 150 of width 16"):
        Gallery.open(tmp_path / "g")
    lists.unlink()
    with pytest.raises(GalleryError, match="audio.ivf.npz is missing"):
        Gallery.open(tmp_path / "g")
