"""Embedding a region once, as the large-scale job: batched, chunked on disk, resumable, shardable.

The cache folder holds ``region.json`` (grid, zoom, metadata, tile source, the checkpoint's fingerprint) and one
``chunks/NNNNN.npz`` per ``chunk`` tiles (embeddings + ground-truth cover fractions). A chunk file appears only when
complete (written to a temp name, then renamed), so an interrupted run resumes at the first missing chunk, and
``--shard i/n`` lets n processes or machines split the chunks (chunk j belongs to shard j mod n) into one folder.
A cache made by another checkpoint, grid or setting is refused, never mixed.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from contracts.durability import atomic_write_text, die_with_parent, sweep_stale
from contracts.errors import CheckpointError, ConfigError
from contracts.faults import fault_point
from contracts.image_prep import normalise
from contracts.schema import AUDIO_SOURCES, META_FIELDS, normalise_audio_source
from core.checkpoint import Loaded
from core.maps.grid import Grid
from core.maps.tiles import WorldTiles, render_views

REGION_FILE = "region.json"
CACHE_VERSION = 1


@dataclass(frozen=True)
class MetaOptions:
    """What the map tells the model about every tile: its position (default on), and optionally time and source."""

    latlon: bool = True
    hour: float | None = None
    month: float | None = None
    audio_source: str | None = None

    def __post_init__(self) -> None:
        if self.hour is not None and not 0 <= self.hour <= 23:
            raise ConfigError(f"--hour must be within 0-23, got {self.hour}")
        if self.month is not None and not 1 <= self.month <= 12:
            raise ConfigError(f"--month must be within 1-12, got {self.month}")
        if self.audio_source is not None:
            try:
                object.__setattr__(self, "audio_source", normalise_audio_source(self.audio_source))
            except ValueError as exc:
                raise ConfigError(str(exc)) from None

    def tensors(self, centres: np.ndarray) -> dict[str, torch.Tensor]:
        n = len(centres)
        mask = np.zeros((n, len(META_FIELDS)), np.float32)
        mask[:, 0] = float(self.latlon)
        mask[:, 1] = float(self.month is not None)
        mask[:, 2] = float(self.hour is not None)
        mask[:, 3] = float(self.audio_source is not None)
        src = AUDIO_SOURCES.index(self.audio_source) if self.audio_source else 0
        return {
            "lat": torch.as_tensor(centres[:, 0], dtype=torch.float32),
            "lon": torch.as_tensor(centres[:, 1], dtype=torch.float32),
            "month": torch.full((n,), float(self.month or 0)),
            "hour": torch.full((n,), float(self.hour or 0)),
            "audio_source": torch.full((n,), src, dtype=torch.long),
            "caption_source": torch.zeros(n, dtype=torch.long),
            "meta_mask": torch.from_numpy(mask),
        }


@dataclass
class RegionEmbeddings:
    grid: Grid
    zoom: int
    embeddings: np.ndarray  # (rows*cols, d) float32, L2-normalised
    fractions: np.ndarray  # (rows*cols, K) ground-truth cover fractions
    spec: dict


def parse_shard(text: str | None) -> tuple[int, int]:
    if not text:
        return 0, 1
    try:
        i, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard {text}: need 0 <= i < n")
    return i, n


def region_spec(loaded: Loaded, grid: Grid, zoom: int, meta: MetaOptions, source: WorldTiles, chunk: int) -> dict:
    return {
        "version": CACHE_VERSION,
        "fingerprint": loaded.fingerprint,
        "grid": grid.spec(),
        "zoom": zoom,
        "meta": asdict(meta),
        "tiles": source.describe(),
        "chunk": chunk,
    }


def _check_or_write_spec(cache: Path, spec: dict) -> None:
    f = cache / REGION_FILE
    if f.exists():
        try:
            old = json.loads(f.read_text())
        except ValueError:
            raise CheckpointError(f"{f} is not valid JSON: delete the cache folder {cache} to rebuild it") from None
        if old.get("fingerprint") != spec["fingerprint"]:
            raise CheckpointError(
                f"the map cache {cache} was made by another checkpoint (fingerprint {str(old.get('fingerprint'))[:12]}"
                f", this one is {spec['fingerprint'][:12]}); use another --cache folder or delete it"
            )
        if old != spec:
            diff = sorted(k for k in spec if old.get(k) != spec[k])
            raise CheckpointError(f"the map cache {cache} was made with other settings ({', '.join(diff)}); "
                                  "use another --cache folder or delete it")
        return
    atomic_write_text(f, json.dumps(spec, indent=2), label="map.spec")  # unique temp name: two fillers never clash


@torch.no_grad()
def embed_views(loaded: Loaded, images: np.ndarray, zoom: int, gsd: float, meta: dict[str, torch.Tensor]) -> np.ndarray:
    cfg = loaded.cfg
    x = torch.from_numpy(normalise(images, cfg.image.mean, cfg.image.std))
    n = x.shape[0]
    enc = loaded.model.encode_image(x, torch.full((n,), zoom), torch.full((n,), gsd), meta)
    return enc.embedding.numpy().astype(np.float32)


def embed_region(loaded: Loaded, grid: Grid, zoom: int, meta: MetaOptions, cache: Path, *, seed: int | None = None,
                 shard: tuple[int, int] = (0, 1), chunk: int = 256, workers: int = 2,
                 progress: bool = True) -> RegionEmbeddings | None:
    """Embed this shard's missing chunks; return the whole region when every chunk is there, else None."""
    from tqdm.auto import tqdm

    if zoom not in loaded.cfg.image.zooms:
        raise ConfigError(f"--zoom must be one of {loaded.cfg.image.zooms}, got {zoom}")
    source = WorldTiles(loaded.cfg, seed)
    cache = Path(cache)
    spec = region_spec(loaded, grid, zoom, meta, source, chunk)
    _check_or_write_spec(cache, spec)
    chunks_dir = cache / "chunks"
    chunks_dir.mkdir(exist_ok=True)
    for stale in chunks_dir.glob(".*.tmp.npz"):  # a killed filler's half-written chunk (its pid is gone)
        sweep_stale(chunks_dir, stale.name.rsplit(".", 3)[0] + ".")
    centres = grid.centres()
    n_chunks = (len(centres) + chunk - 1) // chunk
    mine = [j for j in range(n_chunks) if j % shard[1] == shard[0] and not (chunks_dir / f"{j:05d}.npz").exists()]
    todo_tiles = sum(min(chunk, len(centres) - j * chunk) for j in mine)
    bar = tqdm(total=todo_tiles, desc=f"embedding tiles (shard {shard[0]}/{shard[1]})", unit="tile",
               disable=not progress)
    jobs = [(loaded.cfg, source.seed, centres[j * chunk:(j + 1) * chunk], zoom) for j in mine]
    t0 = time.perf_counter()
    done = 0
    with ProcessPoolExecutor(max_workers=max(1, workers), initializer=die_with_parent) if workers > 0 else \
            _Inline() as pool:
        for j, (images, fractions) in zip(mine, pool.map(render_views, jobs)):
            part = centres[j * chunk:(j + 1) * chunk]
            emb = embed_views(loaded, images, zoom, source.gsd, meta.tensors(part))
            # a temp name per process: two processes filling one cache write the same chunk's bytes side by side
            tmp = chunks_dir / f".{j:05d}.{os.getpid()}.tmp.npz"
            np.savez(tmp, embeddings=emb, fractions=fractions)
            fault_point("map.chunk")
            os.replace(tmp, chunks_dir / f"{j:05d}.npz")
            done += len(part)
            bar.update(len(part))
            bar.set_postfix(tiles_per_s=f"{done / max(time.perf_counter() - t0, 1e-9):.1f}")
    bar.close()
    return load_region(cache, grid)


class _Inline:
    """A stand-in for a process pool that runs in this process (workers=0)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @staticmethod
    def map(fn, jobs):
        return map(fn, jobs)


def load_region(cache: Path, grid: Grid | None = None) -> RegionEmbeddings | None:
    """The merged region from a complete cache, or None while chunks are missing (other shards still running)."""
    spec = json.loads((Path(cache) / REGION_FILE).read_text())
    g = spec["grid"]
    from core.maps.grid import BBox

    grid = grid or Grid(BBox.parse(g["bbox"]), g["rows"], g["cols"])
    n = grid.size
    chunk = spec["chunk"]
    files = [Path(cache) / "chunks" / f"{j:05d}.npz" for j in range((n + chunk - 1) // chunk)]
    if not all(f.exists() for f in files):
        return None
    embs, fracs = [], []
    for f in files:
        with np.load(f) as z:
            embs.append(z["embeddings"])
            fracs.append(z["fractions"])
    emb = np.concatenate(embs)
    if emb.shape[0] != n:
        raise CheckpointError(f"the map cache {cache} holds {emb.shape[0]} tiles, expected {n}: delete it to rebuild")
    return RegionEmbeddings(grid, spec["zoom"], emb, np.concatenate(fracs), spec)
