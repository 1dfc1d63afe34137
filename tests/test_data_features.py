"""FeatureTable: equals the dataset's batches, caches by fingerprint, subsets, random zoom and jitter."""

from __future__ import annotations

import logging
import os
from unittest import mock

import numpy as np
import pytest
import torch
from data_fixtures import GEOSOUND_SCHEMA, geosound_rows, write_geosound, write_shards, write_soundingearth

from contracts.errors import ConfigError, DataError
from core.config import ImageConfig, Sat2SoundConfig, get_preset
from core.data.dataset import collate, open_dataset
from core.data.features import FeatureTable
from core.data.rows import RowDecoder

torch.set_num_threads(1)
CFG = get_preset("tiny")


@pytest.fixture(scope="module")
def geo(tmp_path_factory):
    return write_geosound(tmp_path_factory.mktemp("geo"), {"train": 10, "validation": 5})


def _assert_batches_equal(a, b):
    assert set(a) == set(b)
    for key, value in a.items():
        if torch.is_tensor(value):
            assert value.dtype == b[key].dtype and value.shape == b[key].shape, key
            # mel is stored as float16 (0.06 dB steps at -100 dB); everything else is exact
            tol = 0.07 if key == "mel" else 1e-6
            assert torch.allclose(value.float(), b[key].float(), atol=tol, rtol=1e-3), key
        else:
            assert value == b[key], key


@pytest.mark.parametrize("zoom", [1, 3, 5])
def test_batch_equals_collate_of_dataset_items(geo, zoom):
    table = FeatureTable.build(geo, "validation", CFG, progress=False, workers=1)
    ds = open_dataset(geo, "validation", CFG, zoom=zoom)
    idx = [4, 0, 2]
    _assert_batches_equal(table.batch(idx, zoom=zoom), collate([ds[i] for i in idx]))


def test_table_shapes_and_text(geo):
    table = FeatureTable.build(geo, "train", CFG, progress=False)
    n, s = 10, CFG.image.image_size
    assert len(table) == n and table.zooms == (1, 3, 5) and table.gsd == 0.6 and table.kind == "geosound"
    assert table.array("images").shape == (n, 3, s, s, 3) and table.array("images").dtype == np.uint8
    assert table.array("mel").shape == (n, CFG.audio.n_frames, CFG.audio.n_mels)
    assert table.array("mel").dtype == np.float16
    assert table.sample_ids[:2] == ["train-0000", "train-0001"]
    assert table.image_captions(5)[3] == ""  # null caption -> ""
    assert table.extras[1]["gt_sources"] == ["birds", "traffic"]
    assert table.extras[1]["gt_levels_db"] == [0.0, pytest.approx(-4.44)]
    assert table.array("meta_mask").shape == (n, 5)


def test_cache_roundtrip_and_fingerprint(geo, tmp_path):
    cache = tmp_path / "cache"
    first = FeatureTable.build(geo, "train", CFG, cache_dir=cache, progress=False)
    folders = [p.name for p in cache.iterdir()]
    assert len(folders) == 1 and folders[0].startswith("train-")
    with mock.patch.object(RowDecoder, "tile", side_effect=AssertionError("decoded again")):
        second = FeatureTable.build(geo, "train", CFG, cache_dir=cache, progress=False)  # read, not decoded
    assert second.fingerprint == first.fingerprint
    assert isinstance(second._arrays["images"], np.memmap)  # memory-mapped from the cache folder
    assert second.folder == cache / folders[0] and first.folder == second.folder
    _assert_batches_equal(first.batch(range(10), zoom=3), second.batch(range(10), zoom=3))
    fresh = FeatureTable.build(geo, "train", CFG, progress=False)  # no cache: identical content
    assert fresh.folder is None
    _assert_batches_equal(fresh.batch(range(10), zoom=1), second.batch(range(10), zoom=1))
    # a config that changes the arrays gets its own entry; one that does not (jitter) shares it
    bigger = Sat2SoundConfig(name="t2", audio=CFG.audio, image=ImageConfig(image_size=16, patch_size=8))
    assert FeatureTable.build(geo, "train", bigger, cache_dir=cache, progress=False).fingerprint != first.fingerprint
    jit = Sat2SoundConfig(name="t3", audio=CFG.audio, image=ImageConfig(image_size=32, patch_size=8, colour_jitter=0.5))
    assert FeatureTable.build(geo, "train", jit, cache_dir=cache, progress=False).fingerprint == first.fingerprint
    assert len(list(cache.iterdir())) == 2
    # touching a data file invalidates the entry
    shard = sorted((geo / "data").glob("train-*.parquet"))[0]
    st = shard.stat()
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    try:
        assert FeatureTable.build(geo, "train", CFG, cache_dir=cache, progress=False).fingerprint != first.fingerprint
    finally:
        os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_corrupt_cache_is_rebuilt(geo, tmp_path, caplog):
    table = FeatureTable.build(geo, "validation", CFG, cache_dir=tmp_path, progress=False)
    folder = tmp_path / f"validation-{table.fingerprint[:20]}"
    (folder / "text.json").write_text("{not json")
    with pytest.raises(DataError, match="cached feature table is incomplete or corrupt"):
        FeatureTable.load(folder)
    with caplog.at_level(logging.WARNING, logger="core.data.features"):
        again = FeatureTable.build(geo, "validation", CFG, cache_dir=tmp_path, progress=False)
    assert "rebuilding the feature cache" in caplog.text
    _assert_batches_equal(again.batch(range(5)), table.batch(range(5)))


