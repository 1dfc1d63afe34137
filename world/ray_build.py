"""Building the world on Ray (``sat2sound data build --engine ray``): each Parquet shard is one retryable task.

Every sample is a pure function of (seed, index) (world.build), so a shard's bytes do not depend on which worker
made it: the driver plans the places and splits as the local build does, workers render whole shards and send
their bytes back, and the driver writes each one atomically into a staging folder beside the target
(``.NAME.ray-parts-KEY``, KEY naming the build's settings). A rerun after an interruption makes only the missing
shards; when all are there the driver writes world.json and renames the folder into place, the same bytes as a
local build. A shard lost with a killed worker is made again; a shard is written once.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from contracts.schema import SPLITS
from engine.config import EngineConfig
from engine.ray_run import RunReport, Task, run_tasks
from world import landcover, real_audio
from world.shards import WORLD_JSON, shard_name, write_shard


@dataclass(frozen=True)
class ShardMaker:
    """Built once per Ray worker: the land-cover raster and (for a real-audio world) the decoded recordings."""

    ctx: object  # world.build._Context
    sample_rate: int

    def __call__(self) -> _MakeShard:
        landcover.raster()
        if getattr(self.ctx, "real_sources", False):
            real_audio.installed().decode_all(self.sample_rate)
        return _MakeShard(self.ctx)


class _MakeShard:
    def __init__(self, ctx):
        self.ctx = ctx

    def __call__(self, jobs: list[tuple[int, float, float, str]]) -> bytes:
        from world.build import make_sample

        buf = io.BytesIO()
        write_shard([make_sample(self.ctx, *job) for job in jobs], buf)
        return buf.getvalue()


def staging_for(out_dir: Path, key: dict) -> Path:
    """The resumable staging folder of a Ray build of ``out_dir`` with build key ``key``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return out_dir.parent / f".{out_dir.name}.ray-parts-{digest}"


def build_world_ray(cfg, ctx, out_dir: Path, key: dict, seed: int, n: int, engine: EngineConfig,
                    progress: bool = True) -> tuple[Path, RunReport]:
    """Make the missing shards of the world on Ray, then publish it at ``out_dir`` (world.json + rename)."""
    from world.build import plan_locations, world_meta
    from world.locations import assign_splits

    staging = staging_for(out_dir, key)
    data = staging / "data"
    data.mkdir(parents=True, exist_ok=True)
    locations = plan_locations(n, seed)
    splits = assign_splits([p[0] for p in locations], [p[1] for p in locations], cfg.world.cell_deg,
                           cfg.world.split_fractions, seed)
    by_split = {s: [i for i in range(n) if splits[i] == s] for s in SPLITS}
    size = cfg.world.shard_size
    names, tasks = [], []
    for s in SPLITS:
        n_sh = math.ceil(len(by_split[s]) / size)
        for i in range(n_sh):
            name = shard_name(s, i, n_sh)
            names.append(name)
            if not (data / name).exists():
                jobs = [(j, *locations[j]) for j in by_split[s][i * size:(i + 1) * size]]
                tasks.append(Task(name, jobs, len(jobs)))

    def write(name: str, blob: bytes) -> None:
        tmp = data / f".{name}.tmp"
        tmp.write_bytes(blob)
        os.replace(tmp, data / name)

    report = run_tasks(engine, ShardMaker(ctx, cfg.audio.sample_rate), tasks, write, desc="world", unit="sample",
                       progress=progress)
    paths = [data / name for name in names]
    meta = world_meta(cfg, key, seed, n, by_split, paths)
    (staging / WORLD_JSON).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    if out_dir.exists():
        out_dir.rmdir()  # only ever an empty folder here (build_world checked)
    os.replace(staging, out_dir)
    return out_dir, report
