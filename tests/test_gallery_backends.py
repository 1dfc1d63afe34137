"""The gallery's index libraries and what index.json records and refuses: USearch (default) and hnswlib graphs,
memory-mapped opening, library/version/size/header checks, old galleries, exact fallback, reindexing, tuning."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_gallery_helpers import SR, make_gallery, make_rows

from gallery import backends
from gallery.errors import GalleryError
from gallery.index import choose_ef, exact_topk
from gallery.layout import INDEX_FORMAT, INDEX_JSON
from gallery.query import Gallery
from gallery.store import GalleryWriter
from gallery.tuning import caption_fragments, exact_truth, real_use_queries

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def galleries(tmp_path_factory):
    """One 120-item gallery per library, searched by its graph (small galleries would otherwise search exactly)."""
    base = tmp_path_factory.mktemp("libs")
    rows = make_gallery(base / "usearch", n=120, dim=16, must_beat_exact=False)
    make_gallery(base / "hnswlib", n=120, dim=16, must_beat_exact=False, index="hnswlib")
    make_gallery(base / "i8", n=120, dim=16, must_beat_exact=False, dtype="i8")
    return base, rows


def copy(galleries, name: str, tmp_path: Path) -> Path:
    dst = tmp_path / name
    shutil.copytree(galleries[0] / name, dst)
    return dst


def edit_index_json(root: Path, change) -> None:
    info = json.loads((root / INDEX_JSON).read_text())
    change(info)
    (root / INDEX_JSON).write_text(json.dumps(info))


@pytest.mark.parametrize("name, library, dtype, suffix", [("usearch", "usearch", "f16", "usearch"),
                                                          ("hnswlib", "hnswlib", "f32", "hnsw")])
def test_each_library_records_itself_and_finds_what_exact_search_finds(galleries, name, library, dtype, suffix):
    root, rows = galleries[0] / name, galleries[1]
    info = json.loads((root / INDEX_JSON).read_text())
    params = info["params"]
    assert info["index_format"] == INDEX_FORMAT and params["index"] == library and params["dtype"] == dtype
    assert params["version"] == backends.version(library) and params["mode"] == {"caption": "hnsw", "audio": "hnsw"}
    entry = info["files"]["caption"]
    assert entry["file"] == f"caption.{suffix}" and entry["library"] == library
    assert entry["bytes"] == (root / entry["file"]).stat().st_size
    assert set(info["measured"]["caption"]["queries"]) == {"other-kind"}  # no model here: the other kind's vectors
    with Gallery.open(root) as g:
        assert g.library == library and not g.exact_kinds
        matrix = g.vectors("caption")[0]
        for row in rows[::11]:
            hits = g.search(row.audio_vector, k=5)
            truth = exact_topk(matrix, row.audio_vector[None, :] / np.linalg.norm(row.audio_vector), 5)[1][0]
            assert hits[0].score == pytest.approx(float(truth[0]), abs=1e-5)  # exact float32 cosine, even from i8
            assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_an_i8_graph_that_misses_the_target_gives_way_to_ivf_lists(galleries):
    """i8 rounding reorders near ties: on these vectors no ef reaches recall 0.99, so the builder keeps no graph and
    searches by IVF lists instead (their nprobe tuned the same way), which find what exact search finds."""
    root = galleries[0] / "i8"
    info = json.loads((root / INDEX_JSON).read_text())
    assert info["params"]["dtype"] == "i8" and info["params"]["mode"] == {"caption": "ivf", "audio": "ivf"}
    assert set(info["files"]) == {"caption.ivf", "caption.ivf.vectors", "audio.ivf", "audio.ivf.vectors"}
    assert not list(root.glob("*.usearch")) and info["files"]["caption.ivf"]["library"] == "numpy"
    assert info["measured"]["caption"]["chosen"]["recall"] < 0.99 <= info["measured"]["caption"]["ivf"]["chosen"][
        "recall"]
    with Gallery.open(root) as g:
        assert g.ivf_kinds == {"caption", "audio"} and not g.exact_kinds and not g.exact
        matrix = g.vectors("caption")[0]
        for row in galleries[1][::13]:
            q = row.audio_vector / np.linalg.norm(row.audio_vector)
            assert g.search(q, k=1)[0].score == pytest.approx(float((matrix @ q).max()), abs=1e-5)


def test_usearch_index_is_memory_mapped_and_header_checked(galleries):
    root = galleries[0] / "usearch"
    head = backends.read_header("usearch", root / "caption.usearch")
    assert head == {"count": 120, "dim": 16, "dtype": "f16", "metric": "cos", "version": backends.version("usearch")}
    assert backends.read_header("hnswlib", galleries[0] / "hnswlib" / "audio.hnsw")["count"] == 120
    graph = backends.open_graph("usearch", root / "caption.usearch", dim=16, count=120)
    assert len(graph) == 120
    with pytest.raises(GalleryError, match="not an hnswlib index"):
        backends.read_header("hnswlib", root / "caption.usearch")
    with pytest.raises(GalleryError, match="not a USearch index"):
        backends.read_header("usearch", galleries[0] / "hnswlib" / "caption.hnsw")


def test_truncated_or_foreign_index_files_are_refused(galleries, tmp_path):
    root = copy(galleries, "usearch", tmp_path)
    data = (root / "caption.usearch").read_bytes()
    (root / "caption.usearch").write_bytes(data[: len(data) // 2])
    with pytest.raises(GalleryError, match=r"caption.usearch is \d+ bytes, index.json records \d+ \(truncated"):
        Gallery.open(root)
    # the size recorded to match, the file still short: the header check or the library refuses, never a crash
    edit_index_json(root, lambda i: i["files"]["caption"].update(bytes=len(data) // 2))
    with pytest.raises(GalleryError, match="caption.usearch"):
        Gallery.open(root, verify="header").search(np.ones(16), k=3)
    # another library's file in its place
    shutil.copy(galleries[0] / "hnswlib" / "caption.hnsw", root / "caption.usearch")
    size = (root / "caption.usearch").stat().st_size
    edit_index_json(root, lambda i: i["files"]["caption"].update(bytes=size))
    with pytest.raises(GalleryError, match="is not a USearch index"):
        Gallery.open(root)


def test_count_width_dtype_and_version_mismatches_are_refused(galleries, tmp_path):
    other = tmp_path / "other"
    make_gallery(other, n=90, dim=16, seed=7, must_beat_exact=False)  # same width, fewer items
    root = copy(galleries, "usearch", tmp_path)
    shutil.copy(other / "caption.usearch", root / "caption.usearch")
    size = (root / "caption.usearch").stat().st_size
    edit_index_json(root, lambda i: i["files"]["caption"].update(bytes=size))
    with pytest.raises(GalleryError, match="holds 90 vectors of width 16, the gallery has 120 of width 16"):
        Gallery.open(root)
    root = copy(galleries, "usearch", tmp_path / "v")
    edit_index_json(root, lambda i: i["files"]["caption"].update(version="3.0.0"))
    with pytest.raises(GalleryError, match="written by usearch 3.0.0; this reader has usearch .* reindex"):
        Gallery.open(root)
    edit_index_json(root, lambda i: i["files"]["caption"].update(version="2.0.0"))  # same release line as 2.x
    with pytest.raises(GalleryError, match="index.json records 2.0.0 \\(replaced\\?\\)"):
        Gallery.open(root)
    root = copy(galleries, "usearch", tmp_path / "d")
    edit_index_json(root, lambda i: i["params"].update(dtype="f32"))
    with pytest.raises(GalleryError, match="stores f16 vectors, index.json records f32"):
        Gallery.open(root)
    root = copy(galleries, "usearch", tmp_path / "l")
    edit_index_json(root, lambda i: i["params"].update(index="faiss"))
    with pytest.raises(GalleryError, match="names index 'faiss', which this reader does not know"):
        Gallery.open(root)
    assert backends.compatible("2.26.6", "2.9.0") and not backends.compatible("2.26.6", "3.0.0")
    assert backends.compatible("0.8.0", "0.8.3") and not backends.compatible("0.8.0", "0.9.0")


def test_old_galleries_are_refused_with_the_reindex_command_and_reindex_repairs_them(galleries, tmp_path):
    from core.cli import main as cli_main

    root = copy(galleries, "hnswlib", tmp_path)
    edit_index_json(root, lambda i: (i.pop("index_format"), i["params"].update(mode={"caption": "ivf"})))
    with pytest.raises(GalleryError, match=f"index format 1 .* `sat2sound gallery reindex {root}`"):
        Gallery.open(root)
    assert cli_main(["gallery", "reindex", str(root), "--threads", "1"]) == 0
    with Gallery.open(root) as g:
        assert g.library == "usearch" and g.index_info["index_format"] == INDEX_FORMAT
        assert not (root / "caption.hnsw").exists()  # the old library's files do not linger
        assert len(g.search(np.ones(16), k=4)) == 4
    assert cli_main(["gallery", "reindex", str(root), "--index", "exact"]) == 0
    with Gallery.open(root) as g:
        assert g.exact and g.index_info["files"] == {} and g.search(np.ones(16), k=2)[0].score > 0


def test_index_exact_and_kinds_without_a_graph(tmp_path):
    rows = make_rows(40, 8)
    with GalleryWriter.open(tmp_path / "g", fingerprint="e" * 64, dim=8, clip_format="ogg", sample_rate=SR) as w:
        w.add_batch(rows)
        info = w.finish(must_beat_exact=False, kinds=("caption",))
    assert info["params"]["mode"] == {"caption": "hnsw", "audio": "exact"} and set(info["files"]) == {"caption"}
    with Gallery.open(tmp_path / "g") as g:
        assert g.exact_kinds == {"audio"} and g.search(rows[3].audio_vector, k=1, kind="audio")[0].id == rows[3].id
    with GalleryWriter.open(tmp_path / "g", fingerprint="e" * 64, dim=8, clip_format="ogg", sample_rate=SR) as w:
        with pytest.raises(GalleryError, match="--index must be one of usearch, hnswlib, exact"):
            w.finish(index="annoy")
        with pytest.raises(GalleryError, match="--index-dtype must be one of f32, f16, i8"):
            w.finish(dtype="f64")


def test_without_the_library_a_device_searches_exactly(galleries):
    root = galleries[0] / "usearch"
    code = ("import sys\nsys.modules['usearch'] = None  # a phone without the recipe\n"
            "import numpy as np\nfrom gallery.query import Gallery\n"
            f"g = Gallery.open({str(root)!r})\n"
            "print('EXACT', g.exact, len(g.search(np.ones(16), k=3)),\n"
            "      sorted(m for m in ('torch', 'faiss', 'hnswlib', 'usearch') if sys.modules.get(m)))\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "EXACT True 3 []" in res.stdout


def test_tuning_queries_stand_for_real_use():
    rng = np.random.default_rng(0)
    caps = ["birds chirping in a quiet forest near a river", "heavy traffic", "waves break on a sandy beach"]
    frags = caption_fragments(caps, 6, rng)
    assert len(frags) == 2 and all(3 <= len(f.split()) < 9 for f in frags)  # one per usable caption
    assert all(any(f in c for c in caps) for f in frags) and "heavy traffic" not in frags  # too short to cut
    calls = []

    def embed_texts(texts):
        calls.append(len(texts))
        return rng.normal(size=(len(texts), 8)).astype(np.float32)

    out = real_use_queries(embed_texts, caps, lambda lat, lon, zoom: np.full(8, lat + zoom, np.float32),
                           [(1.0, 2.0, 1), (3.0, 4.0, 3)], n=5)
    assert out["text"].shape == (2, 8) and out["place"].shape == (2, 8) and calls == [2]
    assert np.allclose(np.linalg.norm(out["place"], axis=1), 1)
    items = rng.normal(size=(300, 8)).astype(np.float32)
    queries = rng.normal(size=(7, 8)).astype(np.float32)
    rows, scores = exact_truth(items, queries, 5)
    assert np.array_equal(rows, exact_topk(items, queries, 5)[0])  # FAISS flat agrees with numpy
    assert np.allclose(scores, np.take_along_axis(queries @ items.T, rows, axis=1), atol=1e-5)
    # the cheapest ef whose recall reaches the target for every kind of query, not only on average
    table = [{"ef": 16, "recall": 0.995, "recall_by_kind": {"text": 0.98, "place": 1.0}},
             {"ef": 32, "recall": 0.996, "recall_by_kind": {"text": 0.992, "place": 1.0}}]
    assert choose_ef(table, 0.99)["ef"] == 32


def test_the_device_runtimes_still_load_after_the_index_library():
    """The app opens the gallery (USearch) before its model runtime; usearch 2.26.2-2.26.6 made a later
    `import onnxruntime` segfault, so the pin is checked here, in the app's order."""
    code = ("import numpy as np\nfrom gallery import backends\nassert backends.have('usearch')\n"
            "import onnxruntime\nprint('LOADED', backends.version('usearch'))\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, f"exit {res.returncode}: {res.stderr[-500:]}"
    assert "LOADED" in res.stdout
