"""Layouts: Parquet shards in the three hub forms, save_to_disk folders, split aliases, kinds, and folders that
are not in the schema."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from data_fixtures import (
    GEOSOUND_SCHEMA,
    geosound_rows,
    write_geosound,
    write_save_to_disk,
    write_shards,
    write_soundingearth,
)

from contracts.errors import DataError
from core.data.layouts import (
    GEOSOUND,
    SOUNDINGEARTH,
    available_splits,
    dataset_kind,
    find_split,
    nested_to_numpy,
    open_rows,
    row_dict,
)


@pytest.fixture(scope="module")
def geosound_dir(tmp_path_factory):
    return write_geosound(tmp_path_factory.mktemp("geo"), {"train": 9, "validation": 4, "test": 3})


def test_parquet_data_shards(geosound_dir):
    loc = find_split(geosound_dir, "train")
    assert loc.layout == "parquet" and loc.split == "train"
    assert [f.name for f in loc.files] == ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]
    assert available_splits(geosound_dir) == ["train", "validation", "test"]
    reader = open_rows(geosound_dir, "train")
    assert len(reader) == 9 and reader.kind == GEOSOUND
    assert "gt_sources" in reader.columns and "bingmap_image" in reader.columns
    # row groups of 4 within shards of 5 and 4 rows
    assert reader.group_ranges == [(0, 4), (4, 5), (5, 9)]
    assert [reader.row(i, ["sample_id"])["sample_id"] for i in (0, 4, 5, 8)] == [
        "train-0000", "train-0004", "train-0005", "train-0008"]
    assert reader.file_of(6).name == "train-00001-of-00002.parquet"
    row = reader.row(1)
    assert set(row["audio"]) == {"bytes", "path"} and row["audio"]["bytes"][:4] == b"OggS"
    assert row["gt_sources"] == ["birds", "traffic"]
    with pytest.raises(IndexError):
        reader.row(9)


@pytest.mark.parametrize("alias", ["val", "valid", "VALIDATION", "dev"])
def test_split_aliases(geosound_dir, alias):
    assert find_split(geosound_dir, alias).split == "validation"
    assert len(open_rows(geosound_dir, alias)) == 4


def test_split_folder_and_root_shard_layouts(tmp_path):
    rows = geosound_rows("test", 3)
    write_shards(rows, tmp_path / "a" / "val", "val", 1, GEOSOUND_SCHEMA, pattern="{i:04d}.parquet")
    assert find_split(tmp_path / "a", "validation").files[0].name == "0000.parquet"
    write_shards(rows, tmp_path / "b", "test", 2, GEOSOUND_SCHEMA)
    loc = find_split(tmp_path / "b", "test")
    assert len(loc.files) == 2 and len(open_rows(tmp_path / "b", "test")) == 3


def test_save_to_disk_folder(tmp_path):
    root = write_save_to_disk(tmp_path / "hf", {"train": 5, "validation": 3}, split_names={"validation": "valid"})
    loc = find_split(root, "validation")
    assert loc.layout == "arrow" and [f.name for f in loc.files] == ["data-00000-of-00002.arrow",
                                                                     "data-00001-of-00002.arrow"]
    reader = open_rows(root, "val")
    assert len(reader) == 3 and reader.kind == GEOSOUND
    assert [reader.row(i, ["sample_id"])["sample_id"] for i in range(3)] == [
        "validation-0000", "validation-0001", "validation-0002"]
    assert available_splits(root) == ["train", "validation"]
    # a single split's folder (state.json only) is a dataset too
    single = root / "train"
    assert find_split(single, "train").layout == "arrow"
    with pytest.raises(DataError, match="holds the 'train' split, not 'test'"):
        find_split(single, "test")


def test_save_to_disk_errors(tmp_path):
    root = write_save_to_disk(tmp_path / "hf", {"train": 2})
    with pytest.raises(DataError, match=r"no 'test' split in this save_to_disk folder; it has: train"):
        find_split(root, "test")
    (root / "train" / "data-00001-of-00002.arrow").unlink()
    with pytest.raises(DataError, match=r"missing.*data-00001-of-00002\.arrow"):
        find_split(root, "train")
    (root / "train" / "data-00000-of-00002.arrow").write_bytes(b"garbage")
    (root / "train" / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00002.arrow"}]}))
    with pytest.raises(DataError, match=r"not a readable Arrow IPC file.*data-00000-of-00002\.arrow"):
        open_rows(root, "train")


def test_soundingearth_kind(tmp_path):
    root = write_soundingearth(tmp_path / "se", "test", 3)
    reader = open_rows(root, "test")
    assert reader.kind == SOUNDINGEARTH and "source" not in reader.columns
    assert dataset_kind(["sample_id", "audio", "googleearth_image"]) == SOUNDINGEARTH
    assert dataset_kind(["sample_id", "audio", "date_recorded"]) == SOUNDINGEARTH
    assert dataset_kind(["sample_id", "audio", "bingmap_image", "source", "date"]) == GEOSOUND


def test_folder_not_in_schema(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"not a dataset folder.*expected Parquet shards.*save_to_disk.*found: "
                                        r"notes\.txt, photos/"):
        find_split(tmp_path, "train")
    with pytest.raises(DataError, match="dataset folder not found"):
        find_split(tmp_path / "nope", "train")
    with pytest.raises(DataError, match="got a file"):
        find_split(tmp_path / "notes.txt", "train")
    with pytest.raises(DataError, match="unknown split 'holdout'"):
        find_split(tmp_path, "holdout")
    assert available_splits(tmp_path) == []


def test_missing_split(geosound_dir, tmp_path):
    write_geosound(tmp_path / "g", {"train": 2}, n_shards=1)
    with pytest.raises(DataError, match=r"no 'test' split; this folder has: train"):
        find_split(tmp_path / "g", "test")


def test_missing_required_column_names_expected_and_found(tmp_path):
    rows = geosound_rows("train", 2)
    table = pa.Table.from_pylist(rows, schema=GEOSOUND_SCHEMA).drop_columns(["audio_caption", "latitude"])
    (tmp_path / "data").mkdir()
    pq.write_table(table, tmp_path / "data" / "train-00000-of-00001.parquet")
    with pytest.raises(DataError, match=r"missing required column\(s\) audio_caption, latitude; expected at least "
                                        r"sample_id, audio, audio_caption, latitude, longitude.*found columns: "
                                        r"sample_id, source, audio"):
        open_rows(tmp_path, "train")


def test_no_image_column(tmp_path):
    rows = geosound_rows("train", 2)
    table = pa.Table.from_pylist(rows, schema=GEOSOUND_SCHEMA).drop_columns(["bingmap_image", "sentinel_image"])
    pq.write_table(table, tmp_path / "train-0.parquet")
    with pytest.raises(DataError, match=r"no image column; expected one of bingmap_image"):
        open_rows(tmp_path, "train")


def test_corrupt_parquet_shard_is_named(tmp_path):
    write_geosound(tmp_path, {"train": 2}, n_shards=1)
    (tmp_path / "data" / "train-00001-of-00002.parquet").write_bytes(b"PAR1 broken")
    with pytest.raises(DataError, match=r"not a readable Parquet file.*train-00001-of-00002\.parquet"):
        open_rows(tmp_path, "train")


def test_nested_lists_become_arrays():
    arr = pa.array([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]], type=pa.list_(pa.list_(pa.float32())))
    got = nested_to_numpy(arr)
    assert got.shape == (3, 2) and got[2, 1] == 6.0
    ragged = pa.array([[[1.0], [2.0, 3.0]]], type=pa.list_(pa.list_(pa.float32())))
    assert nested_to_numpy(ragged) is None
    table = pa.table({"mel_features": pa.array([None, [[1.0, 2.0]]], type=pa.list_(pa.list_(pa.float32()))),
                      "tags": ["a", "b"]})
    assert row_dict(table, 0) == {"mel_features": None, "tags": "a"}
    assert np.array_equal(row_dict(table, 1)["mel_features"], [[1.0, 2.0]])


def test_reader_pickles_for_worker_processes(geosound_dir):
    reader = open_rows(geosound_dir, "train")
    reader.row(0)
    clone = pickle.loads(pickle.dumps(reader))
    assert clone.row(7, ["sample_id"]) == {"sample_id": "train-0007"}
    assert clone.file_stats()[0][1] > 0
