"""Gallery building end to end with a real (tiny, untrained) teacher checkpoint: import and procedural renderers,
resumable builds, the CLI, and the build-side bad inputs."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from contracts.errors import DataError
from core.cli import main as cli_main
from gallery.build import build_gallery
from gallery.captions import read_captions
from gallery.errors import GalleryError
from gallery.layout import DB_NAME
from gallery.query import Gallery
from gallery.renderers import ImportRenderer, get_renderer

CAPTIONS = [
    "birds chirping in a quiet forest", "heavy traffic on a city highway", "waves breaking on a sandy beach",
    "a church bell rings over the village", "crickets and frogs at night near a pond", "a train passes a crossing",
    "wind rustling leaves in the park", "tractor engine in a farm field", "children playing in a schoolyard",
    "rain falling on a tin roof",
]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    import torch

    from core.checkpoint import save_checkpoint
    from core.config import get_preset
    from core.model import build_model

    torch.manual_seed(0)
    cfg = get_preset("tiny")
    out = tmp_path_factory.mktemp("ckpt") / "teacher"
    save_checkpoint(build_model(cfg), cfg, out)
    return out


@pytest.fixture(scope="module")
def embedder(ckpt):
    from gallery.embedder import TeacherEmbedder

    return TeacherEmbedder(ckpt, threads=1)


@pytest.fixture(scope="module")
def clip_csv(tmp_path_factory) -> Path:
    """Ten 'imported' clips (as TangoFlux would hand them over: 22.05 kHz stereo WAV) and their mapping CSV."""
    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    lines = ["id,caption,audio_path"]
    for i, cap in enumerate(CAPTIONS):
        t = np.arange(int(0.8 * 22050)) / 22050
        left = 0.3 * np.sin(2 * np.pi * (150 + 90 * i) * t) + 0.05 * rng.normal(size=t.size)
        sf.write(root / f"clip{i}.wav", np.stack([left, left * 0.5], axis=1), 22050)
        lines.append(f"tf{i},{cap},clip{i}.wav")
    (root / "clips.csv").write_text("\n".join(lines) + "\n")
    return root / "clips.csv"


def test_embedder_gives_unit_vectors_of_the_model_width(embedder):
    v = embedder.embed_texts(CAPTIONS[:3])
    assert v.shape == (3, 32) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert np.allclose(embedder.embed_texts(CAPTIONS[:1])[0], v[0], atol=1e-6)  # batch-independent
    wave = np.sin(np.arange(4000) / 3.0).astype(np.float32) * 0.2
    a = embedder.embed_audio([wave, wave[:1000]])
    assert a.shape == (2, 32) and np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    # resampling path: the same tone given at 16 kHz is embedded after resampling to the model's 8 kHz
    up = np.sin(np.arange(8000) / 6.0).astype(np.float32) * 0.2
    assert np.allclose(embedder.embed_audio([up], sample_rate=16000)[0], a[0], atol=0.05)
    with pytest.raises(DataError):
        embedder.embed_texts(["  "])
    with pytest.raises(DataError):
        embedder.embed_audio([np.zeros((2, 10), dtype=np.float32)])


def test_import_build_stores_clips_vectors_and_provenance(tmp_path, embedder, clip_csv):
    records = read_captions(clip_csv, need_audio=True)
    renderer = ImportRenderer(seconds=10.0, sample_rate=embedder.sample_rate)
    report = build_gallery(records, tmp_path / "g", embedder, renderer, batch_size=4, progress=False)
    assert (report.count, report.added, report.already, report.finished) == (10, 10, 0, True)
    with Gallery.open(tmp_path / "g", expect_fingerprint=embedder.fingerprint, verify="full") as g:
        assert len(g) == 10 and g.dim == 32 and g.meta["renderer"] == "import"
        item = g.item(records[3].id)
        assert item.caption == CAPTIONS[3] and item.provenance == [{"row": 5, "id": "tf3"}]
        assert item.sample_rate == 8000 and item.seconds == pytest.approx(0.8, abs=0.01)
        wave, sr = g.decode_clip(records[3].id)
        assert sr == 8000 and abs(len(wave) - 6400) <= 2
        # the stored caption vector is the embedder's vector for that caption: text search finds it exactly
        hit = g.search(embedder.embed_texts([CAPTIONS[3]])[0], k=1)[0]
        assert hit.id == records[3].id and hit.score == pytest.approx(1.0, abs=1e-5)
        # and its audio vector is the embedding of the decoded clip
        hit = g.search(embedder.embed_audio([wave])[0], k=1, kind="audio")[0]
        assert hit.id == records[3].id and hit.score == pytest.approx(1.0, abs=1e-4)
    conn = sqlite3.connect(tmp_path / "g" / DB_NAME)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def test_interrupted_build_resumes_without_duplicates(tmp_path, embedder, clip_csv):
    records = read_captions(clip_csv, need_audio=True)
    renderer = ImportRenderer(seconds=10.0, sample_rate=embedder.sample_rate)

    def ctrl_c_after_second_batch(b: int) -> None:
        if b == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_gallery(records, tmp_path / "g", embedder, renderer, batch_size=4, progress=False,
                      on_batch=ctrl_c_after_second_batch)
    with pytest.raises(GalleryError, match="did not finish"):
        Gallery.open(tmp_path / "g")
    conn = sqlite3.connect(tmp_path / "g" / DB_NAME)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 8  # two whole batches, nothing partial
    conn.close()
    # a renderer failing in the middle of the third batch keeps the database at whole batches too
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wav")
    records_bad = [*records[:9], records[9].__class__(**{**records[9].__dict__, "audio_path": broken})]
    with pytest.raises(DataError, match=r"cannot decode audio.*broken.wav"):
        build_gallery(records_bad, tmp_path / "g", embedder, renderer, batch_size=4, progress=False)
    # the rerun continues where it stopped
    report = build_gallery(records, tmp_path / "g", embedder, renderer, batch_size=4, progress=False)
    assert (report.already, report.added, report.count) == (8, 2, 10)
    uninterrupted = build_gallery(records, tmp_path / "u", embedder, renderer, batch_size=4, progress=False)
    with Gallery.open(tmp_path / "g") as g, Gallery.open(tmp_path / "u") as u:
        assert g.ids() == u.ids() == [r.id for r in records]
        for kind in ("caption", "audio"):
            assert np.allclose(g.vectors(kind)[0], u.vectors(kind)[0], atol=1e-6)
    # a third run has nothing to do and changes nothing
    again = build_gallery(records, tmp_path / "g", embedder, renderer, batch_size=4, progress=False)
    assert (again.added, again.count) == (0, 10) and uninterrupted.count == 10


def test_stopping_early_leaves_a_resumable_gallery(tmp_path, embedder, clip_csv):
    records = read_captions(clip_csv, need_audio=True)
    renderer = ImportRenderer(seconds=10.0, sample_rate=embedder.sample_rate)
    first = build_gallery(records, tmp_path / "g", embedder, renderer, batch_size=3, progress=False, max_batches=2)
    assert (first.finished, first.count) == (False, 6) and "rerun" in first.summary()
    assert build_gallery(records, tmp_path / "g", embedder, renderer, batch_size=3, progress=False).count == 10


def test_a_gallery_of_another_model_is_not_resumed(tmp_path, embedder, clip_csv):
    records = read_captions(clip_csv, need_audio=True)[:2]
    renderer = ImportRenderer(seconds=10.0, sample_rate=embedder.sample_rate)
    build_gallery(records, tmp_path / "g", embedder, renderer, progress=False)

    class OtherModel:  # a second real embedding model would do the same; only the fingerprint matters here
        fingerprint, dim, sample_rate = "0" * 64, embedder.dim, embedder.sample_rate

    with pytest.raises(GalleryError, match="model_fingerprint"):
        build_gallery(records, tmp_path / "g", OtherModel(), renderer, progress=False)
    with pytest.raises(GalleryError, match="clip_format"):
        build_gallery(records, tmp_path / "g", embedder, renderer, progress=False, clip_format="flac")


def test_import_renderer_names_missing_files_before_any_work(tmp_path, embedder, clip_csv):
    records = read_captions(clip_csv, need_audio=True)
    records[4].audio_path = tmp_path / "gone.wav"
    with pytest.raises(DataError, match=r"gone.wav does not exist.*clips.csv:6"):
        build_gallery(records, tmp_path / "g", embedder, ImportRenderer(10.0, 8000), progress=False)
    assert not (tmp_path / "g").exists()
    with pytest.raises(GalleryError, match="unknown renderer"):
        get_renderer("tangoflux", seconds=1.0, sample_rate=8000)


def test_cli_build_query_info(tmp_path, ckpt, clip_csv, capsys):
    out = tmp_path / "g"
    assert cli_main(["gallery", "build", "--ckpt", str(ckpt), "--captions", str(clip_csv), "--renderer", "import",
                     "--out", str(out), "--batch-size", "4", "--threads", "1", "--clip-format", "flac",
                     "--no-progress"]) == 0
    assert "10 items (10 new" in capsys.readouterr().out
    assert cli_main(["gallery", "query", str(out), "--text", CAPTIONS[2], "--k", "3",
                     "--play-out", str(tmp_path / "top")]) == 0
    text = capsys.readouterr().out
    first = text.splitlines()[1]
    assert "1.000" in first and CAPTIONS[2] in first
    assert (tmp_path / "top.flac").read_bytes()[:4] == b"fLaC"
    assert cli_main(["gallery", "query", str(out), "--audio", str(clip_csv.parent / "clip7.wav"), "--kind", "audio",
                     "--k", "2", "--json", "--exact"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["caption"] == CAPTIONS[7] and hits[0]["score"] > 0.99
    assert cli_main(["gallery", "info", str(out), "--verify"]) == 0
    assert "10 items" in capsys.readouterr().out
    # the index library is a choice; reindexing keeps the db and rebuilds only the index, tuned with the model
    assert cli_main(["gallery", "reindex", str(out), "--index", "hnswlib", "--threads", "1"]) == 0
    assert "index hnswlib f32" in capsys.readouterr().out
    info = json.loads((out / "index.json").read_text())
    assert info["params"]["index"] == "hnswlib" and set(info["measured"]["caption"]["queries"]) == {"text",
                                                                                                    "other-kind"}
    # a place of the embedded world: its tile is rendered and embedded with the metadata given
    assert cli_main(["gallery", "query", str(out), "--at=-33.9,18.4", "--zoom", "3", "--hour", "6", "--month", "5",
                     "--audio-source", "aporee", "--k", "2"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
    # one clear line and exit 2 for user errors
    assert cli_main(["gallery", "query", str(tmp_path / "nope"), "--text", "x"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli_main(["gallery", "query", str(out), "--at", "95,10"]) == 2
    assert "not a place on Earth" in capsys.readouterr().err
    assert cli_main(["gallery", "query", str(out), "--at", "north"]) == 2
    assert "--at wants LAT,LON" in capsys.readouterr().err
    assert cli_main(["gallery", "query", str(out), "--at", "10,10", "--zoom", "2"]) == 2
    assert "zoom 2 is not one of 1, 3, 5" in capsys.readouterr().err
    assert cli_main(["gallery", "query", str(out), "--at", "10,10", "--audio-source", "radio"]) == 2
    assert "unknown audio source" in capsys.readouterr().err
    # the query model must be the model that embedded the gallery
    import torch

    from core.checkpoint import save_checkpoint
    from core.config import get_preset
    from core.model import build_model

    torch.manual_seed(1)
    save_checkpoint(build_model(get_preset("tiny")), get_preset("tiny"), tmp_path / "other")
    assert cli_main(["gallery", "query", str(out), "--text", "x", "--ckpt", str(tmp_path / "other")]) == 2
    assert "is not the model that embedded" in capsys.readouterr().err
    assert cli_main(["gallery", "build", "--ckpt", str(ckpt), "--captions", str(clip_csv), "--out", str(out),
                     "--renderer", "import", "--clip-format", "ogg", "--no-progress"]) == 2
    assert "clip_format" in capsys.readouterr().err


def test_procedural_build_is_deterministic_and_worker_count_free(tmp_path, embedder):
    from world.sources import sources_in_text

    caps = tmp_path / "caps.txt"
    caps.write_text("\n".join([*CAPTIONS[:5], "a quiet empty place", "birds chirping in a quiet forest"]) + "\n")
    records = read_captions(caps)
    assert len(records) == 6  # the repeated caption is one item
    renderer = get_renderer("procedural", seconds=1.0, sample_rate=embedder.sample_rate)
    one = build_gallery(records, tmp_path / "w1", embedder, renderer, batch_size=2, workers=1, progress=False)
    two = build_gallery(records, tmp_path / "w2", embedder, renderer, batch_size=2, workers=2, progress=False)
    assert one.count == two.count == 6
    with Gallery.open(tmp_path / "w1", verify="full") as g1, Gallery.open(tmp_path / "w2") as g2:
        assert g1.meta["renderer"] == "procedural" and g1.meta["seconds"] == 1.0
        for rec in records:
            item = g1.item(rec.id)
            assert list(item.sources) == sources_in_text(rec.caption)
            assert item.seconds == pytest.approx(1.0) and item.clip_format == "ogg"
            w1, sr = g1.decode_clip(rec.id)
            w2, _ = g2.decode_clip(rec.id)
            assert sr == 8000 and np.array_equal(w1, w2)  # same caption -> same clip, whatever the worker count
            assert np.all(np.isfinite(w1)) and np.abs(w1).max() <= 1.0
        assert np.allclose(g1.vectors("audio")[0], g2.vectors("audio")[0], atol=1e-6)
        empty = g1.item(records[4].id if records[4].caption == "a quiet empty place" else records[5].id)
        assert empty.sources == ()  # names no source: the quiet noise floor alone


def test_gallery_from_the_embedded_world(tmp_path, embedder, tiny_world):
    """The default path: the world dataset's LLaVA-style captions of all zooms, rendered procedurally."""
    from world.sources import sources_in_text

    records = read_captions(tiny_world, splits=("test",))
    assert records and all(p["split"] == "test" for r in records for p in r.provenance)
    assert {p["zoom"] for r in records for p in r.provenance} <= {1, 3, 5}
    renderer = get_renderer("procedural", seconds=1.0, sample_rate=embedder.sample_rate)
    report = build_gallery(records[:8], tmp_path / "g", embedder, renderer, batch_size=4, progress=False)
    assert report.count == 8
    # the index was tuned with queries like the app's and the CLI's: places (tiles at the items' coordinates) and
    # text fragments of the captions, beside the gallery's own other-kind vectors
    assert report.index["measured"]["caption"]["queries"] == {"text": 8, "place": 8, "other-kind": 8}
    with Gallery.open(tmp_path / "g") as g:
        for rec in records[:8]:
            item = g.item(rec.id)
            assert item.provenance == rec.provenance and item.split == "test"
            assert (item.lat, item.lon, item.zoom) == (rec.first["lat"], rec.first["lon"], rec.first["zoom"])
            assert list(item.sources) == sources_in_text(rec.caption)
        # image captions name what one could hear there, so most clips play at least one source
        assert sum(bool(g.item(r.id).sources) for r in records[:8]) >= 6
