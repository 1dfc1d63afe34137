"""The world's on-disk layout: Parquet shards in the GeoSound layout plus world.json, and reading them back.

``DIR/data/{split}-{i:05d}-of-{n:05d}.parquet`` as the Hugging Face hub publishes GeoSound; media columns are
``struct{bytes, path}`` (the HF Audio/Image feature encoding) so the one loader reads the world and the real data
alike. Ground-truth columns are prefixed ``gt_``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from contracts.artifacts import WORLD_FILE, ArtifactKind
from contracts.errors import DataError
from contracts.schema import normalise_split

if TYPE_CHECKING:
    from world.config import WorldConfig

WORLD_JSON = WORLD_FILE
WORLD_KIND = ArtifactKind.WORLD
WORLD_VERSION = 1

_MEDIA = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])
SCHEMA = pa.schema([
    pa.field("sample_id", pa.string()),
    pa.field("source", pa.string()),
    pa.field("audio", _MEDIA),
    pa.field("bingmap_image", _MEDIA),
    pa.field("audio_caption", pa.string()),
    pa.field("audio_caption_source", pa.string()),
    pa.field("llava_caption_bingmap_zl1", pa.string()),
    pa.field("llava_caption_bingmap_zl3", pa.string()),
    pa.field("llava_caption_bingmap_zl5", pa.string()),
    pa.field("latitude", pa.float64()),
    pa.field("longitude", pa.float64()),
    pa.field("date", pa.string()),
    pa.field("description", pa.string()),
    pa.field("tags", pa.string()),
    pa.field("title", pa.string()),
    pa.field("gt_present", pa.list_(pa.string())),
    pa.field("gt_levels_db", pa.list_(pa.float32())),
    pa.field("gt_plausible", pa.list_(pa.string())),
    pa.field("gt_plausible_zl1", pa.list_(pa.string())),
    pa.field("gt_plausible_zl3", pa.list_(pa.string())),
    pa.field("gt_plausible_zl5", pa.list_(pa.string())),
    pa.field("gt_cover_fractions", pa.list_(pa.float32())),
    pa.field("gt_igbp", pa.int8()),
    pa.field("gt_region", pa.string()),
])
ROW_GROUP_SIZE = 64


def shard_name(split: str, i: int, n: int) -> str:
    return f"{split}-{i:05d}-of-{n:05d}.parquet"


def write_shard(rows: list[dict], path: Path) -> None:
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    pq.write_table(table, path, row_group_size=ROW_GROUP_SIZE, compression="zstd", write_statistics=False)


def shard_paths(dataset_dir: Path, split: str | None = None) -> list[Path]:
    data = Path(dataset_dir) / "data"
    pattern = f"{normalise_split(split)}-*.parquet" if split else "*.parquet"
    return sorted(data.glob(pattern))


def fingerprint(paths: list[Path]) -> str:
    """sha256 over the shards' names and bytes, in name order."""
    h = hashlib.sha256()
    for p in sorted(paths, key=lambda q: q.name):
        h.update(p.name.encode())
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def read_world_json(dataset_dir: Path) -> dict:
    path = Path(dataset_dir) / WORLD_JSON
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError("not an embedded-world folder: world.json is missing", path=path) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"world.json cannot be read ({exc})", path=path) from None
    if meta.get("kind") != WORLD_KIND:
        raise DataError(f"world.json is not a {WORLD_KIND} description", path=path)
    return meta


def world_params(dataset_dir: Path, world_cfg: WorldConfig | None = None) -> tuple[int, int, float]:
    """(seed, tile_px, tile_ground_m) of a world: from ``world_cfg`` when given, else from the folder's world.json."""
    if world_cfg is not None:
        return int(world_cfg.seed), int(world_cfg.tile_px), float(world_cfg.tile_ground_m)
    key = read_world_json(Path(dataset_dir)).get("build_key", {})
    try:
        return int(key["seed"]), int(key["tile_px"]), float(key["tile_ground_m"])
    except KeyError as exc:
        raise DataError(f"world.json's build_key lacks {exc}; pass the WorldConfig the world was built with",
                        field="build_key") from None


def read_split(dataset_dir: Path, split: str, columns: list[str] | None = None) -> pa.Table:
    """All rows of one split (selected columns) as one Arrow table."""
    split = normalise_split(split)
    paths = shard_paths(dataset_dir, split)
    if not paths:
        found = sorted({p.name.split("-")[0] for p in shard_paths(dataset_dir)})
        raise DataError(f"no {split!r} shards (found splits: {', '.join(found) or 'none'}; expected "
                        f"data/{split}-*.parquet)", path=Path(dataset_dir) / "data")
    tables = [pq.read_table(p, columns=columns) for p in paths]
    return pa.concat_tables(tables)

