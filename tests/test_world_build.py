"""The built world: GeoSound columns, decodable media, ground truth, geographic splits, determinism, reuse, errors,
the oracle ceiling, the contact sheet and the CLI."""

from __future__ import annotations

import hashlib
import io
import json
import re

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from PIL import Image

from contracts.errors import ConfigError, DataError
from contracts.schema import AUDIO_SOURCES, CAPTION_SOURCES, SPLITS
from world.build import build_world, make_sample, world_is_complete
from world.caption_reading import caption_sources
from world.cover_classes import FINE_CLASSES
from world.locations import cell_of
from world.oracle import caption_oracle_r10, oracle_r10, oracle_scores
from world.shards import read_split, read_world_json, shard_paths
from world.sources import SOURCES

COLUMNS = ["sample_id", "source", "audio", "bingmap_image", "audio_caption", "audio_caption_source",
           "llava_caption_bingmap_zl1", "llava_caption_bingmap_zl3", "llava_caption_bingmap_zl5", "latitude",
           "longitude", "date", "description", "tags", "title", "gt_present", "gt_plausible", "gt_plausible_zl1",
           "gt_plausible_zl3", "gt_plausible_zl5", "gt_cover_fractions"]


def _rows(world) -> list[dict]:
    return [r for s in SPLITS for r in read_split(world, s).to_pylist()]


def test_layout_and_columns(tiny_world, tiny_cfg):
    names = sorted(p.name for p in shard_paths(tiny_world))
    assert names and all(re.fullmatch(r"(train|validation|test)-\d{5}-of-\d{5}\.parquet", n) for n in names)
    schema = pq.read_schema(shard_paths(tiny_world)[0])
    assert set(COLUMNS) <= set(schema.names)
    assert schema.field("audio").type.names == ["bytes", "path"]
    assert str(schema.field("latitude").type) == "double"
    assert str(schema.field("gt_cover_fractions").type.value_type) == "float"
    meta = read_world_json(tiny_world)
    assert sum(meta["counts"].values()) == tiny_cfg.world.n_samples == 96
    assert all(meta["counts"][s] > 0 for s in SPLITS)
    assert meta["fine_classes"] == list(FINE_CLASSES) and meta["sources"] == list(SOURCES)
    assert meta["seed"] == tiny_cfg.world.seed and "public domain" in meta["licence"]["land_cover"]
    assert world_is_complete(tiny_world)


def test_rows_are_consistent(tiny_world, tiny_cfg):
    rows = _rows(tiny_world)
    assert len({r["sample_id"] for r in rows}) == len(rows) == 96
    for r in rows[:: 7]:
        wave, sr = sf.read(io.BytesIO(r["audio"]["bytes"]), dtype="float32")
        assert sr == tiny_cfg.audio.sample_rate and wave.shape == (tiny_cfg.audio.n_samples,)
        assert 0.0 < float(np.abs(wave).max()) <= 1.1 and r["audio"]["path"].endswith(".ogg")  # lossy overshoot
        img = Image.open(io.BytesIO(r["bingmap_image"]["bytes"]))
        assert img.format == "JPEG" and img.size == (tiny_cfg.world.tile_px,) * 2
    for r in rows:
        assert r["source"] in AUDIO_SOURCES and r["audio_caption_source"] in CAPTION_SOURCES
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", r["date"])
        assert -90 <= r["latitude"] <= 90 and -180 <= r["longitude"] <= 180
        assert 1 <= len(r["gt_present"]) <= 4 and set(r["gt_present"]) <= set(r["gt_plausible"])
        assert len(r["gt_cover_fractions"]) == len(FINE_CLASSES)
        assert abs(sum(r["gt_cover_fractions"]) - 1.0) < 1e-4
        assert all(r[f"llava_caption_bingmap_zl{z}"] for z in (1, 3, 5)) and r["audio_caption"] and r["title"]
    # zoom 1 sees less ground than zoom 5, so it cannot imply more sources on average
    assert np.mean([len(r["gt_plausible_zl1"]) for r in rows]) <= np.mean([len(r["gt_plausible_zl5"]) for r in rows])
    # one-to-many: clips hold fewer sources than the place offers
    assert np.mean([len(r["gt_present"]) for r in rows]) < np.mean([len(r["gt_plausible"]) for r in rows])
    assert len({r["source"] for r in rows}) == 4 and len({r["audio_caption_source"] for r in rows}) == 3


def test_splits_are_disjoint_by_cell(tiny_world, tiny_cfg):
    cells = {}
    for split in SPLITS:
        t = read_split(tiny_world, split, columns=["latitude", "longitude"]).to_pydict()
        cells[split] = {cell_of(a, b, tiny_cfg.world.cell_deg) for a, b in zip(t["latitude"], t["longitude"])}
    assert not (cells["train"] & cells["validation"]) and not (cells["train"] & cells["test"])
    assert not (cells["validation"] & cells["test"])


def test_same_seed_same_bytes_whatever_the_workers(tmp_path, tiny_cfg, tiny_world):
    a = build_world(tiny_cfg, tmp_path / "a", n_samples=16, workers=1, progress=False)
    b = build_world(tiny_cfg, tmp_path / "b", n_samples=16, workers=2, progress=False)

    def digests(d):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in shard_paths(d)}

    assert digests(a) == digests(b) and read_world_json(a)["fingerprint"] == read_world_json(b)["fingerprint"]
    # a sample is a function of (seed, index) only: the same in a smaller and a larger world
    small = {r["sample_id"]: r for r in _rows(a)}
    big = {r["sample_id"]: r for r in _rows(tiny_world)}
    sid = sorted(small)[3]
    assert small[sid]["audio"]["bytes"] == big[sid]["audio"]["bytes"]
    assert small[sid]["llava_caption_bingmap_zl5"] == big[sid]["llava_caption_bingmap_zl5"]
    c = build_world(tiny_cfg, tmp_path / "c", n_samples=16, seed=7, workers=1, progress=False)
    assert read_world_json(c)["fingerprint"] != read_world_json(a)["fingerprint"]


