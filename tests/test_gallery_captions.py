"""Caption sources for the gallery: dataset folders, text files, CSVs and clip folders, with their bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from contracts.errors import DataError
from gallery.captions import caption_id, normalise_caption, read_captions


def write_shard(path: Path, rows: list[dict]) -> None:
    media = {"bytes": b"", "path": None}
    cols = {
        "sample_id": [r["sample_id"] for r in rows],
        "audio": [media] * len(rows),
        "bingmap_image": [media] * len(rows),
        "audio_caption": ["a bird sings"] * len(rows),
        "latitude": [r["lat"] for r in rows],
        "longitude": [r["lon"] for r in rows],
    }
    for z in (1, 3, 5):
        cols[f"llava_caption_bingmap_zl{z}"] = [r.get(z) for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), path)


@pytest.fixture
def dataset(tmp_path) -> Path:
    root = tmp_path / "ds"
    write_shard(root / "data" / "train-00000-of-00001.parquet", [
        {"sample_id": "a", "lat": 10.0, "lon": 20.0, 1: "Birds and  wind.", 3: "Birds and wind.", 5: "Traffic hum."},
        {"sample_id": "b", "lat": 11.0, "lon": 21.0, 1: "Surf on a beach.", 3: None, 5: "Traffic hum."},
    ])
    write_shard(root / "data" / "test-00000-of-00001.parquet", [
        {"sample_id": "c", "lat": -5.0, "lon": 30.0, 1: "Frogs at night.", 3: "Birds and wind.", 5: ""},
    ])
    return root


def test_dataset_captions_are_deduplicated_with_provenance(dataset):
    recs = read_captions(dataset)
    assert [r.caption for r in recs] == ["Birds and wind.", "Traffic hum.", "Surf on a beach.", "Frogs at night."]
    birds = recs[0]
    assert birds.id == caption_id("Birds and wind.")
    assert [(p["sample_id"], p["zoom"], p["split"]) for p in birds.provenance] == [
        ("a", 1, "train"), ("a", 3, "train"), ("c", 3, "test")]
    assert birds.provenance[0]["lat"] == 10.0 and birds.provenance[2]["lon"] == 30.0
    assert birds.provenance[0]["imagery"] == "bingmap"
    assert [p["sample_id"] for p in recs[1].provenance] == ["a", "b"]


def test_dataset_split_imagery_and_limit(dataset):
    assert [r.caption for r in read_captions(dataset, splits=("test",))] == ["Frogs at night.", "Birds and wind."]
    assert len(read_captions(dataset, limit=2)) == 2
    with pytest.raises(DataError, match="no llava_caption.*sentinel"):
        read_captions(dataset, imagery="sentinel")
    with pytest.raises(DataError, match="no split validation"):
        read_captions(dataset, splits=("validation",))


def test_text_file(tmp_path):
    f = tmp_path / "caps.txt"
    f.write_text("rain on a tin roof\n\n  rain on a   tin roof \nchurch bells ring\n")
    recs = read_captions(f)
    assert [r.caption for r in recs] == ["rain on a tin roof", "church bells ring"]
    assert recs[0].provenance == [{"line": 1}, {"line": 3}]
    assert normalise_caption("  a\tb  ") == "a b" and caption_id("a b") == caption_id(" a  b ")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="no captions"):
        read_captions(empty)


def test_csv_with_provenance(tmp_path):
    f = tmp_path / "caps.csv"
    f.write_text("id,caption,lat,lon,zoom,split\nx1,dogs bark,1.5,2.5,3,val\nx2,sirens wail,,,,test\n")
    recs = read_captions(f)
    assert recs[0].provenance == [{"row": 2, "id": "x1", "split": "validation", "zoom": 3, "lat": 1.5, "lon": 2.5}]
    assert [r.caption for r in read_captions(f, splits=("test",))] == ["sirens wail"]


@pytest.mark.parametrize("text,match", [
    ("id,caption\nx,a\nx,b\n", r"duplicate id 'x' \(also on line 2\).*caps.csv:3"),
    ("id,text\nx,a\n", "no 'caption' column"),
    ("id,caption\nx,\n", "empty caption.*caps.csv:2"),
    ("caption,lat\nrain,north\n", "lat 'north' is not a number"),
    ("caption,split\nrain,holdout\n", "unknown split 'holdout'"),
    ("id,caption\n", "no rows"),
])
def test_bad_csv(tmp_path, text, match):
    f = tmp_path / "caps.csv"
    f.write_text(text)
    with pytest.raises(DataError, match=match):
        read_captions(f)


def _wav(path: Path, seconds: float = 0.3, sr: int = 22050) -> Path:
    sf.write(path, 0.1 * np.sin(np.arange(int(seconds * sr)) / 5.0), sr)
    return path


def test_import_mapping_csv_and_its_bad_rows(tmp_path):
    _wav(tmp_path / "a.wav")
    _wav(tmp_path / "b.wav")
    f = tmp_path / "clips.csv"
    f.write_text("id,caption,audio_path\n1,wind in pines,a.wav\n2,gulls over surf,b.wav\n")
    recs = read_captions(f, need_audio=True)
    assert [r.audio_path for r in recs] == [tmp_path / "a.wav", tmp_path / "b.wav"]
    # the folder form finds clips.csv
    assert [r.caption for r in read_captions(tmp_path, need_audio=True)] == ["wind in pines", "gulls over surf"]
    f.write_text("id,caption,audio_path\n1,wind in pines,a.wav\n2,gulls over surf,missing.wav\n")
    with pytest.raises(DataError, match=r"missing.wav does not exist.*clips.csv:3.*sample 2"):
        read_captions(f, need_audio=True)
    f.write_text("id,caption,audio_path\n1,wind in pines,a.wav\n1,gulls,b.wav\n")
    with pytest.raises(DataError, match="duplicate id '1'"):
        read_captions(f, need_audio=True)
    f.write_text("id,caption,audio_path\n1,wind in pines,a.wav\n2,wind  in pines,b.wav\n")
    with pytest.raises(DataError, match="caption repeated with another clip"):
        read_captions(f, need_audio=True)
    f.write_text("id,caption\n1,wind in pines\n")
    with pytest.raises(DataError, match="needs an 'audio_path' column"):
        read_captions(f, need_audio=True)
    f.write_text("id,caption,audio_path\n1,wind in pines,\n")
    with pytest.raises(DataError, match="empty audio_path"):
        read_captions(f, need_audio=True)


def test_import_folder_of_clips_with_txt_captions(tmp_path):
    _wav(tmp_path / "001.wav")
    (tmp_path / "001.txt").write_text("a train passes\n")
    _wav(tmp_path / "002.wav")
    (tmp_path / "002.txt").write_text("crickets at dusk")
    recs = read_captions(tmp_path, need_audio=True)
    assert [(r.caption, r.audio_path.name) for r in recs] == [("a train passes", "001.wav"),
                                                               ("crickets at dusk", "002.wav")]
    _wav(tmp_path / "003.wav")
    with pytest.raises(DataError, match="003.wav has no caption file 003.txt"):
        read_captions(tmp_path, need_audio=True)


def test_source_kinds_that_do_not_fit(tmp_path, dataset):
    with pytest.raises(DataError, match="does not exist"):
        read_captions(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not a caption source"):
        read_captions(tmp_path / "empty")
    with pytest.raises(DataError, match="needs a clips.csv"):
        read_captions(dataset, need_audio=True)
    (tmp_path / "t.txt").write_text("x\n")
    with pytest.raises(DataError, match="not a text file"):
        read_captions(tmp_path / "t.txt", need_audio=True)
    with pytest.raises(DataError, match="--limit must be at least 1"):
        read_captions(tmp_path / "t.txt", limit=0)
