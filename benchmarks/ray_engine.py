"""The Ray engine against the local one (issue 18): a 10,000-tile region map, the start-up cost, a killed worker,
and a projection to the contiguous USA at 1 km.

    python -m benchmarks.ray_engine [--ckpt runs/demo/teacher] [--tiles 10000] [--out runs/bench]

Runs, each into a fresh cache: the local engine as ``sat2sound map`` runs it (2 rendering processes, torch on the
machine's threads); the local engine on one torch thread (the Ray workers' count: the bit-for-bit control); Ray
with 1 and 2 workers (each run starts its own local runtime, as the CLI does, so the start-up is counted); Ray with
2 workers and one worker process killed (SIGKILL) a quarter of the way through. Every cache is compared with the
others chunk by chunk. Writes ``OUT/ray_engine.json`` and ``.md``. Run it under the bench lock.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from core.checkpoint import load_checkpoint
from core.maps.grid import BBox, Grid, make_grid
from core.maps.ray_region import embed_region_ray
from core.maps.region import MetaOptions, embed_region
from engine.config import EngineConfig
from engine.ray_run import local_worker_pids

USA = BBox(-125.0, 24.5, -66.5, 49.5)
USA_1KM_TILES = 8_080_000  # the contiguous USA's area, about 8.08 million km2: one 1 km tile per km2


def grid_of(tiles: int) -> Grid:
    """The USA box on the grid whose tile count is nearest ``tiles``."""
    best = min((make_grid(USA, c) for c in range(20, 400)), key=lambda g: abs(g.size - tiles))
    return best


def read_chunks(cache: Path) -> dict[str, tuple[np.ndarray, np.ndarray, bytes]]:
    out = {}
    for p in sorted((cache / "chunks").glob("*.npz")):
        with np.load(p) as z:
            out[p.name] = (z["embeddings"], z["fractions"], p.read_bytes())
    return out


def compare(a: dict, b: dict) -> dict:
    same_names = sorted(a) == sorted(b)
    common = sorted(set(a) & set(b))
    return {"same_chunks": same_names, "chunks": len(common),
            "bytes_equal": same_names and all(a[k][2] == b[k][2] for k in common),
            "fractions_equal": all(np.array_equal(a[k][1], b[k][1]) for k in common),
            "max_abs_diff_embeddings": float(max(np.abs(a[k][0] - b[k][0]).max() for k in common)),
            "tiles": int(sum(len(a[k][0]) for k in common))}


def run_local(loaded, grid: Grid, cache: Path, chunk: int, threads: int | None) -> dict:
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    try:
        embed_region(loaded, grid, 1, MetaOptions(), cache, chunk=chunk, workers=2, progress=False)
    finally:
        torch.set_num_threads(before)
    wall = time.perf_counter() - t0
    return {"engine": "local", "torch_threads": threads or before, "wall_s": round(wall, 2),
            "tiles_per_s": round(grid.size / wall, 1)}


def run_ray(loaded, grid: Grid, cache: Path, chunk: int, workers: int, kill_at: float | None = None) -> dict:
    killed: list[dict] = []
    n_chunks = math.ceil(grid.size / chunk)
    start = time.monotonic()

    def killer() -> None:
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline and not killed:
            done = len(list((cache / "chunks").glob("0*.npz"))) if (cache / "chunks").is_dir() else 0
            pids = local_worker_pids()
            if done >= kill_at * n_chunks and pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append({"pid": pids[0], "chunks_done_at_kill": done,
                               "seconds_into_run": round(time.monotonic() - start, 1)})
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True) if kill_at is not None else None
    if thread:
        thread.start()
    engine = EngineConfig(kind="ray", workers=workers, local_cpus=2)
    t0 = time.perf_counter()
    region, rep = embed_region_ray(loaded, grid, 1, MetaOptions(), cache, engine, chunk=chunk, progress=False)
    wall = time.perf_counter() - t0
    if thread:
        thread.join(timeout=5)
    assert region is not None, "the Ray run left chunks missing"
    work = wall - rep.startup_s
    row = {"engine": "ray", "workers": rep.workers, "wall_s": round(wall, 2), "startup_s": round(rep.startup_s, 2),
           "tiles_per_s": round(grid.size / wall, 1), "tiles_per_s_after_startup": round(grid.size / work, 1),
           "tasks": rep.tasks, "done": rep.done, "retried": rep.retried, "retried_chunks": rep.retried_keys,
           "duplicates": rep.duplicates}
    if kill_at is not None:
        row["killed"] = killed[0] if killed else None
    return row


def projection(per_tile_s_machine: float, startup_s: float, chunk_bytes: float, chunk: int) -> list[dict]:
    """Hours for the USA at 1 km on N machines like this one (2 cores, 2 workers each), from the measured cost."""
    rows = []
    for n in (1, 10, 50, 100, 500):
        hours = (USA_1KM_TILES * per_tile_s_machine / n + startup_s) / 3600
        rows.append({"machines": n, "hours": round(hours, 2)})
    return [{"tiles": USA_1KM_TILES, "cache_gb": round(USA_1KM_TILES / chunk * chunk_bytes / 1e9, 2)}, *rows]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default="runs/demo/teacher")
    ap.add_argument("--tiles", type=int, default=10_000)
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--out", default="runs/bench")
    args = ap.parse_args(argv)
    loaded = load_checkpoint(args.ckpt)
    grid = grid_of(args.tiles)
    load = {"start": [round(x, 2) for x in os.getloadavg()]}
    tmp = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    runs: dict[str, dict] = {}
    try:
        runs["local"] = run_local(loaded, grid, tmp / "local", args.chunk, None)
        runs["local_1_thread"] = run_local(loaded, grid, tmp / "local1", args.chunk, 1)
        runs["ray_1_worker"] = run_ray(loaded, grid, tmp / "ray1", args.chunk, 1)
        runs["ray_2_workers"] = run_ray(loaded, grid, tmp / "ray2", args.chunk, 2)
        runs["ray_2_workers_one_killed"] = run_ray(loaded, grid, tmp / "kill", args.chunk, 2, kill_at=0.25)
        load["end"] = [round(x, 2) for x in os.getloadavg()]
        caches = {k: read_chunks(tmp / d) for k, d in (("local", "local"), ("local_1_thread", "local1"),
                                                        ("ray_1_worker", "ray1"), ("ray_2_workers", "ray2"),
                                                        ("ray_2_workers_one_killed", "kill"))}
        checks = {f"{k} vs {ref}": compare(caches[ref], caches[k]) for ref, k in (
            ("local_1_thread", "ray_1_worker"), ("local_1_thread", "ray_2_workers"),
            ("local_1_thread", "ray_2_workers_one_killed"), ("local", "ray_2_workers"),
            ("local", "local_1_thread"))}
        chunk_bytes = float(np.mean([len(v[2]) for v in caches["local"].values()]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    r2 = runs["ray_2_workers"]
    per_tile = (r2["wall_s"] - r2["startup_s"]) / grid.size  # seconds per tile on this 2-core machine
    result = {"grid": grid.spec(), "tiles": grid.size, "chunk": args.chunk, "checkpoint": loaded.fingerprint[:12],
              "preset": loaded.cfg.name, "machine": {"cpus": os.cpu_count(), "loadavg": load},
              "runs": runs, "equal": checks, "per_tile_s_2_workers": per_tile,
              "projection_usa_1km": projection(per_tile, r2["startup_s"], chunk_bytes, args.chunk)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ray_engine.json").write_text(json.dumps(result, indent=2, default=str))
    (out / "ray_engine.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(r: dict) -> str:
    lines = [f"# Ray engine: {r['tiles']:,}-tile map ({r['grid']['rows']} x {r['grid']['cols']}, zoom 1, "
             f"{r['preset']} teacher {r['checkpoint']}), chunks of {r['chunk']}",
             "", f"Machine: {r['machine']['cpus']} CPUs, load average {r['machine']['loadavg']}", "",
             "| run | workers | wall s | start-up s | tiles/s | tiles/s after start-up | tasks run again |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, x in r["runs"].items():
        lines.append(f"| {name} | {x.get('workers', '-')} | {x['wall_s']} | {x.get('startup_s', '-')} | "
                     f"{x['tiles_per_s']} | {x.get('tiles_per_s_after_startup', '-')} | {x.get('retried', '-')} |")
    lines += ["", "| outputs compared | chunks | bytes equal | cover fractions equal | max abs diff, embeddings |",
              "|---|---:|---|---|---:|"]
    for name, c in r["equal"].items():
        lines.append(f"| {name} | {c['chunks']} | {c['bytes_equal']} | {c['fractions_equal']} | "
                     f"{c['max_abs_diff_embeddings']:.2e} |")
    k = r["runs"]["ray_2_workers_one_killed"]
    lines += ["", f"Killed worker: {k.get('killed')}; tasks {k['tasks']}, done {k['done']}, run again {k['retried']} "
                  f"({k['retried_chunks']}), duplicates {k['duplicates']}, wall {k['wall_s']} s", "",
              f"Projection, contiguous USA at 1 km ({r['projection_usa_1km'][0]['tiles']:,} tiles, cache "
              f"{r['projection_usa_1km'][0]['cache_gb']} GB), {r['per_tile_s_2_workers'] * 1000:.2f} ms per tile "
              "on one 2-core machine with 2 Ray workers:", "", "| machines | hours |", "|---:|---:|"]
    lines += [f"| {p['machines']} | {p['hours']} |" for p in r["projection_usa_1km"][1:]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
