"""The flow of ``sat2sound map --imagery FILE``: the same outputs as a world map (a PNG, the scores as .npz and a
summary JSON per query), over a real scene.

The region is the scene's footprint, or the part of ``--bbox`` it covers (a bbox that misses the scene is an
error). Tiles whose view is not all imagery are grey and out of the scores. A query that names sound sources is
scored against MODIS at each tile's centre (AUC and Spearman, as for the world; coarse: 0.05 degree cells).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from contracts.errors import ConfigError


def run_imagery_map(args: argparse.Namespace, bbox, meta, slug: Callable[[str], str]) -> int:
    from core.checkpoint import load_checkpoint
    from core.maps.grid import BBox, check_grid_fits, make_grid
    from core.maps.imagery_region import embed_imagery_region, imagery_overview, save_imagery_map_png
    from core.maps.query import audio_vector, score_map, text_vector
    from core.maps.scoring import score_against_truth
    from imagery.tiles import MIN_VALID_FRACTION, Bounds, ImagerySet, region_in_imagery
    from world.sources import sources_in_text

    if getattr(args, "shard", None):
        raise ConfigError("--shard is for world maps; an imagery map is embedded in one run")
    if getattr(args, "engine", "local") != "local":
        raise ConfigError("--engine ray is for world maps; an imagery map reads its scene in this process")
    loaded = load_checkpoint(args.ckpt)
    vectors = [(q, text_vector(loaded, q)) for q in args.query]
    vectors += [(Path(a).name, audio_vector(loaded, a)) for a in args.query_audio]
    with ImagerySet(args.imagery, args.bands) as imagery:
        wanted = Bounds(bbox.lon0, bbox.lat0, bbox.lon1, bbox.lat1) if bbox is not None else None
        inside = region_in_imagery(imagery, wanted, "--bbox")
        bbox = BBox(inside.west, inside.south, inside.east, inside.north).validated()
        grid = make_grid(bbox, args.cols)
        check_grid_fits(grid.size, loaded.cfg.model.codebook.dim, f"--cols {args.cols}")
        out = Path(args.out)
        name = f"cache-imagery-{slug(bbox.as_text())}-z{args.zoom}-c{args.cols}"
        cache = Path(args.cache) if args.cache else out / name
        t0 = time.perf_counter()
        region, valid = embed_imagery_region(loaded, grid, args.zoom, meta, cache, imagery, gsd_m=args.gsd,
                                             chunk=args.chunk, progress=not args.no_progress)
        embed_s = time.perf_counter() - t0
        picture = imagery_overview(imagery, bbox)
        described = imagery.describe()
    seen = valid >= MIN_VALID_FRACTION
    if not seen.any():
        raise ConfigError(f"no view of the region lies wholly inside the imagery {args.imagery}: use fewer --cols or "
                          "a lower --zoom")
    rows = []
    for label, vec in vectors:
        scores = score_map(region.embeddings, vec, grid.rows, grid.cols)
        base = out / f"map-{slug(label)}-z{args.zoom}-imagery-{slug(bbox.as_text())}"
        np.savez(base.with_suffix(".npz"), scores=scores, valid=valid.reshape(scores.shape), lats=grid.lats,
                 lons=grid.lons, bbox=np.array([bbox.lon0, bbox.lat0, bbox.lon1, bbox.lat1]), query=label)
        named = sources_in_text(label) if label in args.query else []
        truth = score_against_truth(scores.ravel()[seen], region.fractions[seen], named) if named else {}
        sub = f"{grid.rows}x{grid.cols} views ({int(seen.sum())} wholly in the imagery), zoom {args.zoom}"
        if truth:
            sub += f"\nvs MODIS: AUC {truth['auc']:.3f}, Spearman {truth['spearman']:.3f} ({', '.join(named)})"
        png = save_imagery_map_png(base.with_suffix(".png"), np.where(seen.reshape(scores.shape), scores, np.nan),
                                   bbox, picture, label, sub)
        rows.append({"query": label, "png": str(png), **truth})
        print(f"{label!r}: {png}" + (f"  AUC {truth['auc']:.3f}  Spearman {truth['spearman']:.3f}" if truth else ""))
    summary = {"bbox": bbox.as_text(), "grid": grid.spec(), "zoom": args.zoom, "tiles": grid.size,
               "tiles_in_imagery": int(seen.sum()), "imagery": described, "gsd_given_m": region.spec["tiles"][
                   "gsd_given_m"], "embed_seconds_this_run": round(embed_s, 2), "checkpoint": loaded.fingerprint,
               "queries": rows}
    (out / f"summary-z{args.zoom}-imagery-{slug(bbox.as_text())}.json").write_text(json.dumps(summary, indent=2))
    return 0
