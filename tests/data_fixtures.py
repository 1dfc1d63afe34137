"""Small datasets in the published schemas, written with pyarrow, soundfile and Pillow, for the data tests.

- ``write_geosound``: GeoSound-layout Parquet shards ``DIR/data/{split}-{i:05d}-of-{n:05d}.parquet`` with Bing and
  Sentinel tiles, OGG audio, LLaVA captions, mixed date formats, some missing dates/sources, a null caption source
  and ``gt_*`` ground-truth columns.
- ``write_soundingearth``: SoundingEarth-like shards (googleearth_image, date_recorded, short_id, no source column),
  audio and tiles as files next to the shards referenced by relative paths.
- ``write_save_to_disk``: a Hugging Face ``save_to_disk`` folder (dataset_dict.json, per-split state.json,
  dataset_info.json, Arrow IPC *stream* data files).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf
from PIL import Image

MEDIA = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
SOURCES = ["yfcc", "iNat", "aporee", "freesound", None, "Flickr"]
CAPTION_SOURCES = ["metadata", "qwen", "pengi", None]
DATES = ["2019-05-03 14:22:10", "2020-12-01", None, "not a date", "2018-07-04T06:30:00Z", "June 26th, 2010"]
# (month, hour) each date above should give; None = missing
DATE_FIELDS = [(5, 14), (12, None), (None, None), (None, None), (7, 6), (6, None)]


def tile_array(i: int, px: int) -> np.ndarray:
    """A tile whose content differs per sample and per ring, so crops and zooms are distinguishable."""
    y, x = np.mgrid[0:px, 0:px].astype(np.float32)
    r = np.maximum(np.abs(y - px / 2), np.abs(x - px / 2)) / (px / 2)  # 0 at the centre, 1 at the edge
    img = np.stack([255 * r, 255 * (1 - r), np.full_like(r, (37 * i) % 256)], axis=-1)
    return img.clip(0, 255).astype(np.uint8)


def jpeg_bytes(img: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def tone(i: int, rate: int, seconds: float) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    rng = np.random.default_rng(i)
    wave = 0.3 * np.sin(2 * np.pi * (300 + 50 * i) * t) + 0.02 * rng.standard_normal(t.size)
    return wave.astype(np.float32)


def audio_bytes(wave: np.ndarray, rate: int, fmt: str = "OGG") -> bytes:
    buf = io.BytesIO()
    subtype = {"OGG": "VORBIS", "FLAC": "PCM_16", "WAV": "PCM_16", "MP3": "MPEG_LAYER_III"}[fmt]
    sf.write(buf, wave, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def geosound_rows(split: str, n: int, *, tile_px: int = 100, audio_rate: int = 16000) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        seconds = 1.0 if i % 2 else 3.0  # short clips are zero-padded, long ones cropped
        rows.append({
            "sample_id": f"{split}-{i:04d}",
            "source": SOURCES[i % len(SOURCES)],
            "audio": {"bytes": audio_bytes(tone(i, audio_rate, seconds), audio_rate), "path": f"{split}-{i}.ogg"},
            "bingmap_image": {"bytes": jpeg_bytes(tile_array(i, tile_px)), "path": f"{split}-{i}-bing.jpg"},
            "sentinel_image": {"bytes": jpeg_bytes(tile_array(i + 100, 64)), "path": f"{split}-{i}-s2.jpg"},
            "audio_caption": f"sample {i}: birds singing over distant traffic",
            "audio_caption_source": CAPTION_SOURCES[i % len(CAPTION_SOURCES)],
            "mel_features": None,
            **{f"llava_caption_bingmap_zl{z}": (None if i == 3 and z == 5 else f"bing zoom {z} place {i}")
               for z in (1, 3, 5)},
            **{f"llava_caption_sentinel_zl{z}": f"sentinel zoom {z} place {i}" for z in (1, 3, 5)},
            "latitude": -60.0 + (7.5 * i) % 120.0,
            "longitude": -170.0 + (21.0 * i) % 340.0,
            "date": DATES[i % len(DATES)],
            "description": f"recording {i}",
            "tags": "birds,wind",
            "title": f"title {i}",
            "gt_sources": ["birds", "traffic"] if i % 2 else ["wind"],
            "gt_landcover": i % 17,
            "gt_levels_db": [0.0, -4.44] if i % 2 else [0.0],
        })
    return rows


GEOSOUND_SCHEMA = pa.schema([
    ("sample_id", pa.string()), ("source", pa.string()), ("audio", MEDIA), ("bingmap_image", MEDIA),
    ("sentinel_image", MEDIA), ("audio_caption", pa.string()), ("audio_caption_source", pa.string()),
    ("mel_features", pa.list_(pa.list_(pa.float32()))),
    *[(f"llava_caption_{k}_zl{z}", pa.string()) for k in ("bingmap", "sentinel") for z in (1, 3, 5)],
    ("latitude", pa.float64()), ("longitude", pa.float64()), ("date", pa.string()), ("description", pa.string()),
    ("tags", pa.string()), ("title", pa.string()), ("gt_sources", pa.list_(pa.string())), ("gt_landcover", pa.int64()),
    ("gt_levels_db", pa.list_(pa.float32())),
])


def write_shards(rows: list[dict[str, Any]], folder: Path, split: str, n_shards: int, schema: pa.Schema,
                 row_group_size: int = 4, pattern: str = "{split}-{i:05d}-of-{n:05d}.parquet") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, part in enumerate(np.array_split(np.arange(len(rows)), n_shards)):
        table = pa.Table.from_pylist([rows[j] for j in part], schema=schema)
        path = folder / pattern.format(split=split, i=i, n=n_shards)
        pq.write_table(table, path, row_group_size=row_group_size)
        paths.append(path)
    return paths


def write_geosound(root: Path, splits: dict[str, int] | None = None, *, n_shards: int = 2, tile_px: int = 100,
                   audio_rate: int = 16000, world_json: bool = True) -> Path:
    """GeoSound-layout shards under root/data (the layout the embedded world writes); returns root."""
    splits = splits or {"train": 10, "validation": 6}
    for split, n in splits.items():
        write_shards(geosound_rows(split, n, tile_px=tile_px, audio_rate=audio_rate), root / "data", split,
                     n_shards, GEOSOUND_SCHEMA)
    if world_json:
        (root / "world.json").write_text(json.dumps({"fixture": True, "splits": splits}))
    return root


SOUNDINGEARTH_SCHEMA = pa.schema([
    ("sample_id", pa.string()), ("short_id", pa.string()), ("audio", MEDIA), ("googleearth_image", MEDIA),
    ("audio_caption", pa.string()), ("audio_caption_source", pa.string()),
    ("mel_features", pa.list_(pa.list_(pa.list_(pa.list_(pa.float32()))))),
    ("llava_caption_googleearth_zl1", pa.string()), ("latitude", pa.float64()), ("longitude", pa.float64()),
    ("date_recorded", pa.string()),
])


def write_soundingearth(root: Path, split: str = "test", n: int = 5, *, tile_px: int = 128,
                        mel_shape: tuple[int, int] | None = None) -> Path:
    """SoundingEarth-like shards in root/{split}/; media as files referenced by relative path (bytes null).

    With ``mel_shape`` = (frames, n_mels), rows carry (5, 1, frames, n_mels) mel_features like the published
    data; row 0's features have a different shape so that row falls back to decoding its audio.
    """
    media = root / "media"
    media.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        (media / f"{i}.flac").write_bytes(audio_bytes(tone(i, 22050, 2.5), 22050, "FLAC"))
        Image.fromarray(tile_array(i, tile_px)).save(media / f"{i}.png")
        mel = None
        if mel_shape is not None:
            shape = (5, 1, *mel_shape) if i else (5, 1, mel_shape[0] + 1, mel_shape[1])
            mel = (np.arange(np.prod(shape), dtype=np.float32).reshape(shape) % 97 - 80.0).tolist()
        rows.append({
            "sample_id": f"se-{i}", "short_id": f"{1000 + i}",
            "audio": {"bytes": None, "path": f"media/{i}.flac"},
            "googleearth_image": {"bytes": None, "path": f"media/{i}.png"},
            "audio_caption": f"aporee recording {i}: a street with voices",
            "audio_caption_source": "pengi" if i % 2 else "qwen",
            "mel_features": mel,
            "llava_caption_googleearth_zl1": f"google earth place {i}",
            "latitude": 50.0 + i, "longitude": 8.0 + i,
            "date_recorded": ["1/29/09 10:28", "2012-09-07 00:00:00", None][i % 3],
        })
    write_shards(rows, root / split, split, 1, SOUNDINGEARTH_SCHEMA, row_group_size=2,
                 pattern="{i:04d}.parquet")
    return root


def write_save_to_disk(root: Path, splits: dict[str, int] | None = None, *, split_names: dict[str, str] | None = None,
                       batch_rows: int = 3) -> Path:
    """A save_to_disk folder: dataset_dict.json + {split}/(state.json, dataset_info.json, data-*.arrow streams)."""
    splits = splits or {"train": 4, "validation": 3}
    split_names = split_names or {}
    root.mkdir(parents=True, exist_ok=True)
    folders = []
    for split, n in splits.items():
        name = split_names.get(split, split)
        folders.append(name)
        folder = root / name
        folder.mkdir()
        table = pa.Table.from_pylist(geosound_rows(split, n), schema=GEOSOUND_SCHEMA)
        halves = [table.slice(0, (n + 1) // 2), table.slice((n + 1) // 2)]
        files = []
        for i, part in enumerate(halves):
            fname = f"data-{i:05d}-of-{len(halves):05d}.arrow"
            with pa.OSFile(str(folder / fname), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
                for batch in part.to_batches(max_chunksize=batch_rows):
                    writer.write_batch(batch)
            files.append({"filename": fname})
        (folder / "state.json").write_text(json.dumps({
            "_data_files": files, "_fingerprint": f"fixture-{split}", "_format_columns": None, "_format_kwargs": {},
            "_format_type": None, "_output_all_columns": False, "_split": name}))
        (folder / "dataset_info.json").write_text(json.dumps({"description": "fixture", "features": {}}))
    (root / "dataset_dict.json").write_text(json.dumps({"splits": folders}))
    return root
