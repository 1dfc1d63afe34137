"""Grounding scored over many places of a dataset split (embedded world): pointing game and patch AUC per query."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from core.checkpoint import Loaded


def evaluate_grounding(loaded: Loaded, data: str | Path, split: str, queries: list[str], *, zoom: int = 1,
                       n: int = 200, out: Path | None = None, progress: bool = True) -> dict:
    """For each query naming world sources: over up to ``n`` places whose tile mixes relevant and other cover
    (10-90 % relevant patches), the pointing-game accuracy, mean patch AUC, and the pointing game's chance level."""
    from tqdm.auto import tqdm

    from core.data.layouts import open_rows
    from core.grounding.heatmap import ground_text, patch_relevance
    from core.grounding.scoring import relevant_classes, score_tile
    from core.maps.tiles import WorldTiles
    from world.sources import sources_in_text

    rows = open_rows(data, split)
    places = []
    for _, table in rows.chunks(["latitude", "longitude"]):
        places += list(zip(table.column("latitude").to_pylist(), table.column("longitude").to_pylist()))
    tiles = WorldTiles(loaded.cfg)
    grid = loaded.cfg.image.grid
    views = {}
    per_query = []
    for q in queries:
        named = sources_in_text(q)
        if not named:
            continue
        classes = relevant_classes(named)
        hits, aucs, chance = [], [], []
        for lat, lon in tqdm(places, desc=f"grounding {q[:30]!r}", disable=not progress, leave=False):
            if len(hits) >= n:
                break
            if (lat, lon) not in views:
                views[(lat, lon)] = tiles.view(lat, lon, zoom)
            v = views[(lat, lon)]
            rel = patch_relevance(v.cover, classes, grid)
            share = float((rel >= 0.5).mean())
            if not 0.1 <= share <= 0.9:
                continue
            g = ground_text(loaded, v.image, zoom, tiles.gsd, q)
            s = score_tile(g.heat, rel)
            hits.append(s["pointing_hit"])
            aucs.append(s["auc"])
            chance.append(s["chance"])
        if hits:
            per_query.append({"query": q, "sources": named, "tiles": len(hits),
                              "pointing": float(np.mean(hits)), "pointing_chance": float(np.mean(chance)),
                              "patch_auc": float(np.nanmean(aucs))})
    overall = {}
    if per_query:
        overall = {k: float(np.mean([r[k] for r in per_query])) for k in ("pointing", "pointing_chance", "patch_auc")}
        overall["queries"] = len(per_query)
    result = {"zoom": zoom, "split": split, "checkpoint": loaded.fingerprint, "per_query": per_query,
              "overall": overall}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"grounding-eval-z{zoom}.json").write_text(json.dumps(result, indent=2))
        lines = ["| query | sources | tiles | pointing | chance | patch AUC |", "|---|---|---|---|---|---|"]
        for r in per_query:
            lines.append(f"| {r['query']} | {', '.join(r['sources'])} | {r['tiles']} | {r['pointing']:.3f} | "
                         f"{r['pointing_chance']:.3f} | {r['patch_auc']:.3f} |")
        (out / f"grounding-eval-z{zoom}.md").write_text("\n".join(lines) + "\n")
    return result
