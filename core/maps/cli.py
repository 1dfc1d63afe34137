"""`sat2sound map`: a soundscape map of a region for text and/or audio queries, scored on the embedded world."""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np

from contracts.durability import atomic_write_text
from contracts.errors import ConfigError
from core.cli_args import add_ckpt, add_shared
from engine.config import add_engine_options, engine_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_ckpt(p, help="checkpoint folder (teacher or student)")
    p.add_argument("--bbox", default=None, help="LON0,LAT0,LON1,LAT1, e.g. -125,24,-66,50 for the contiguous USA "
                   "(with --imagery: default the scene's footprint, else the part of it the scene covers)")
    p.add_argument("--zoom", type=int, default=1, help="zoom level the tiles are seen at (1, 3 or 5)")
    p.add_argument("--query", action="append", default=[], help="text query (repeatable)")
    p.add_argument("--query-audio", action="append", default=[], help="audio file query (repeatable)")
    p.add_argument("--cols", type=int, default=120, help="grid columns; rows follow the region's shape")
    p.add_argument("--out", default="runs/maps", help="output folder for PNGs, scores (.npz) and the summary")
    p.add_argument("--cache", default=None, help="tile-embedding cache folder (default OUT/cache-<bbox>-z<zoom>)")
    p.add_argument("--hour", type=float, default=None, help="hour of day told to the model (0-23)")
    p.add_argument("--month", type=float, default=None, help="month told to the model (1-12)")
    p.add_argument("--audio-source", default=None, help="recording style: yfcc, inaturalist, aporee, freesound")
    p.add_argument("--no-latlon", action="store_true", help="do not tell the model each tile's position")
    p.add_argument("--shard", default=None, help="i/n: embed only this share of the region (merge by sharing --cache)")
    p.add_argument("--workers", type=int, default=2, help="tile-rendering processes (0 = in-process)")
    p.add_argument("--chunk", type=int, default=256, help="tiles per cache chunk / batch")
    p.add_argument("--seed", type=int, default=None, help="world seed (default: the checkpoint config's)")
    p.add_argument("--imagery", default=None, help="map over a real scene (GeoTIFF, JPEG 2000, MBTiles, or a folder "
                   "of them / of Sentinel-2 B04,B03,B02 files) instead of the embedded world")
    p.add_argument("--bands", default=None,
                   help="with --imagery: the scene's red,green,blue band numbers (1,1,1: grey)")
    p.add_argument("--gsd", type=float, default=None, help="with --imagery: GSD (m/px) told to the model "
                   "(default: the scene's own)")
    add_shared(p, "no-progress")
    add_engine_options(p)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48] or "query"


