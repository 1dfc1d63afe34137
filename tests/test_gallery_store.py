"""Gallery storage, index and device-side query: real SQLite, real USearch, real clips; vectors made in the test.

(The index libraries, index.json checks and refusals have their own file: test_gallery_backends.py.)"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_gallery_helpers import SR, make_gallery, make_rows

from gallery.clips import decode_clip, encode_clip, sniff_format
from gallery.errors import GalleryError
from gallery.index import exact_topk
from gallery.layout import DB_NAME, INDEX_JSON, SCHEMA_VERSION
from gallery.query import Gallery
from gallery.store import GalleryWriter

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("gallery") / "g"
    rows = make_gallery(root, n=60, dim=32, must_beat_exact=False)  # searched by its USearch graph, not exactly
    return root, rows


def fresh_copy(built, tmp_path) -> tuple[Path, list]:
    root, rows = built
    dst = tmp_path / "copy"
    shutil.copytree(root, dst)
    return dst, rows


# ------------------------------------------------------------------------------------------------ happy path


def test_search_finds_each_item_by_its_own_vector(built):
    root, rows = built
    with Gallery.open(root) as g:
        assert len(g) == 60 and g.dim == 32 and g.fingerprint == "a" * 64
        assert g.exact_kinds == {k for k, mode in g.index_info["params"]["mode"].items() if mode == "exact"}
        for row in rows[::7]:
            hits = g.search(row.caption_vector, k=3)
            assert hits[0].id == row.id and hits[0].caption == row.caption
            assert hits[0].score == pytest.approx(1.0, abs=1e-5)
            assert hits[0].score >= hits[1].score >= hits[2].score
            assert hits[0].sources == ("birds", "wind") and hits[0].zoom == 1 and hits[0].split == "test"
            audio_hits = g.search(row.audio_vector, k=1, kind="audio")
            assert audio_hits[0].id == row.id


def test_graph_matches_exact_search(built):
    root, rows = built
    rng = np.random.default_rng(5)
    queries = rng.normal(size=(40, 32)).astype(np.float32)
    with Gallery.open(root) as g:
        assert g.library == "usearch" and g.graph_kinds == {"caption", "audio"} and not g.exact_kinds
        approx = g.search_many(queries, k=10)
        exact = g.search_many(queries, k=10, exact=True)
        matrix, labels = g.vectors("caption")
    assert matrix.shape == (60, 32) and list(labels) == list(range(60))
    overlap = np.mean([len({h.id for h in a} & {h.id for h in e}) / 10 for a, e in zip(approx, exact)])
    assert overlap >= 0.99
    # the graph's hits carry exact float32 cosines from the db (the index stores f16), best first
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    for hits, qv in zip(approx, q):
        assert [h.score for h in hits] == pytest.approx([float(matrix[h.label] @ qv) for h in hits], abs=1e-6)
        assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    # the exact path agrees with a direct numpy computation, scores included
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    best = np.argmax(q @ matrix.T, axis=1)
    assert [e[0].label for e in exact] == best.tolist()
    assert exact[0][0].score == pytest.approx(float(q[0] @ matrix[best[0]]), abs=1e-5)


def test_exact_topk_orders_and_breaks_ties_by_row():
    m = np.array([[1, 0], [0, 1], [1, 0], [0.6, 0.8]], dtype=np.float32)
    rows, scores = exact_topk(m, np.array([[1, 0]], dtype=np.float32), 3)
    assert rows.tolist() == [[0, 2, 3]] and scores[0].tolist() == pytest.approx([1, 1, 0.6])


def test_item_and_clip_round_trip(built):
    root, rows = built
    with Gallery.open(root) as g:
        item = g.item(rows[5].id)
        assert item.caption == rows[5].caption and item.label == 5 and item.provenance[0]["sample_id"] == "s5"
        assert (item.clip_format, item.sample_rate, item.seconds) == ("ogg", SR, 0.5)
        data, fmt = g.clip(rows[5].id)
        assert fmt == "ogg" and data == rows[5].clip and sniff_format(data) == "ogg"
        wave, sr = g.decode_clip(rows[5].id)
        assert sr == SR and wave.shape == (4000,)
        # the decoded tone is the 400 Hz tone that went in (Vorbis is lossy: compare the spectrum peak)
        assert abs(np.argmax(np.abs(np.fft.rfft(wave))) * SR / len(wave) - 400) <= 4
        assert g.ids()[:2] == [rows[0].id, rows[1].id]


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg"])
def test_clip_formats_encode_and_decode(fmt):
    wave = np.sin(np.linspace(0, 200, 8000)).astype(np.float32) * 0.5
    data = encode_clip(wave, SR, fmt)
    assert sniff_format(data) == fmt
    back, sr = decode_clip(data, fmt)
    assert sr == SR and back.shape == wave.shape
    if fmt != "ogg":
        assert np.max(np.abs(back - wave)) < 1e-3


def test_finished_db_is_self_contained_and_consistent(built):
    root, rows = built
    assert not (root / (DB_NAME + "-wal")).exists()
    conn = sqlite3.connect(root / DB_NAME)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 60
        assert conn.execute("SELECT count(*) FROM embeddings").fetchone()[0] == 120
        meta = {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}
    finally:
        conn.close()
    assert meta["schema_version"] == SCHEMA_VERSION and meta["count"] == 60 and meta["embedding_dim"] == 32
    assert (meta["hnsw"]["M"], meta["hnsw"]["ef_construction"]) == (64, 400)
    assert set(meta["hnsw"]["ef"]) == {"caption", "audio"}
    assert meta["hnsw"]["mode"] == {"caption": "hnsw", "audio": "hnsw"}
    info = json.loads((root / INDEX_JSON).read_text())
    assert info["count"] == 60 and info["dim"] == 32 and info["fingerprint"] == "a" * 64
    assert info["files"]["caption"]["sha256"] == meta["index_sha256"]["caption"]
    assert info["files"]["caption"]["file"] == "caption.usearch"
    assert info["measured"]["caption"]["chosen"]["recall"] >= 0.99


def test_resumed_writer_skips_existing_ids_and_keeps_labels_dense(tmp_path):
    rows = make_rows(30, 16)
    with GalleryWriter.open(tmp_path / "g", fingerprint="f" * 64, dim=16, clip_format="ogg", sample_rate=SR) as w:
        assert w.add_batch(rows[:20]) == 20
    with GalleryWriter.open(tmp_path / "g", fingerprint="f" * 64, dim=16, clip_format="ogg", sample_rate=SR) as w:
        assert w.done_ids() == {r.id for r in rows[:20]}
        assert w.add_batch(rows[10:30] + rows[25:30]) == 10  # overlaps and in-batch repeats are skipped
        w.finish()
    with Gallery.open(tmp_path / "g") as g:
        assert len(g) == 30 and g.ids() == [r.id for r in rows]


def test_interrupted_batch_rolls_back_whole(tmp_path):
    rows = make_rows(10, 16)
    rows[7].caption_vector = np.zeros(15, dtype=np.float32)  # wrong width: fails mid-batch
    with GalleryWriter.open(tmp_path / "g", fingerprint="f" * 64, dim=16, clip_format="ogg", sample_rate=SR) as w:
        w.add_batch(rows[:5])
        with pytest.raises(GalleryError, match="width 15"):
            w.add_batch(rows[5:])
        assert w.count() == 5  # nothing of the failed batch was kept
    conn = sqlite3.connect(tmp_path / "g" / DB_NAME)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT count(*) FROM clips").fetchone()[0] == 5
    conn.close()


def test_empty_and_tiny_galleries(tmp_path):
    with GalleryWriter.open(tmp_path / "e", fingerprint="f" * 64, dim=8, clip_format="wav", sample_rate=SR) as w:
        w.finish()
    with Gallery.open(tmp_path / "e") as g:
        assert len(g) == 0 and g.search(np.ones(8), k=3) == []
    make_gallery(tmp_path / "t", n=3, dim=8)
    with Gallery.open(tmp_path / "t") as g:
        assert len(g.search(np.ones(8), k=10)) == 3  # k larger than the gallery gives all items


# ------------------------------------------------------------------------------------------------ device side


def _run_py(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_query_path_never_imports_torch_or_faiss(built):
    root, rows = built
    code = (
        "import sys, numpy as np\n"
        "from gallery.query import Gallery\n"
        f"g = Gallery.open({str(root)!r})\n"
        "hit = g.search(np.ones(32, dtype=np.float32), k=1)[0]\n"
        "assert 'usearch' in sys.modules and g.graph_kinds  # searched by the USearch graph\n"
        "data, fmt = g.clip(hit.id); g.decode_clip(hit.id)\n"
        "heavy = [m for m in ('torch', 'faiss', 'hnswlib', 'sqlite_utils', 'core.model', 'transformers',\n"
        "                     'gallery.tuning', 'gallery.store') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    res = _run_py(code)
    assert res.returncode == 0, res.stderr
    assert "HEAVY []" in res.stdout


def test_exact_fallback_without_usearch(built):
    root, rows = built
    code = (
        "import sys\nsys.modules['usearch'] = None  # as on a device without it\n"
        "import numpy as np\nfrom gallery.query import Gallery\n"
        f"g = Gallery.open({str(root)!r})\n"
        f"v = np.frombuffer(bytes.fromhex({rows[9].caption_vector.tobytes().hex()!r}), dtype=np.float32)\n"
        "print('EXACT', g.exact, g.search(v, k=1)[0].label)\n"
    )
    res = _run_py(code)
    assert res.returncode == 0, res.stderr
    assert "EXACT True 9" in res.stdout


# ------------------------------------------------------------------------------------------------ bad input


def _set_meta(root: Path, key: str, value) -> None:
    conn = sqlite3.connect(root / DB_NAME)
    with conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = ?", (json.dumps(value), key))
    conn.close()


def test_older_schema_version_is_refused(built, tmp_path):
    root, _ = fresh_copy(built, tmp_path)
    _set_meta(root, "schema_version", SCHEMA_VERSION - 1)
    with pytest.raises(GalleryError, match="schema version 0, this reader needs version 1"):
        Gallery.open(root)
    with pytest.raises(GalleryError, match="schema_version"):
        GalleryWriter.open(root, fingerprint="a" * 64, dim=32, clip_format="ogg", sample_rate=SR)


def test_gallery_of_another_model_is_refused(built, tmp_path):
    root, _ = built
    with pytest.raises(GalleryError, match="embedded by model aaaaaaaaaaaa, not the expected bbbbbbbbbbbb"):
        Gallery.open(root, expect_fingerprint="b" * 64)
    Gallery.open(root, expect_fingerprint="a" * 64).close()
    root2, _ = fresh_copy(built, tmp_path)
    for kwargs, what in [({"fingerprint": "b" * 64}, "model_fingerprint"), ({"dim": 16}, "embedding_dim"),
                         ({"clip_format": "wav"}, "clip_format"), ({"sample_rate": 16000}, "sample_rate")]:
        args = {"fingerprint": "a" * 64, "dim": 32, "clip_format": "ogg", "sample_rate": SR, **kwargs}
        with pytest.raises(GalleryError, match=what):
            GalleryWriter.open(root2, **args)


def test_index_that_does_not_match_its_db(built, tmp_path):
    root, rows = fresh_copy(built, tmp_path)
    other = tmp_path / "other"
    make_gallery(other, n=60, dim=32, seed=3, must_beat_exact=False)
    # same count and width, but another gallery's index file
    shutil.copy(other / "caption.usearch", root / "caption.usearch")
    with pytest.raises(GalleryError, match="caption.usearch does not match its gallery"):
        Gallery.open(root)
    Gallery.open(root, verify="header").close()  # a caller that verified the bytes already skips the hashing
    # another gallery's index.json (and files): its build id differs
    for name in ("caption.usearch", "audio.usearch", INDEX_JSON):
        shutil.copy(other / name, root / name)
    with pytest.raises(GalleryError, match="build_id"):
        Gallery.open(root)
    # an index.json whose count disagrees
    root2, _ = fresh_copy(built, tmp_path / "b")
    info = json.loads((root2 / INDEX_JSON).read_text())
    info["count"] = 59
    (root2 / INDEX_JSON).write_text(json.dumps(info))
    with pytest.raises(GalleryError, match="count is 59 in the index and 60 in the db"):
        Gallery.open(root2)
    (root2 / INDEX_JSON).unlink()
    with pytest.raises(GalleryError, match="no index.json: the build did not finish"):
        Gallery.open(root2)


def test_items_added_after_the_index_was_built(built, tmp_path):
    root, _ = fresh_copy(built, tmp_path)
    with GalleryWriter.open(root, fingerprint="a" * 64, dim=32, clip_format="ogg", sample_rate=SR) as w:
        w.add_batch(make_rows(5, 32, seed=9, start=100))
    with pytest.raises(GalleryError, match="did not finish"):
        Gallery.open(root)


def test_truncated_and_garbage_db(built, tmp_path):
    root, _ = fresh_copy(built, tmp_path)
    db = root / DB_NAME
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])
    with pytest.raises(GalleryError, match="truncated"):
        Gallery.open(root)
    db.write_bytes(data[:5000])  # not even a whole page
    with pytest.raises(GalleryError, match="truncated"):
        Gallery.open(root)
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(GalleryError, match="not a SQLite database"):
        Gallery.open(root)
    db.write_bytes(b"")
    with pytest.raises(GalleryError, match="not a SQLite database"):
        Gallery.open(root)
    db.unlink()
    with pytest.raises(GalleryError, match="gallery.db is missing"):
        Gallery.open(root)
    with pytest.raises(GalleryError, match="does not exist"):
        Gallery.open(tmp_path / "nowhere")


def test_every_damaged_page_gives_a_gallery_error_not_a_traceback(built, tmp_path):
    root, rows = built
    data = (root / DB_NAME).read_bytes()
    page = int.from_bytes(data[16:18], "big")
    rng = np.random.default_rng(0)
    caught = 0
    for p in range(len(data) // page):
        dst = tmp_path / f"p{p}"
        shutil.copytree(root, dst)
        damaged = bytearray(data)
        lo = p * page + (100 if p == 0 else 0)
        damaged[lo : (p + 1) * page] = rng.integers(0, 256, (p + 1) * page - lo, dtype=np.uint8).tobytes()
        (dst / DB_NAME).write_bytes(bytes(damaged))
        try:
            with Gallery.open(dst, verify="full") as g:
                g.search(rows[0].caption_vector, k=5, exact=True)
        except GalleryError:
            caught += 1
        shutil.rmtree(dst)
    assert caught == len(data) // page  # every damaged page is noticed by the full check, always as GalleryError


def test_corrupt_clip_is_caught(built, tmp_path):
    root, rows = fresh_copy(built, tmp_path)
    conn = sqlite3.connect(root / DB_NAME)
    with conn:
        conn.execute("UPDATE clips SET bytes = ? WHERE item_id = ?", (rows[1].clip[:-200], rows[1].id))
        bad = b"OggS" + b"\x00" * 3000  # right header, not a stream; checksum updated to match it
        conn.execute("UPDATE clips SET bytes = ?, sha256 = ? WHERE item_id = ?",
                     (bad, hashlib.sha256(bad).hexdigest(), rows[2].id))
    conn.close()
    with Gallery.open(root) as g:  # the quick check does not read clips
        with pytest.raises(GalleryError, match="checksum mismatch"):
            g.clip(rows[1].id)
        g.clip(rows[2].id)
        with pytest.raises(GalleryError, match="does not decode"):
            g.decode_clip(rows[2].id)
        g.decode_clip(rows[3].id)
    with pytest.raises(GalleryError, match="the clip of item .* (checksum mismatch|does not decode)"):
        Gallery.open(root, verify="full")
    with pytest.raises(GalleryError, match="not a valid ogg clip"):
        decode_clip(b"RIFF0000WAVEfmt ", "ogg")
    with pytest.raises(GalleryError, match="header announces nothing"):
        decode_clip(b"\x00" * 100)


def test_bad_queries(built):
    root, rows = built
    with Gallery.open(root) as g:
        with pytest.raises(GalleryError, match=r"shape \(Q, 32\)"):
            g.search(np.ones(16), k=1)
        with pytest.raises(GalleryError, match="NaN"):
            g.search(np.full(32, np.nan), k=1)
        with pytest.raises(GalleryError, match="all zeros"):
            g.search(np.zeros(32), k=1)
        with pytest.raises(GalleryError, match="k must be a positive integer"):
            g.search(np.ones(32), k=0)
        with pytest.raises(GalleryError, match="unknown embedding kind"):
            g.search(np.ones(32), kind="image")
        with pytest.raises(GalleryError, match="no item 'nope'"):
            g.item("nope")
        with pytest.raises(GalleryError, match="no item"):
            g.clip("nope")
    with pytest.raises(GalleryError, match="verify must be one of 'header', 'quick', 'full'"):
        Gallery.open(root, verify="deep")


def test_clip_compression_trades_size():
    rng = np.random.default_rng(0)
    wave = (0.2 * rng.normal(size=3 * SR)).astype(np.float32)  # noise: the hardest case for a codec
    small, large = encode_clip(wave, SR, "ogg", 0.9), encode_clip(wave, SR, "ogg", 0.1)
    assert len(small) < 0.8 * len(large)
    assert decode_clip(small, "ogg")[0].shape == wave.shape
    with pytest.raises(GalleryError, match=r"compression must be in \[0, 1\]"):
        encode_clip(wave, SR, "ogg", 1.5)


def test_bad_clip_waveforms():
    with pytest.raises(GalleryError, match="unknown clip format"):
        encode_clip(np.zeros(10), SR, "mp3")
    with pytest.raises(GalleryError, match="non-empty mono"):
        encode_clip(np.zeros((2, 10)), SR)
    with pytest.raises(GalleryError, match="NaN"):
        encode_clip(np.array([0.0, np.inf]), SR)


def test_writer_refuses_a_file_as_out_and_a_damaged_db(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(GalleryError, match="is a file"):
        GalleryWriter.open(f, fingerprint="a", dim=4, clip_format="ogg", sample_rate=SR)
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / DB_NAME).write_bytes(b"garbage" * 1000)
    with pytest.raises(GalleryError, match="not a SQLite database"):
        GalleryWriter.open(tmp_path / "g", fingerprint="a", dim=4, clip_format="ogg", sample_rate=SR)


def test_concurrent_searches_and_clip_reads_from_threads(built):
    from concurrent.futures import ThreadPoolExecutor

    root, rows = built
    with Gallery.open(root) as g:
        serial = [g.search(r.caption_vector, k=3)[0].id for r in rows]

        def work(i: int) -> tuple[str, int]:
            hit = g.search(rows[i].caption_vector, k=3)[0]
            return hit.id, len(g.clip(hit.id)[0])

        with ThreadPoolExecutor(4) as pool:
            out = list(pool.map(work, range(len(rows))))
    assert [o[0] for o in out] == serial and all(o[1] > 0 for o in out)
