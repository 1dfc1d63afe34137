"""Real embeddings at gallery scale for the search benchmark: a trained checkpoint's own vectors, not synthetic ones.

Items: the checkpoint's image embeddings of ``n`` world tiles, spread over several land regions and the three zooms
(the same vectors the soundscape maps compute; made with ``core.maps.region.embed_region``, so they are cached on
disk, resumable and refused when the checkpoint changes). Queries, as at run time, come from outside the items:
half are text embeddings of the world's image captions ("what would you hear here"), half are image embeddings of
places on a grid offset by half a cell (so never items themselves).

Making 100,000 tiles takes about 15-20 minutes on 2 idle cores the first time (rendering + the image tower, about
100 tiles/s); later runs read the cache. A million real tiles would take hours here, so ``expand_items`` grows a
real set to any size with places *between* its tiles (see there); ``split_queries`` holds tuning queries apart
from the ones a benchmark scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Land regions of the embedded world (its land cover is global MODIS): bbox "lon0,lat0,lon1,lat1".
REGIONS: tuple[tuple[str, str], ...] = (
    ("usa", "-125,24.5,-66.5,49.5"),
    ("europe", "-10,36,30,60"),
    ("south-america", "-80,-35,-35,5"),
    ("africa", "-17,-30,45,30"),
    ("east-asia", "100,20,145,45"),
    ("australia", "113,-39,154,-11"),
    ("india", "68,8,90,30"),
)
ZOOMS = (1, 3, 5)
# where the few tiles come from that rounding the grids leaves short of n
TOP_UP: tuple[str, str] = ("central-america", "-106,8,-77,23")


@dataclass(frozen=True)
class TeacherData:
    items: np.ndarray
    queries: np.ndarray
    query_kinds: np.ndarray  # "text" or "place" per query
    description: str


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _region_cells(n: int) -> list[tuple[str, str, int, int]]:
    """(name, bbox, zoom, cols) per region x zoom so that all grids hold about n tiles together."""
    from core.maps.grid import BBox, make_grid

    share = n / (len(REGIONS) * len(ZOOMS))
    out = []
    for name, text in REGIONS:
        bbox = BBox.parse(text)
        unit = make_grid(bbox, 100)  # rows/cols ratio of this box
        ratio = unit.rows / unit.cols
        cols = max(2, round((share / ratio) ** 0.5))
        for zoom in ZOOMS:
            out.append((name, text, zoom, cols))
    total = sum(make_grid(BBox.parse(text), cols).size for _, text, _, cols in out)
    if total < n:  # grids round to whole rows: top up with one more grid so that there are at least n tiles
        name, text = TOP_UP
        cols = 2
        while make_grid(BBox.parse(text), cols).size < n - total:
            cols += 1
        out.append((name, text, ZOOMS[1], cols))
    return out


def _offset_grid(grid):
    """The same grid shifted by half a cell: places between the items' tile centres."""
    from core.maps.grid import BBox, Grid

    b = grid.bbox
    dlon, dlat = (b.lon1 - b.lon0) / grid.cols, (b.lat1 - b.lat0) / grid.rows
    shifted = BBox(b.lon0 + dlon / 2, b.lat0 + dlat / 2, b.lon1 + dlon / 2, b.lat1 + dlat / 2)
    return Grid(shifted, grid.rows, grid.cols)