def test_complete_world_is_reused_and_mismatches_refused(tmp_path, tiny_cfg):
    out = build_world(tiny_cfg, tmp_path / "w", n_samples=4, workers=1, progress=False)
    stamp = (out / "world.json").stat().st_mtime_ns
    assert build_world(tiny_cfg, out, n_samples=4, workers=1, progress=False) == out
    assert (out / "world.json").stat().st_mtime_ns == stamp
    with pytest.raises(DataError, match="different or incomplete"):
        build_world(tiny_cfg, out, n_samples=5, workers=1, progress=False)
    shard = shard_paths(out)[0]
    shard.write_bytes(shard.read_bytes()[:-10])  # a damaged shard is not a complete world
    assert not world_is_complete(out)
    assert not list(tmp_path.glob(".w.tmp-*")) and not list(tmp_path.glob("w.tmp-*"))  # temporary folders are gone


def test_bad_inputs(tmp_path, tiny_cfg):
    with pytest.raises(ConfigError):
        build_world(tiny_cfg, tmp_path / "x", n_samples=0, progress=False)
    with pytest.raises(ConfigError):
        build_world(tiny_cfg, tmp_path / "x", n_samples=4, workers=0, progress=False)
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a folder")
    with pytest.raises(DataError, match="is a file"):
        build_world(tiny_cfg, a_file, n_samples=2, progress=False)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("user data")
    with pytest.raises(DataError, match="not empty"):
        build_world(tiny_cfg, busy, n_samples=2, progress=False)
    with pytest.raises(DataError):
        read_split(tmp_path, "test")


def test_make_sample_matches_the_stored_row(tiny_world, tiny_cfg):
    from world.build import _Context

    row = read_split(tiny_world, "test").to_pylist()[0]
    index = int(row["sample_id"].rsplit("_", 1)[1])
    ctx = _Context(seed=tiny_cfg.world.seed, tile_px=tiny_cfg.world.tile_px, ground_m=tiny_cfg.world.tile_ground_m,
                   sample_rate=tiny_cfg.audio.sample_rate, seconds=tiny_cfg.audio.clip_seconds, audio_format="ogg",
                   jpeg_quality=tiny_cfg.world.jpeg_quality)
    again = make_sample(ctx, index, row["latitude"], row["longitude"], row["gt_region"])
    assert again["audio"]["bytes"] == row["audio"]["bytes"] and again["gt_present"] == row["gt_present"]


def test_oracle_by_hand():
    perfect = oracle_scores([["owl"], ["train"], ["surf"]], [["owl"], ["train"], ["surf"]])
    assert perfect["i2a"]["r1"] == 1.0 and perfect["i2a"]["median_rank"] == 1.0
    tied = oracle_scores([["birdsong"]] * 4, [["birdsong"]] * 4)  # all identical: average rank (1+4)/2
    assert tied["i2a"]["median_rank"] == 2.5 and tied["i2a"]["r10"] == 0.0
    with pytest.raises(DataError):
        oracle_scores([], [])


def test_oracle_is_honestly_hard(tiny_world):
    report = oracle_r10(tiny_world, split="train")  # the tiny test split has 9 clips: too few for R@10%
    assert report["n"] > 50 and 0.2 <= report["r10"] <= 0.95
    assert report["chance_r10"] == 0.1


def test_contact_sheet_and_cli(tiny_world, tmp_path):
    from core.cli import main

    png = tmp_path / "sheet.png"
    assert main(["data", "sheet", str(tiny_world), "--out", str(png), "--n", "6"]) == 0
    img = Image.open(png)
    assert img.size[0] > 600 and img.size[1] > 400
    clips = list((tmp_path / "sheet_clips").glob("*.wav"))
    assert clips and sf.info(str(clips[0])).duration > 0
    assert main(["data", "oracle", str(tiny_world), "--split", "train", "--json"]) == 0
    assert main(["data", "build", "--preset", "no-such-preset", "--out", str(tmp_path / "w")]) == 2
    assert main(["data", "oracle", str(tmp_path / "nowhere")]) == 2
    assert main(["data", "build", "--preset", "tiny", "--out", str(tmp_path / "w"), "--n-samples", "0"]) == 2
    assert json.loads((tiny_world / "world.json").read_text())["kind"] == "sat2sound-world"


def test_caption_sources_are_read_back_from_generated_captions(tiny_world):
    assert caption_sources("we can expect to hear car horns honking and birds chirping.") == ["birdsong", "horns"]
    assert caption_sources("") == [] and caption_sources("nothing to hear") == []
    from world.shards import read_split

    cols = read_split(tiny_world, "train", columns=["llava_caption_bingmap_zl5", "gt_plausible_zl5"]).to_pydict()
    inside = []
    for caption, plausible in zip(cols["llava_caption_bingmap_zl5"], cols["gt_plausible_zl5"]):
        named = caption_sources(caption)
        assert named, caption  # every generated caption names at least one source the parser recognises
        inside.append(len(set(named) & set(plausible)) / len(named))
    # captions list sources above a lower weight than gt_plausible's, so most (not all) named ones are plausible
    assert np.mean(inside) > 0.7
    report = caption_oracle_r10(tiny_world, split="train")
    assert set(report) == {1, 3, 5} and all(0.0 < r["r10"] <= 1.0 for r in report.values())
