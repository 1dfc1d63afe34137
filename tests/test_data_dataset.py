"""The one loader: items and batches from GeoSound shards, SoundingEarth and save_to_disk, zoom choice, training
randomness, shipped mel features, and every bad input a dataset folder can hold."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from data_fixtures import (
    DATE_FIELDS,
    GEOSOUND_SCHEMA,
    geosound_rows,
    tile_array,
    write_geosound,
    write_save_to_disk,
    write_shards,
    write_soundingearth,
)
from torch.utils.data import DataLoader

from contracts.errors import ConfigError, DataError
from contracts.image_prep import decode_image, normalise, prepare_tile
from core.config import get_preset
from core.data.audio_io import load_clip
from core.data.dataset import RowGroupSampler, collate, open_dataset
from core.data.logmel_numpy import log_mel_numpy

torch.set_num_threads(1)
CFG = get_preset("tiny")
S, T, F = CFG.image.image_size, CFG.audio.n_frames, CFG.audio.n_mels


@pytest.fixture(scope="module")
def geo(tmp_path_factory):
    return write_geosound(tmp_path_factory.mktemp("geo"), {"train": 8, "validation": 6})


def test_item_fields_and_values(geo):
    ds = open_dataset(geo, "validation", CFG, zoom=3)
    assert (len(ds), ds.kind, ds.imagery, ds.gsd, ds.zooms, ds.split) == (6, "geosound", "bingmap", 0.6, (1, 3, 5),
                                                                          "validation")
    item = ds[1]
    assert item["sample_id"] == "validation-0001" and item["index"] == 1
    assert item["image"].shape == (3, S, S) and item["image"].dtype == torch.float32
    assert item["mel"].shape == (T, F) and item["mel"].dtype == torch.float32
    assert (item["zoom"], item["gsd"]) == (3, 0.6)
    assert item["audio_caption"] == "sample 1: birds singing over distant traffic"
    assert item["image_caption"] == "bing zoom 3 place 1"
    assert (item["lat"], item["lon"]) == (-52.5, -149.0)
    assert (item["month"], item["hour"]) == (12.0, 0.0)  # "2020-12-01": month, no hour
    assert (item["audio_source"], item["caption_source"]) == (1, 1)  # iNat, qwen
    assert item["meta_mask"].tolist() == [1, 1, 0, 1, 1]
    assert item["extra"] == {"description": "recording 1", "tags": "birds,wind", "title": "title 1",
                             "gt_sources": ["birds", "traffic"], "gt_landcover": 1,
                             "gt_levels_db": [0.0, pytest.approx(-4.44)]}
    assert isinstance(item["extra"]["gt_levels_db"], list)  # plain values, like the FeatureTable's
    # the image is exactly: decode -> centre crop zoom 3 -> bicubic resize -> normalise
    raw = ds.reader.row(1, ["bingmap_image", "audio"])
    view = prepare_tile(decode_image(raw["bingmap_image"]["bytes"]), 3, S)
    assert np.array_equal(item["image"].numpy(), normalise(view, CFG.image.mean, CFG.image.std))
    # the mel is exactly: decode -> resample 16k->8k -> centre window / pad -> numpy log-mel
    wave = load_clip(raw["audio"]["bytes"], CFG.audio)
    assert np.array_equal(item["mel"].numpy(), log_mel_numpy(wave, CFG.audio))


def test_metadata_masks_across_rows(geo):
    ds = open_dataset(geo, "validation", CFG)
    for i in range(len(ds)):
        item = ds[i]
        month, hour = DATE_FIELDS[i % len(DATE_FIELDS)]
        assert item["meta_mask"][1].item() == (month is not None) and item["month"] == (month or 0)
        assert item["meta_mask"][2].item() == (hour is not None) and item["hour"] == (hour or 0)
    assert ds[4]["meta_mask"][3].item() == 0  # null source
    assert ds[3]["meta_mask"][4].item() == 0  # null caption source
    assert ds[5]["audio_source"] == 0  # "Flickr" is yfcc


def test_zoom_choices(geo):
    ds = open_dataset(geo, "validation", CFG, zoom=1)
    z1, z5 = ds[0]["image"], open_dataset(geo, "validation", CFG, zoom=5)[0]["image"]
    assert not torch.allclose(z1, z5)
    rnd = open_dataset(geo, "train", CFG, zoom="random", seed=3)
    zooms = [rnd[i]["zoom"] for i in range(len(rnd))]
    assert set(zooms) <= {1, 3, 5} and len(set(zooms)) > 1
    assert zooms == [open_dataset(geo, "train", CFG, zoom="random", seed=3)[i]["zoom"] for i in range(len(rnd))]
    item = rnd[0]
    assert item["image_caption"] == f"bing zoom {item['zoom']} place 0"
    for bad in (2, "big", 1.5, True):
        with pytest.raises(ConfigError, match="zoom must be one of"):
            open_dataset(geo, "train", CFG, zoom=bad)


def test_training_randomness_is_seeded_by_epoch(geo):
    ds = open_dataset(geo, "train", CFG, train=True, seed=0)
    assert ds.jitter == CFG.image.colour_jitter
    a = ds[0]
    assert torch.equal(a["image"], ds[0]["image"]) and torch.equal(a["mel"], ds[0]["mel"])
    ds.set_epoch(1)
    b = ds[0]
    assert not torch.equal(a["image"], b["image"])  # jitter redrawn
    assert not torch.equal(a["mel"], b["mel"])  # 3 s clip: another 2 s window
    ev = open_dataset(geo, "train", CFG)
    assert ev.jitter == 0 and torch.equal(ev[0]["mel"], open_dataset(geo, "train", CFG)[0]["mel"])
    # turns and mirrors in training only: without jitter, a training item is a turned/mirrored evaluation item
    assert CFG.image.flip_rotate
    plain = ev[0]["image"]
    turned = [open_dataset(geo, "train", CFG, train=True, jitter=0.0, seed=s)[0]["image"] for s in range(8)]
    for img in turned:
        assert any(torch.equal(img, torch.rot90(v, k, dims=(1, 2))) for v in (plain, plain.flip(2)) for k in range(4))
    assert any(not torch.equal(img, plain) for img in turned)


def test_collate_and_dataloader(geo):
    ds = open_dataset(geo, "train", CFG, zoom="random")
    batch = collate([ds[i] for i in range(3)])
    assert batch["image"].shape == (3, 3, S, S) and batch["mel"].shape == (3, T, F)
    assert batch["meta_mask"].shape == (3, 5) and batch["meta_mask"].dtype == torch.float32
    for key in ("zoom", "audio_source", "caption_source", "index"):
        assert batch[key].dtype == torch.long and batch[key].shape == (3,)
    for key in ("gsd", "lat", "lon", "month", "hour"):
        assert batch[key].dtype == torch.float32 and batch[key].shape == (3,)
    assert batch["sample_id"] == ["train-0000", "train-0001", "train-0002"]
    assert len(batch["extra"]) == len(batch["image_caption"]) == len(batch["audio_caption"]) == 3
    loaded = list(DataLoader(ds, batch_size=4, collate_fn=collate))
    assert [b["image"].shape[0] for b in loaded] == [4, 4]
    assert torch.equal(loaded[0]["image"][:3], batch["image"])
    clone = pickle.loads(pickle.dumps(ds))  # what worker processes receive
    assert torch.equal(clone[2]["image"], ds[2]["image"])
    with pytest.raises(ValueError, match="empty"):
        collate([])


def test_row_group_sampler(geo):
    ds = open_dataset(geo, "train", CFG)
    sampler = RowGroupSampler(ds, seed=1)
    order = list(sampler)
    assert sorted(order) == list(range(8)) and len(sampler) == 8
    group_of = {i: g for g, (a, b) in enumerate(ds.reader.group_ranges) for i in range(a, b)}
    groups = [group_of[i] for i in order]
    assert sum(a != b for a, b in zip(groups, groups[1:])) == len(ds.reader.group_ranges) - 1  # one visit per group
    assert order == list(RowGroupSampler(ds, seed=1))
    sampler.set_epoch(1)
    orders = {tuple(order)} | {tuple(sampler)}
    for epoch in range(2, 6):
        sampler.set_epoch(epoch)
        orders.add(tuple(sampler))
    assert len(orders) > 1


def test_save_to_disk_dataset(tmp_path):
    root = write_save_to_disk(tmp_path / "hf", {"train": 3, "test": 2})
    ds = open_dataset(root, "test", CFG, zoom=5, imagery="sentinel")
    assert (ds.imagery, ds.gsd, len(ds)) == ("sentinel", 10.0, 2)
    item = ds[1]
    assert item["image"].shape == (3, S, S) and item["image_caption"] == "sentinel zoom 5 place 1"
    assert item["sample_id"] == "test-0001"


def test_soundingearth_dataset_reads_files_by_relative_path(tmp_path):
    root = write_soundingearth(tmp_path / "se", "test", 4)
    ds = open_dataset(root, "test", CFG)  # config says bingmap; the dataset only has Google Earth tiles
    assert (ds.kind, ds.imagery, ds.gsd, ds.zooms) == ("soundingearth", "googleearth", 0.2, (1,))
    item = ds[0]
    assert item["audio_source"] == 2 and item["meta_mask"].tolist() == [1, 1, 1, 1, 1]
    assert item["image_caption"] == "google earth place 0" and item["extra"] == {"short_id": "1000"}
    view = prepare_tile(tile_array(0, 128), 1, S, "googleearth")  # centre 32 px of 128, as a PNG: lossless
    assert np.array_equal(item["image"].numpy(), normalise(view, CFG.image.mean, CFG.image.std))
    with pytest.raises(ConfigError, match="zoom must be one of"):
        open_dataset(root, "test", CFG, zoom=3)
    with pytest.raises(DataError, match=r"no bingmap_image column; this dataset has imagery: googleearth"):
        open_dataset(root, "test", CFG, imagery="bingmap")


def test_shipped_mel_features_used_only_when_shape_matches(tmp_path):
    root = write_soundingearth(tmp_path / "se", "train", 3, mel_shape=(T, F))
    ds = open_dataset(root, "train", CFG)
    raw = ds.reader.row(1, ["mel_features"])["mel_features"]
    assert raw.shape == (5, 1, T, F)
    assert np.array_equal(ds[1]["mel"].numpy(), raw[0, 0])  # evaluation: the first view
    train = open_dataset(root, "train", CFG, train=True)
    views = set()
    for epoch in range(6):
        train.set_epoch(epoch)
        mel = train[1]["mel"].numpy()
        views.add(next(v for v in range(5) if np.array_equal(mel, raw[v, 0])))
    assert len(views) > 1  # training draws among the 5 shipped views
    # row 0's features have a wrong frame count: computed from its audio instead
    assert ds[0]["mel"].shape == (T, F) and ds[0]["mel"].min() > -100.5 and ds[0]["mel"].max() < 60
    off = open_dataset(root, "train", CFG, use_mel_features=False)
    assert not np.array_equal(off[1]["mel"].numpy(), raw[0, 0])
    other = open_dataset(root, "train", get_preset("default"))  # (313, 64) config: features do not fit
    assert other[1]["mel"].shape == (313, 64)


# ------------------------------------------------------------------------------------------- bad inputs


def _write(tmp_path, change, n=3):
    rows = geosound_rows("train", n)
    change(rows)
    write_shards(rows, tmp_path / "data", "train", 1, GEOSOUND_SCHEMA)
    return open_dataset(tmp_path, "train", CFG)


def test_corrupt_image_names_shard_field_and_sample(tmp_path):
    def corrupt(rows):
        rows[1]["bingmap_image"] = {"bytes": b"\xff\xd8\xff broken jpeg", "path": "tile-1.jpg"}
    ds = _write(tmp_path, corrupt)
    ds[0]
    with pytest.raises(DataError, match=r"cannot decode image.*train-00000-of-00001\.parquet \[tile-1\.jpg\].*"
                                        r"sample train-0001.*field 'bingmap_image'"):
        ds[1]


def test_missing_image_file_names_the_file(tmp_path):
    def external(rows):
        rows[0]["bingmap_image"] = {"bytes": None, "path": "tiles/absent.jpg"}
        rows[1]["bingmap_image"] = None
    ds = _write(tmp_path, external)
    with pytest.raises(DataError, match=r"image file not found.*tiles/absent\.jpg.*sample train-0000.*"
                                        r"field 'bingmap_image'"):
        ds[0]
    with pytest.raises(DataError, match=r"bingmap_image is missing.*sample train-0001"):
        ds[1]


def test_missing_and_corrupt_audio_name_file_and_field(tmp_path):
    def bad(rows):
        rows[0]["audio"] = {"bytes": None, "path": str(tmp_path / "gone.ogg")}
        rows[1]["audio"] = {"bytes": b"OggS but not really", "path": "clip-1.ogg"}
        rows[2]["audio"] = None
    ds = _write(tmp_path, bad)
    with pytest.raises(DataError, match=r"audio file not found.*gone\.ogg.*sample train-0000.*field 'audio'"):
        ds[0]
    with pytest.raises(DataError, match=r"cannot decode audio.*\[clip-1\.ogg\].*sample train-0001.*field 'audio'"):
        ds[1]
    with pytest.raises(DataError, match=r"audio is missing.*sample train-0002.*field 'audio'"):
        ds[2]


def test_missing_soundingearth_media_file(tmp_path):
    root = write_soundingearth(tmp_path / "se", "test", 2)
    (root / "media" / "1.png").unlink()
    ds = open_dataset(root, "test", CFG)
    with pytest.raises(DataError, match=r"image file not found.*media/1\.png.*sample se-1.*field 'googleearth_image'"):
        ds[1]


def test_empty_caption(tmp_path):
    def empty(rows):
        rows[0]["audio_caption"] = "   "
        rows[1]["audio_caption"] = None
    ds = _write(tmp_path, empty)
    for i in (0, 1):
        with pytest.raises(DataError, match=rf"empty audio caption.*sample train-000{i}.*field 'audio_caption'"):
            ds[i]
    with pytest.raises(DataError, match="empty audio caption"):
        ds.check()


def test_unknown_source_and_latitude_out_of_range(tmp_path):
    def bad(rows):
        rows[0]["source"] = "soundcloud"
        rows[2]["latitude"] = 123.0
    ds = _write(tmp_path, bad)
    with pytest.raises(DataError, match=r"unknown audio source 'soundcloud'.*sample train-0000.*field 'source'"):
        ds[0]
    with pytest.raises(DataError, match=r"latitude 123 is out of range.*sample train-0002.*field 'latitude'"):
        ds[2]
    assert ds[1]["sample_id"] == "train-0001"


def test_check_scans_every_row(geo):
    ds = open_dataset(geo, "train", CFG)
    assert ds.check() == 8
    assert ds.check(media=True) == 8
