"""Maps over real imagery (``sat2sound map --imagery``): the region's views cut from the user's scene, not drawn.

Each grid cell's view is the square of ground the checkpoint's zoom saw in training (the zoom's crop fraction of
the world's native tile, e.g. 180 / 540 / 900 m), read from the imagery and resampled to the model's input size
(``imagery.views``). The GSD given to the positional encoding is the imagery's own (``--gsd`` overrides it). The
cache has the same layout and checks as the world's (``core.maps.region``), plus each view's valid share: a view
that is not all imagery (outside the scene, no-data) is left grey on the map and out of the scores. There is no
pixel-level truth for a real scene; the tiles' truth is the MODIS class at their centre, as its typical make-up.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from contracts.errors import ConfigError
from contracts.schema import ZOOM_CROP_FRACTION
from core.checkpoint import Loaded
from core.maps.grid import Grid
from core.maps.region import CACHE_VERSION, MetaOptions, RegionEmbeddings, _check_or_write_spec, embed_views


def zoom_ground_m(loaded: Loaded, zoom: int) -> float:
    """Ground side (m) of the checkpoint's view at a zoom: its crop fraction of the native tile's ground."""
    cfg = loaded.cfg
    fractions = ZOOM_CROP_FRACTION.get(cfg.image.imagery, {})
    if zoom not in cfg.image.zooms or zoom not in fractions:
        raise ConfigError(f"--zoom must be one of {cfg.image.zooms}, got {zoom}")
    return float(cfg.world.tile_ground_m) * float(fractions[zoom])


def truth_fractions(centres: np.ndarray) -> np.ndarray:
    """(n, K) fine-class fractions for real places: the typical make-up of the MODIS class at each centre."""
    from world.cover_classes import AREA_TO_FINE, COMPOSITION, FINE_CLASSES
    from world.landcover import landcover_class

    igbp = np.asarray(landcover_class(centres[:, 0], centres[:, 1])).reshape(-1)
    out = np.zeros((len(centres), len(FINE_CLASSES)), np.float32)
    out[:, AREA_TO_FINE] = COMPOSITION[np.clip(igbp, 0, len(COMPOSITION) - 1)]
    return out


def embed_imagery_region(loaded: Loaded, grid: Grid, zoom: int, meta: MetaOptions, cache: Path, imagery, *,
                         gsd_m: float | None = None, chunk: int = 256,
                         progress: bool = True) -> tuple[RegionEmbeddings, np.ndarray]:
    """Embed every view of the grid from the imagery -> (region, valid share per tile)."""
    from tqdm.auto import tqdm

    from imagery.tiles import views_for

    ground = zoom_ground_m(loaded, zoom)
    gsd = float(imagery.gsd_m if gsd_m is None else gsd_m)
    if not (gsd > 0 and np.isfinite(gsd)):
        raise ConfigError(f"--gsd must be a positive number of metres per pixel, got {gsd_m}")
    size = loaded.cfg.image.image_size
    spec = {"version": CACHE_VERSION, "fingerprint": loaded.fingerprint, "grid": grid.spec(), "zoom": zoom,
            "meta": asdict(meta), "tiles": {**imagery.describe(), "view_ground_m": ground, "image_size": size,
                                            "gsd_given_m": gsd}, "chunk": chunk}
    cache = Path(cache)
    _check_or_write_spec(cache, spec)
    chunks = cache / "chunks"
    chunks.mkdir(exist_ok=True)
    centres = grid.centres()
    n_chunks = (len(centres) + chunk - 1) // chunk
    bar = tqdm(total=len(centres), desc="embedding imagery views", unit="view", disable=not progress)
    t0 = time.perf_counter()
    for j in range(n_chunks):
        part = centres[j * chunk:(j + 1) * chunk]
        path = chunks / f"{j:05d}.npz"
        if not path.exists():
            images, valid = views_for(imagery, part, ground, size)
            emb = embed_views(loaded, images, zoom, gsd, meta.tensors(part))
            tmp = chunks / f".{j:05d}.tmp.npz"
            np.savez(tmp, embeddings=emb, fractions=truth_fractions(part), valid=valid)
            os.replace(tmp, path)
        bar.update(len(part))
        bar.set_postfix(views_per_s=f"{bar.n / max(time.perf_counter() - t0, 1e-9):.1f}")
    bar.close()
    embs, fracs, valid_all = [], [], []
    for j in range(n_chunks):
        with np.load(chunks / f"{j:05d}.npz") as z:
            embs.append(z["embeddings"])
            fracs.append(z["fractions"])
            valid_all.append(z["valid"])
    region = RegionEmbeddings(grid, zoom, np.concatenate(embs), np.concatenate(fracs), spec)
    return region, np.concatenate(valid_all)


def imagery_overview(imagery, bbox, width: int = 480) -> np.ndarray:
    """The imagery over the bbox as one RGB picture (for the map's left panel)."""
    import math

    from imagery.views import read_view

    mid = math.radians((bbox.lat0 + bbox.lat1) / 2)
    width_m = (bbox.lon1 - bbox.lon0) * 111_320.0 * math.cos(mid)
    height_m = (bbox.lat1 - bbox.lat0) * 110_540.0
    side = max(width_m, height_m)
    scene = imagery.scenes[0]
    v = read_view(scene, (bbox.lat0 + bbox.lat1) / 2, (bbox.lon0 + bbox.lon1) / 2, side, width)
    rgb = v.rgb.copy()
    rgb[~v.valid] = 217
    # crop the square to the bbox's shape
    h = max(1, int(round(width * height_m / side)))
    w = max(1, int(round(width * width_m / side)))
    top, left = (width - h) // 2, (width - w) // 2
    return rgb[top:top + h, left:left + w]


def save_imagery_map_png(path: Path, scores: np.ndarray, bbox, picture: np.ndarray, title: str,
                         subtitle: str = "") -> Path:
    """Three panels: the imagery, the MODIS reference, the soundscape scores (no-data tiles grey)."""
    from core.maps.render import save_map_png

    return save_map_png(path, scores, bbox, title, subtitle, picture=picture)