def test_subset_random_zoom_and_jitter(geo):
    table = FeatureTable.build(geo, "train", CFG, progress=False, workers=2)
    sub = table.subset([7, 2, 9])
    assert len(sub) == 3 and sub.sample_ids == ["train-0007", "train-0002", "train-0009"]
    b = sub.batch([0, 2], zoom=1)
    assert b["index"].tolist() == [7, 9] and b["sample_id"] == ["train-0007", "train-0009"]
    _assert_batches_equal(b, table.batch([7, 9], zoom=1))
    r = table.batch(range(10), zoom="random", rng=np.random.default_rng(0))
    assert set(r["zoom"].tolist()) <= {1, 3, 5} and len(set(r["zoom"].tolist())) > 1
    assert r["image_caption"][0] == f"bing zoom {r['zoom'][0].item()} place 0"
    for i, z in enumerate(r["zoom"].tolist()):
        assert torch.equal(r["image"][i], table.batch([i], zoom=z)["image"][0])
    again = table.batch(range(10), zoom="random", rng=np.random.default_rng(0))
    assert torch.equal(again["zoom"], r["zoom"])
    j1 = table.batch([0, 1], zoom=1, rng=np.random.default_rng(1), jitter=0.4)
    j2 = table.batch([0, 1], zoom=1, rng=np.random.default_rng(1), jitter=0.4)
    plain = table.batch([0, 1], zoom=1)
    assert torch.equal(j1["image"], j2["image"]) and not torch.allclose(j1["image"], plain["image"])
    # turns and mirrors: reproducible from the generator, the same pixels (only moved), some views changed
    f1 = table.batch(range(10), zoom=1, rng=np.random.default_rng(2), flip_rotate=True)
    f2 = table.batch(range(10), zoom=1, rng=np.random.default_rng(2), flip_rotate=True)
    base = table.batch(range(10), zoom=1)
    assert torch.equal(f1["image"], f2["image"])
    assert not torch.equal(f1["image"], base["image"])
    for a, b in zip(f1["image"], base["image"]):
        assert torch.equal(a.flatten(1).sort(dim=1).values, b.flatten(1).sort(dim=1).values)
        assert any(torch.equal(a, torch.rot90(v, k, dims=(1, 2))) for v in (b, b.flip(2)) for k in range(4))
    with pytest.raises(ConfigError):
        table.batch([0], zoom=2)
    with pytest.raises(IndexError):
        table.subset([10])
    batches = list(table.batches(4, zoom=1, shuffle=True, rng=np.random.default_rng(0)))
    assert [len(x["sample_id"]) for x in batches] == [4, 4, 2]
    assert sorted(sum((x["index"].tolist() for x in batches), [])) == list(range(10))
    assert [len(x["sample_id"]) for x in table.batches(4, drop_last=True)] == [4, 4]


def test_soundingearth_table(tmp_path):
    root = write_soundingearth(tmp_path / "se", "test", 3)
    table = FeatureTable.build(root, "test", CFG, progress=False)
    assert table.zooms == (1,) and table.imagery == "googleearth"
    ds = open_dataset(root, "test", CFG)
    _assert_batches_equal(table.batch([0, 1, 2]), collate([ds[i] for i in range(3)]))


def test_bad_row_stops_the_build_and_leaves_no_cache(geo, tmp_path):
    rows = geosound_rows("train", 4)
    rows[2]["audio_caption"] = ""
    write_shards(rows, tmp_path / "ds" / "data", "train", 1, GEOSOUND_SCHEMA)
    with pytest.raises(DataError, match=r"empty audio caption.*sample train-0002"):
        FeatureTable.build(tmp_path / "ds", "train", CFG, cache_dir=tmp_path / "cache", progress=False)
    assert not any((tmp_path / "cache").iterdir())
