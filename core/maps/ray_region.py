"""Embedding a region on Ray (``sat2sound map --engine ray``): the same chunks, cache and resume as the local engine.

Each missing chunk of the cache (``core.maps.region``) is one Ray task. A worker loads the checkpoint once, from
the same path (every node must see it: a shared filesystem, or the same folder copied to each), checks its
fingerprint against the driver's, and renders and embeds whole chunks; the driver writes each chunk file
atomically as it arrives, so an interrupted job resumes at the missing chunks, whichever engine ran first, and
``--shard i/n`` still splits a region between jobs. A chunk lost with a killed worker is run again; a chunk is
written once.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contracts.errors import CheckpointError, ConfigError
from core.checkpoint import Loaded
from core.maps.grid import Grid
from core.maps.region import (
    MetaOptions,
    RegionEmbeddings,
    _check_or_write_spec,
    embed_views,
    load_region,
    region_spec,
)
from core.maps.tiles import WorldTiles, render_views
from engine.config import EngineConfig
from engine.ray_run import RunReport, Task, run_tasks


@dataclass(frozen=True)
class ChunkEmbedder:
    """Built once per Ray worker: the model, loaded from ``ckpt`` and checked against ``fingerprint``."""

    ckpt: str
    fingerprint: str
    zoom: int
    meta: MetaOptions
    seed: int | None

    def __call__(self) -> _EmbedChunk:
        from core.checkpoint import load_checkpoint

        where = f"the Ray worker on {socket.gethostname()} (pid {os.getpid()})"
        if not Path(self.ckpt).is_dir() or not os.access(self.ckpt, os.R_OK | os.X_OK):
            raise CheckpointError(f"{where} cannot read the checkpoint folder {self.ckpt}: every node needs it at "
                                  "the same path (a shared filesystem, or the folder copied to each node)")
        try:
            loaded = load_checkpoint(self.ckpt)
        except OSError as exc:
            raise CheckpointError(f"{where} cannot read the checkpoint {self.ckpt} ({exc.strerror or exc}): every "
                                  "node needs it at the same path") from None
        if loaded.fingerprint != self.fingerprint:
            raise CheckpointError(f"{where} found another checkpoint at {self.ckpt} (fingerprint "
                                  f"{loaded.fingerprint[:12]}, the job's is {self.fingerprint[:12]}): copy the same "
                                  "folder to every node")
        return _EmbedChunk(loaded, self.zoom, self.meta, self.seed)


class _EmbedChunk:
    def __init__(self, loaded: Loaded, zoom: int, meta: MetaOptions, seed: int | None):
        self.loaded, self.zoom, self.meta = loaded, zoom, meta
        self.source = WorldTiles(loaded.cfg, seed)

    def __call__(self, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images, fractions = render_views((self.loaded.cfg, self.source.seed, centres, self.zoom))
        emb = embed_views(self.loaded, images, self.zoom, self.source.gsd, self.meta.tensors(centres))
        return emb, fractions


def embed_region_ray(loaded: Loaded, grid: Grid, zoom: int, meta: MetaOptions, cache: Path, engine: EngineConfig,
                     *, seed: int | None = None, shard: tuple[int, int] = (0, 1), chunk: int = 256,
                     progress: bool = True) -> tuple[RegionEmbeddings | None, RunReport]:
    """Embed this shard's missing chunks on Ray; (the whole region when every chunk is there else None, the run)."""
    if zoom not in loaded.cfg.image.zooms:
        raise ConfigError(f"--zoom must be one of {loaded.cfg.image.zooms}, got {zoom}")
    source = WorldTiles(loaded.cfg, seed)
    cache = Path(cache)
    _check_or_write_spec(cache, region_spec(loaded, grid, zoom, meta, source, chunk))
    chunks_dir = cache / "chunks"
    chunks_dir.mkdir(exist_ok=True)
    centres = grid.centres()
    n_chunks = (len(centres) + chunk - 1) // chunk
    tasks = [Task(j, centres[j * chunk:(j + 1) * chunk], min(chunk, len(centres) - j * chunk))
             for j in range(n_chunks)
             if j % shard[1] == shard[0] and not (chunks_dir / f"{j:05d}.npz").exists()]

    def write(j: int, result: tuple[np.ndarray, np.ndarray]) -> None:
        emb, fractions = result
        tmp = chunks_dir / f".{j:05d}.{os.getpid()}.tmp.npz"  # the local engine's temp naming (one per process)
        np.savez(tmp, embeddings=emb, fractions=fractions)
        os.replace(tmp, chunks_dir / f"{j:05d}.npz")

    factory = ChunkEmbedder(str(Path(loaded.path).resolve()), loaded.fingerprint, zoom, meta, source.seed)
    report = run_tasks(engine, factory, tasks, write, desc=f"embedding tiles (shard {shard[0]}/{shard[1]})",
                       unit="tile", progress=progress)
    return load_region(cache, grid), report