def run(args: argparse.Namespace) -> int:
    from core.checkpoint import load_checkpoint
    from core.maps.grid import BBox, check_grid_fits, make_grid
    from core.maps.query import audio_vector, score_map, text_vector
    from core.maps.region import MetaOptions, embed_region, parse_shard
    from core.maps.render import save_map_png
    from core.maps.scoring import score_against_truth

    bbox = BBox.parse(args.bbox) if args.bbox else None
    if bbox is None and not args.imagery:
        raise ConfigError("give --bbox LON0,LAT0,LON1,LAT1 (or --imagery FILE to map a real scene)")
    for q in args.query:
        if not q.strip():
            raise ConfigError("a --query is empty: give a text such as 'sounds of farm machinery'")
    if not args.query and not args.query_audio:
        raise ConfigError("give at least one --query TEXT or --query-audio FILE")
    meta = MetaOptions(latlon=not args.no_latlon, hour=args.hour, month=args.month, audio_source=args.audio_source)
    shard = parse_shard(args.shard)
    engine = engine_from_args(args)
    if args.imagery:  # views cut from the user's scene instead of the world's renderer
        if engine.is_ray:
            raise ConfigError("--engine ray maps the embedded world; a map over --imagery runs on the local engine")
        from core.maps.imagery_map import run_imagery_map

        return run_imagery_map(args, bbox, meta, slug)
    grid = make_grid(bbox, args.cols)
    loaded = load_checkpoint(args.ckpt)
    check_grid_fits(grid.size, loaded.cfg.model.codebook.dim, f"--cols {args.cols}")
    # Validate the queries before the long job, so a bad file fails in a second, not after the region.
    vectors = [(q, text_vector(loaded, q)) for q in args.query]
    vectors += [(Path(a).name, audio_vector(loaded, a)) for a in args.query_audio]

    out = Path(args.out)
    cache = Path(args.cache) if args.cache else out / f"cache-{slug(bbox.as_text())}-z{args.zoom}-c{args.cols}"
    t0 = time.perf_counter()
    if engine.is_ray:  # the same chunks and cache, each chunk a retryable task on a Ray worker
        from core.maps.ray_region import embed_region_ray

        region, ray_run = embed_region_ray(loaded, grid, args.zoom, meta, cache, engine, seed=args.seed, shard=shard,
                                           chunk=args.chunk, progress=not args.no_progress)
        print(f"ray: {ray_run.done} chunks on {ray_run.workers} workers in {ray_run.seconds:.1f} s (start-up "
              f"{ray_run.startup_s:.1f} s), {ray_run.retried} run again after a worker died")
    else:
        region = embed_region(loaded, grid, args.zoom, meta, cache, seed=args.seed, shard=shard, chunk=args.chunk,
                              workers=args.workers, progress=not args.no_progress)
    embed_s = time.perf_counter() - t0
    if region is None:
        print(f"shard {shard[0]}/{shard[1]} done; other shards' chunks are still missing in {cache}. "
              "Rerun without --shard (or once all shards finish) to draw the maps.")
        return 0
    from world.cover_classes import CLASS_INDEX
    from world.sources import sources_in_text

    # Open water (ocean, big lakes) is drawn grey and left out of the scores: it is not where sounds are mapped,
    # and counting it would make every land query look better than it is.
    land = region.fractions[:, CLASS_INDEX["water"]] < 0.95
    rows = []
    out.mkdir(parents=True, exist_ok=True)  # with --cache elsewhere nothing has made it yet
    for label, vec in vectors:
        t1 = time.perf_counter()
        scores = score_map(region.embeddings, vec, grid.rows, grid.cols)
        query_ms = (time.perf_counter() - t1) * 1000
        base = out / f"map-{slug(label)}-z{args.zoom}-{slug(bbox.as_text())}"  # regions share an --out folder
        np.savez(base.with_suffix(".npz"), scores=scores, lats=grid.lats, lons=grid.lons,
                 bbox=np.array([bbox.lon0, bbox.lat0, bbox.lon1, bbox.lat1]), query=label)
        # a region all over open water has no tile to score against the truth
        named = sources_in_text(label) if label in args.query and land.any() else []
        truth = score_against_truth(scores.ravel()[land], region.fractions[land], named) if named else {}
        sub = f"{grid.rows}x{grid.cols} tiles ({int(land.sum())} on land), zoom {args.zoom}"
        if truth:
            sub += f" | AUC {truth['auc']:.3f}, Spearman {truth['spearman']:.3f} vs {', '.join(named)}"
        png = save_map_png(base.with_suffix(".png"), np.where(land.reshape(scores.shape), scores, np.nan), bbox,
                           label, sub)
        rows.append({"query": label, "png": str(png), "query_ms": round(query_ms, 3), **truth})
        print(f"{label!r}: {png}" + (f"  AUC {truth['auc']:.3f}  Spearman {truth['spearman']:.3f}" if truth else ""))
    summary = {"bbox": bbox.as_text(), "grid": grid.spec(), "zoom": args.zoom, "tiles": grid.size,
               "embed_seconds_this_run": round(embed_s, 2), "checkpoint": loaded.fingerprint, "queries": rows}
    # written last and atomically: a summary on disk means every map of this run is there
    atomic_write_text(out / f"summary-z{args.zoom}-{slug(bbox.as_text())}.json", json.dumps(summary, indent=2),
                      label="map.summary")
    return 0
