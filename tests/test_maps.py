"""Soundscape maps: region grid, resumable and shardable tile-embedding cache, queries, scoring, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import save_untrained

from contracts.errors import CheckpointError, ConfigError, DataError
from core.checkpoint import load_checkpoint
from core.cli import main
from core.maps.grid import BBox, make_grid
from core.maps.query import audio_vector, text_vector
from core.maps.region import MetaOptions, embed_region, load_region, parse_shard
from core.maps.scoring import roc_auc, score_against_truth


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_cfg):
    return save_untrained(tmp_path_factory, tiny_cfg, "maps")


@pytest.mark.parametrize("text, message", [
    ("-90,40,-100,41", "min longitude"),
    ("-100,41,-90,40", "min latitude"),
    ("-190,40,-90,41", "longitudes"),
    ("-100,40,-90,95", "latitudes"),
    ("1,2,3", "4 numbers"),
    ("a,b,c,d", "4 numbers"),
])
def test_bad_bbox_is_refused(text, message):
    with pytest.raises(ConfigError, match=message):
        BBox.parse(text)


def test_grid_cells_are_about_square_and_ordered():
    grid = make_grid(BBox.parse("-125,24.5,-66.5,49.5"), 40)
    assert grid.cols == 40 and 20 <= grid.rows <= 23
    c = grid.centres()
    assert c.shape == (grid.size, 2)
    assert c[0, 0] > c[-1, 0] and c[0, 1] < c[-1, 1]  # north-west first, south-east last


def test_region_cache_resumes_shards_merge_and_refuses_other_checkpoints(ckpt, tmp_path, tiny_cfg):
    loaded = load_checkpoint(ckpt)
    grid = make_grid(BBox.parse("-95,40,-93,41"), 5)
    meta = MetaOptions(hour=8, month=6, audio_source="freesound")
    cache = tmp_path / "cache"
    # two shards into one folder: the first alone is incomplete, the second completes it
    assert embed_region(loaded, grid, 1, meta, cache, shard=(0, 2), chunk=4, workers=0, progress=False) is None
    full = embed_region(loaded, grid, 1, meta, cache, shard=(1, 2), chunk=4, workers=0, progress=False)
    assert full is not None and full.embeddings.shape == (grid.size, tiny_cfg.model.codebook.dim)
    assert np.allclose(np.linalg.norm(full.embeddings, axis=1), 1, atol=1e-5)
    assert np.allclose(full.fractions.sum(axis=1), 1, atol=1e-4)
    # an interrupted run: a chunk lost is recomputed, the rest reused, same numbers
    chunk = cache / "chunks" / "00001.npz"
    mtime = (cache / "chunks" / "00000.npz").stat().st_mtime_ns
    chunk.unlink()
    again = embed_region(loaded, grid, 1, meta, cache, chunk=4, workers=0, progress=False)
    assert np.allclose(again.embeddings, full.embeddings, atol=1e-6)
    assert (cache / "chunks" / "00000.npz").stat().st_mtime_ns == mtime
    # one process in one go gives the same region
    one = embed_region(loaded, grid, 1, meta, tmp_path / "one", chunk=4, workers=0, progress=False)
    assert np.allclose(one.embeddings, full.embeddings, atol=1e-5)
    # other settings or another checkpoint -> refused
    with pytest.raises(CheckpointError, match="other settings"):
        embed_region(loaded, grid, 3, meta, cache, chunk=4, workers=0, progress=False)
    spec = json.loads((cache / "region.json").read_text())
    spec["fingerprint"] = "f" * 64
    (cache / "region.json").write_text(json.dumps(spec))
    with pytest.raises(CheckpointError, match="another checkpoint"):
        embed_region(loaded, grid, 1, meta, cache, chunk=4, workers=0, progress=False)
    assert load_region(tmp_path / "one").embeddings.shape[0] == grid.size


def test_bad_options(ckpt):
    loaded = load_checkpoint(ckpt)
    with pytest.raises(ConfigError, match="empty"):
        text_vector(loaded, "   ")
    with pytest.raises(ConfigError, match="hour"):
        MetaOptions(hour=30)
    with pytest.raises(ConfigError, match="unknown audio source"):
        MetaOptions(audio_source="tiktok")
    with pytest.raises(ConfigError, match="i/n"):
        parse_shard("2of3")
    with pytest.raises(ConfigError, match="0 <= i < n"):
        parse_shard("3/3")


def test_undecodable_query_audio_is_a_clear_error(ckpt, tmp_path):
    bad = tmp_path / "noise.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    with pytest.raises(DataError, match="noise.wav"):
        audio_vector(load_checkpoint(ckpt), bad)
    with pytest.raises(DataError, match="query audio file not found.*missing.ogg"):
        audio_vector(load_checkpoint(ckpt), tmp_path / "missing.ogg")


def test_auc_and_truth_scoring_by_hand():
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    assert roc_auc(np.array([1.0, 1.0]), np.array([1, 0])) == pytest.approx(0.5)
    assert np.isnan(roc_auc(np.array([1.0, 2.0]), np.array([1, 1])))
    from world.cover_classes import CLASS_INDEX, FINE_CLASSES

    fr = np.zeros((3, len(FINE_CLASSES)), np.float32)
    fr[0, CLASS_INDEX["crop"]] = 1.0
    fr[1, CLASS_INDEX["forest"]] = 1.0
    fr[2, CLASS_INDEX["crop"]] = 0.5
    fr[2, CLASS_INDEX["urban"]] = 0.5
    r = score_against_truth(np.array([0.9, 0.1, 0.5]), fr, ["tractor"])
    assert r["positive_tiles"] == 2 and r["auc"] == pytest.approx(1.0) and r["spearman"] == pytest.approx(1.0)


def test_map_command_writes_png_scores_and_summary(ckpt, tmp_path, tiny_world):
    out = tmp_path / "maps"
    code = main(["map", "--ckpt", str(ckpt), "--bbox", "-95,40,-93,41", "--cols", "4", "--query",
                 "sounds of farm machinery", "--out", str(out), "--workers", "0", "--no-progress"])
    assert code == 0
    png = out / "map-sounds-of-farm-machinery-z1-95-40-93-41.png"
    assert png.stat().st_size > 10_000
    z = np.load(out / "map-sounds-of-farm-machinery-z1-95-40-93-41.npz")
    assert z["scores"].shape == (len(z["lats"]), len(z["lons"]))
    summary = json.loads(next(out.glob("summary-*.json")).read_text())
    assert summary["queries"][0]["sources"] == ["tractor"]
    # a second region mapped into the same folder keeps the first one's files
    assert main(["map", "--ckpt", str(ckpt), "--bbox", "-94,40,-93,41", "--cols", "2", "--query",
                 "sounds of farm machinery", "--out", str(out), "--workers", "0", "--no-progress"]) == 0
    assert png.is_file() and len(list(out.glob("map-*.png"))) == 2 and len(list(out.glob("summary-*.json"))) == 2
    assert main(["map", "--ckpt", str(ckpt), "--bbox", "-95,40,-93,41", "--query", " ", "--out", str(out)]) == 2
    assert main(["map", "--ckpt", str(ckpt), "--bbox", "-93,40,-95,41", "--query", "x", "--out", str(out)]) == 2
    shutil.rmtree(out)


def test_a_cache_kept_elsewhere_still_writes_the_maps_into_a_new_out_folder(ckpt, tmp_path, tiny_world):
    out = tmp_path / "new" / "maps"
    assert main(["map", "--ckpt", str(ckpt), "--bbox", "-95,40,-93,41", "--cols", "2", "--query", "birds",
                 "--cache", str(tmp_path / "cache"), "--out", str(out), "--workers", "0", "--no-progress"]) == 0
    assert len(list(out.glob("map-*.npz"))) == 1 and (tmp_path / "cache" / "chunks").is_dir()


def test_a_region_all_over_open_water_draws_a_map_without_land_scores(ckpt, tmp_path, tiny_world):
    out = tmp_path / "ocean"
    assert main(["map", "--ckpt", str(ckpt), "--bbox", "-150,10,-149,11", "--cols", "3", "--query",
                 "sounds of farm machinery", "--out", str(out), "--workers", "0", "--no-progress"]) == 0
    summary = json.loads(next(out.glob("summary-*.json")).read_text())
    assert "auc" not in summary["queries"][0] and Path(summary["queries"][0]["png"]).is_file()
