"""Metadata: date formats, missing fields -> mask 0, coordinate ranges, source vocabularies, SoundingEarth rules."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from contracts.errors import DataError
from contracts.schema import META_FIELDS
from core.data.metadata import audio_source_index, caption_source_index, parse_month_hour, sample_metadata


@pytest.mark.parametrize(("value", "want"), [
    ("2019-05-03 14:22:10", (5, 14)),
    ("2019-05-03", (5, None)),
    ("2019-05-03T14:22:10Z", (5, 14)),
    ("2019-05-03T23:59:59.250+02:00", (5, 23)),
    ("2011-07-26 12:46:19.0", (7, 12)),  # YFCC
    ("2021/10/31 3:11 PM EDT", (10, 15)),  # iNaturalist
    ("2021/10/31 12:05 AM", (10, 0)),
    ("1/29/09 10:28", (1, 10)),  # aporee, US order, 24 h
    ("June 26th, 2010", (6, None)),  # Freesound
    ("3 Sept 2011 18:05", (9, 18)),
    (1262347200, (1, 12)),  # epoch seconds, UTC
    (1262347200000, (1, 12)),  # epoch milliseconds
    ("1262347200", (1, 12)),
    (dt.datetime(2020, 2, 3, 4, 5), (2, 4)),
    (dt.date(2020, 2, 3), (2, None)),
    (np.datetime64("2020-08-01T17:00:00"), (8, 17)),
    (None, (None, None)),
    ("", (None, None)),
    ("not a date", (None, None)),
    ("2019-02-30 10:00:00", (None, None)),
    ("2019-13-01", (None, None)),
    ("2019-05-03 25:00", (5, None)),
    (2010, (None, None)),  # a bare year is not an epoch
    (float("nan"), (None, None)),
])
def test_parse_month_hour(value, want):
    assert parse_month_hour(value) == want


def test_full_row_metadata_and_mask_order():
    row = {"latitude": 38.6, "longitude": -90.2, "date": "2019-05-03 14:22:10", "source": "Freesound",
           "audio_caption_source": "Pengi"}
    m = sample_metadata(row, sample="a")
    assert (m.lat, m.lon, m.month, m.hour) == (38.6, -90.2, 5.0, 14.0)
    assert (m.audio_source, m.caption_source) == (3, 2)
    assert META_FIELDS == ("latlon", "month", "hour", "audio_source", "caption_source")
    assert m.meta_mask.dtype == np.float32 and m.meta_mask.tolist() == [1, 1, 1, 1, 1]


def test_missing_fields_have_mask_zero_and_zero_values():
    m = sample_metadata({"latitude": None, "longitude": 10.0, "date": "2020-12-01", "source": None,
                         "audio_caption_source": None}, sample="b")
    assert m.meta_mask.tolist() == [0, 1, 0, 0, 0]
    assert (m.lat, m.lon, m.hour, m.audio_source, m.caption_source) == (0.0, 0.0, 0.0, 0, 0)
    assert m.month == 12.0
    nan = sample_metadata({"latitude": float("nan"), "longitude": 1.0}, sample="c")
    assert nan.meta_mask.tolist() == [0, 0, 0, 0, 0]


@pytest.mark.parametrize(("name", "index"), [("yfcc", 0), ("Flickr", 0), ("iNat", 1), ("inaturalist", 1),
                                             ("aporee", 2), ("radio aporee", 2), ("FREESOUND", 3), ("", None),
                                             (None, None)])
def test_audio_source_vocabulary(name, index):
    assert audio_source_index(name) == index


def test_caption_source_vocabulary():
    names = ("metadata", "human", "meta", "qwen", "pengi", None)
    assert [caption_source_index(n) for n in names] == [0, 0, 0, 1, 2, None]


def test_unknown_sources_name_sample_and_field():
    with pytest.raises(DataError, match=r"unknown audio source 'xeno-canto'.*shard\.parquet.*s9.*field 'source'"):
        sample_metadata({"latitude": 0, "longitude": 0, "source": "xeno-canto"}, sample="s9", path="shard.parquet")
    with pytest.raises(DataError, match=r"unknown caption source 'gpt'.*field 'audio_caption_source'"):
        sample_metadata({"latitude": 0, "longitude": 0, "audio_caption_source": "gpt"}, sample="s9")


@pytest.mark.parametrize(("row", "field"), [
    ({"latitude": 91.0, "longitude": 0.0}, "latitude"),
    ({"latitude": -90.5, "longitude": 0.0}, "latitude"),
    ({"latitude": 0.0, "longitude": 180.01}, "longitude"),
    ({"latitude": 0.0, "longitude": "east"}, "longitude"),
])
def test_bad_coordinates_name_sample_and_field(row, field):
    with pytest.raises(DataError, match=rf"sample s3.*field '{field}'"):
        sample_metadata(row, sample="s3")
    edge = sample_metadata({"latitude": -90.0, "longitude": 180.0}, sample="edge")
    assert edge.meta_mask[0] == 1


def test_soundingearth_is_all_aporee_and_reads_date_recorded():
    m = sample_metadata({"latitude": 51.0, "longitude": 7.0, "date_recorded": "1/29/09 10:28",
                         "audio_caption_source": "qwen"}, kind="soundingearth", sample="se")
    assert m.audio_source == 2 and m.meta_mask.tolist() == [1, 1, 1, 1, 1]
    assert (m.month, m.hour) == (1.0, 10.0)