def teacher_data(ckpt: Path, world: Path, n: int, q: int, seed: int, cache_root: Path,
                 progress: bool = True) -> TeacherData:
    from core.checkpoint import load_checkpoint
    from core.maps.grid import BBox, make_grid
    from core.maps.region import MetaOptions, embed_region
    from world.shards import read_split

    loaded = load_checkpoint(ckpt)
    fp = loaded.fingerprint[:12]
    meta = MetaOptions(latlon=True)
    items, place_queries = [], []
    rng = np.random.default_rng(seed)
    cells = _region_cells(n)
    per_cell_q = max(1, (q - q // 2) // len(cells) + 1)
    for name, text, zoom, cols in cells:
        grid = make_grid(BBox.parse(text), cols)
        region = embed_region(loaded, grid, zoom, meta, cache_root / f"{fp}-{name}-z{zoom}-c{cols}", progress=progress)
        items.append(region.embeddings)
        # query places: a few cells of the half-cell-shifted grid, embedded directly (not worth a cache)
        shifted = _offset_grid(grid)
        pick = rng.choice(shifted.size, size=min(per_cell_q, shifted.size), replace=False)
        place_queries.append(_embed_places(loaded, shifted.centres()[pick], zoom, meta))
    items_arr = _unit(np.concatenate(items))
    if len(items_arr) > n:
        items_arr = items_arr[np.sort(rng.choice(len(items_arr), size=n, replace=False))]
    places = _unit(np.concatenate(place_queries))
    places = places[rng.choice(len(places), size=min(len(places), q - q // 2), replace=False)]

    captions = read_split(Path(world), "test", columns=[f"llava_caption_bingmap_zl{z}" for z in ZOOMS]).to_pydict()
    texts = sorted({c for col in captions.values() for c in col if c})
    texts = [texts[i] for i in rng.choice(len(texts), size=min(len(texts), q // 2), replace=False)]
    text_vecs = _unit(_embed_texts(loaded, texts))

    queries = np.concatenate([text_vecs, places])
    kinds = np.array(["text"] * len(text_vecs) + ["place"] * len(places))
    desc = (f"real embeddings of checkpoint {fp}: {len(items_arr)} world-tile image embeddings over "
            f"{len({c[0] for c in cells})} land regions x zooms {ZOOMS} as items; queries {len(text_vecs)} caption "
            f"text embeddings (world test split) + {len(places)} image embeddings of places between the items' "
            "tile centres")
    return TeacherData(items_arr, queries.astype(np.float32), kinds, desc)


def _embed_places(loaded, centres: np.ndarray, zoom: int, meta) -> np.ndarray:
    from core.maps.region import embed_views
    from core.maps.tiles import WorldTiles, render_views

    source = WorldTiles(loaded.cfg)
    images, _ = render_views((loaded.cfg, source.seed, centres, zoom))
    return embed_views(loaded, images, zoom, source.gsd, meta.tensors(centres))


def _embed_texts(loaded, texts: list[str], batch: int = 64) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for s in range(0, len(texts), batch):
            out.append(loaded.model.encode_text(texts[s:s + batch]).embedding.numpy())
    return np.concatenate(out).astype(np.float32)


def expand_items(items: np.ndarray, n: int, seed: int = 0, neighbours: int = 8, chunk: int = 8192) -> np.ndarray:
    """``n`` unit vectors: the real ``items`` first, then derived ones, each a random mix of a real item and one of
    its ``neighbours`` nearest real items (weight 0.2-0.8 on either side), renormalised - a stand-in for a tile
    between two similar tiles, staying on the embeddings' own manifold (not isotropic noise around it).

    Nearest neighbours come from FAISS exact search (the build side's reference library)."""
    from gallery.tuning import exact_truth

    items = _unit(np.asarray(items, dtype=np.float32))
    if n <= len(items):
        return items[:n]
    rng = np.random.default_rng(seed)
    extra = n - len(items)
    base = rng.integers(0, len(items), size=extra)
    out = np.empty((extra, items.shape[1]), dtype=np.float32)
    for s in range(0, extra, chunk):
        b = base[s:s + chunk]
        rows, _ = exact_truth(items, items[b], neighbours + 1, threads=2)
        other = rows[np.arange(len(b)), rng.integers(1, neighbours + 1, size=len(b))]  # column 0 is the item itself
        w = rng.uniform(0.2, 0.8, size=(len(b), 1)).astype(np.float32)
        out[s:s + len(b)] = w * items[b] + (1 - w) * items[other]
    return np.concatenate([items, _unit(out)])


def split_queries(queries: np.ndarray, kinds: np.ndarray, seed: int = 0
                  ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((tune queries, kinds), (held-out queries, kinds)): each kind of query split in two halves at random."""
    rng = np.random.default_rng(seed)
    tune, held = [], []
    for kind in sorted(set(kinds.tolist())):
        idx = rng.permutation(np.flatnonzero(kinds == kind))
        tune.append(idx[: len(idx) // 2])
        held.append(idx[len(idx) // 2:])
    t, h = np.concatenate(tune), np.concatenate(held)
    return (queries[t], kinds[t]), (queries[h], kinds[h])
