"""The Ray engine (issue 18): map, gallery and world builds on Ray give the local engine's outputs, resume, survive a
killed worker with every piece exactly once, and fail with one clear line on bad input.

One local Ray runtime (2 CPUs, no dashboard, a small object store) serves the module and is stopped at its end.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import save_untrained

from contracts.errors import ConfigError
from core.checkpoint import load_checkpoint
from core.maps.grid import BBox, make_grid
from core.maps.region import MetaOptions, embed_region
from engine.config import EngineConfig, EngineError

ray = pytest.importorskip("ray")

RAY = EngineConfig(kind="ray", workers=2)
BLOCKER = '''import sys
class _NoProject:
    """A node where the project is not installed: its packages cannot be imported."""
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"contracts", "engine", "world", "core", "gallery"}:
            raise ModuleNotFoundError(f"No module named {name.split('.')[0]!r}", name=name)
        return None
sys.meta_path.insert(0, _NoProject())
'''


@pytest.fixture(scope="module")
def ray_runtime():
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=96 * 2**20,
             log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_cfg):
    return save_untrained(tmp_path_factory, tiny_cfg, "ray-maps")


def _chunks(cache: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((cache / "chunks").glob("*.npz"))}


def _local_map(loaded, grid, cache: Path, chunk: int) -> dict[str, bytes]:
    """The local engine's chunks, embedded on one torch thread as each Ray worker does (the same thread count
    gives the same float bits; across counts they agree to about 1e-7)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        embed_region(loaded, grid, 1, MetaOptions(), cache, chunk=chunk, workers=0, progress=False)
    finally:
        torch.set_num_threads(threads)
    return _chunks(cache)


def test_map_on_ray_writes_the_local_chunks_byte_for_byte_and_resumes(ray_runtime, ckpt, tmp_path):
    from core.maps.ray_region import embed_region_ray

    loaded = load_checkpoint(ckpt)
    grid = make_grid(BBox(-95, 38, -91, 41), 10)
    local = _local_map(loaded, grid, tmp_path / "local", 16)
    region, report = embed_region_ray(loaded, grid, 1, MetaOptions(), tmp_path / "ray", RAY, chunk=16,
                                      progress=False)
    assert report.done == report.tasks == len(local) > 3 and report.retried == 0
    assert _chunks(tmp_path / "ray") == local
    assert region is not None and region.embeddings.shape == (grid.size, loaded.cfg.model.codebook.dim)
    # an interrupted job: two chunks missing; the rerun makes exactly those two
    for name in ("00001.npz", "00003.npz"):
        (tmp_path / "ray" / "chunks" / name).unlink()
    kept = (tmp_path / "ray" / "chunks" / "00000.npz").stat().st_ino
    one = EngineConfig(kind="ray", workers=1)
    _, again = embed_region_ray(loaded, grid, 1, MetaOptions(), tmp_path / "ray", one, chunk=16, progress=False)
    assert again.tasks == again.done == 2
    assert (tmp_path / "ray" / "chunks" / "00000.npz").stat().st_ino == kept
    assert _chunks(tmp_path / "ray") == local


def test_a_killed_worker_costs_only_its_task_and_no_tile_is_lost_or_doubled(ray_runtime, ckpt, tmp_path):
    from core.maps.ray_region import embed_region_ray
    from engine.ray_run import local_worker_pids

    loaded = load_checkpoint(ckpt)
    grid = make_grid(BBox(-100, 35, -90, 42), 14)  # 168 tiles in chunks of 8: 21 tasks
    killed: list[int] = []

    def kill_one_mid_job() -> None:
        chunks = tmp_path / "ray" / "chunks"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            done = len(list(chunks.glob("0*.npz"))) if chunks.is_dir() else 0
            pids = local_worker_pids("_Host.run")  # a worker running a chunk now
            if done >= 2 and pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(done)
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one_mid_job)
    killer.start()
    region, report = embed_region_ray(loaded, grid, 1, MetaOptions(), tmp_path / "ray", RAY, chunk=8,
                                      progress=False)
    killer.join()
    n_chunks = (grid.size + 7) // 8
    assert killed and killed[0] < n_chunks, "the worker was not killed mid-job"
    assert report.retried >= 1 and report.done == report.tasks == n_chunks and report.duplicates == 0
    assert sorted(p.name for p in (tmp_path / "ray" / "chunks").iterdir()) == [f"{j:05d}.npz" for j in
                                                                               range(n_chunks)]
    assert region is not None and region.embeddings.shape[0] == grid.size
    assert _chunks(tmp_path / "ray") == _local_map(loaded, grid, tmp_path / "local", 8)


def test_map_shards_split_between_ray_and_the_local_engine_give_the_one_shot_local_map(ray_runtime, ckpt, tmp_path,
                                                                                          capsys):
    """``sat2sound map --shard 0/2 --engine ray`` and ``--shard 1/2`` on the local engine, into one --cache: the
    second draws the map, and its chunks and scores are the one-shot local map's."""
    import torch

    from core.cli import main

    args = ["map", "--ckpt", str(ckpt), "--bbox", "-95,38,-92,40", "--cols", "8", "--query", "birds chirping",
            "--chunk", "8", "--no-progress"]
    grid = make_grid(BBox(-95, 38, -92, 40), 8)  # 56 tiles in chunks of 8: 7 chunks, 4 in shard 0, 3 in shard 1
    n_chunks, evens = (grid.size + 7) // 8, [f"{j:05d}.npz" for j in range(0, (grid.size + 7) // 8, 2)]
    shared = ["--out", str(tmp_path / "sharded")]  # one --out: both shards write its default --cache
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the Ray workers' thread count for the local runs: the same float bits
    try:
        assert main([*args, *shared, "--shard", "0/2", "--engine", "ray", "--ray-workers", "1"]) == 0
        said = capsys.readouterr().out
        assert f"ray: {len(evens)} chunks on 1 workers" in said and "shard 0/2 done" in said
        [cache] = (tmp_path / "sharded").glob("cache-*")
        assert sorted(p.name for p in (cache / "chunks").glob("*.npz")) == evens
        assert not list(tmp_path.glob("sharded/*.png"))  # no map while shard 1 is missing
        assert main([*args, *shared, "--shard", "1/2", "--workers", "0"]) == 0
        assert main([*args, "--out", str(tmp_path / "one"), "--workers", "0"]) == 0
    finally:
        torch.set_num_threads(threads)
    merged = _chunks(cache)
    assert merged == _chunks(tmp_path / "one" / cache.name) and len(merged) == n_chunks
    sharded, one = (sorted((tmp_path / d).glob("map-*.npz")) for d in ("sharded", "one"))
    assert [p.name for p in sharded] == [p.name for p in one] and len(one) == 1
    with np.load(sharded[0]) as a, np.load(one[0]) as b:
        assert a["scores"].shape == (grid.rows, grid.cols)
        assert all(np.array_equal(a[k], b[k]) for k in b.files)


def test_world_build_on_ray_is_the_local_world_byte_for_byte_and_resumes(ray_runtime, tiny_cfg, tmp_path):
    from world.build import _build_key, build_world
    from world.ray_build import staging_for

    cfg = dataclasses.replace(tiny_cfg, world=dataclasses.replace(tiny_cfg.world, shard_size=6))
    local = build_world(cfg, tmp_path / "local", n_samples=30, workers=1, progress=False)
    files = sorted(p.relative_to(local) for p in local.rglob("*") if p.is_file())
    assert len(files) > 5
    # an interrupted Ray build: two shards already made; the rerun keeps them and makes the rest
    staging = staging_for(tmp_path / "ray", _build_key(cfg, cfg.world.seed, 30))
    (staging / "data").mkdir(parents=True)
    made = [f for f in files if f.suffix == ".parquet"][:2]
    for f in made:
        (staging / f).write_bytes((local / f).read_bytes())
    inodes = [(staging / f).stat().st_ino for f in made]
    out = build_world(cfg, tmp_path / "ray", n_samples=30, progress=False, engine=RAY)
    assert sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()) == files
    assert all((out / f).read_bytes() == (local / f).read_bytes() for f in files)  # world.json included
    assert [(out / f).stat().st_ino for f in made] == inodes and not staging.exists()


def _gallery_rows(folder: Path) -> dict[str, list]:
    from world.encoding import set_ogg_serial

    con = sqlite3.connect(folder / "gallery.db")
    rows = {t: list(con.execute(f"SELECT * FROM {t} ORDER BY rowid")) for t in ("items", "embeddings")}
    # libsndfile draws a random Ogg serial for every encode (a local rerun differs there too): compare the streams
    # with the serial set to 0, everything else byte for byte
    query = "SELECT item_id, format, sample_rate, seconds, sha256, bytes FROM clips ORDER BY rowid"
    rows["clips"] = [(*r[:4], set_ogg_serial(r[5], 0)) for r in con.execute(query)]
    con.close()
    return rows


GALLERY = {"batch_size": 3, "index": "exact", "progress": False, "workers": 1, "threads": 1}


@pytest.fixture(scope="module")
def gallery_parts(ckpt, tiny_world, tmp_path_factory):
    """The captions, the teacher and renderer, and the local engine's gallery of them (on the workers' 1 thread)."""
    import torch

    from gallery.build import build_gallery
    from gallery.captions import read_captions
    from gallery.embedder import TeacherEmbedder
    from gallery.renderers import get_renderer

    records = read_captions(tiny_world, limit=10)
    threads = torch.get_num_threads()
    embedder = TeacherEmbedder(ckpt, threads=1)
    try:
        renderer = get_renderer("procedural", seconds=2.0, sample_rate=embedder.sample_rate)
        local = build_gallery(records, tmp_path_factory.mktemp("gallery") / "local", embedder, renderer, **GALLERY)
    finally:
        torch.set_num_threads(threads)
    return records, embedder, renderer, local


def test_gallery_build_on_ray_equals_the_local_gallery(ray_runtime, gallery_parts, tmp_path):
    import torch

    from gallery.build import build_gallery

    records, embedder, renderer, local = gallery_parts
    threads = torch.get_num_threads()
    try:
        # an interrupted job (two batches committed by the local engine), finished on Ray: only the rest is made
        part = build_gallery(records, tmp_path / "ray", embedder, renderer, max_batches=2, **GALLERY)
        assert not part.finished and part.added == 6
        one = EngineConfig(kind="ray", workers=1)
        ray_run = build_gallery(records, tmp_path / "ray", embedder, renderer, engine=one, **GALLERY)
    finally:
        torch.set_num_threads(threads)
    assert ray_run.finished and ray_run.already == 6 and ray_run.added == 4
    assert ray_run.count == local.count == len(records)
    a, b = _gallery_rows(local.out), _gallery_rows(tmp_path / "ray")
    assert a["items"] == b["items"] and a["embeddings"] == b["embeddings"]
    assert [r[:3] + r[4:] for r in a["clips"]] == [r[:3] + r[4:] for r in b["clips"]]


def test_a_killed_worker_mid_gallery_build_loses_no_caption_and_doubles_none(ray_runtime, gallery_parts, tmp_path,
                                                                            caplog):
    """One of two workers is SIGKILLed while it runs a batch (one caption a batch, ten batches): its batches run
    again, and the gallery holds every caption once, with the local build's ids and captions and its vectors (to
    float rounding: that build embedded three captions a batch)."""
    from engine.ray_run import local_worker_pids
    from gallery.build import build_gallery

    records, embedder, renderer, local = gallery_parts
    committed: list[int] = []
    killed: list[int] = []
    over = threading.Event()

    def kill_a_busy_worker() -> None:  # a worker titled ray::_Host.run is running a task (a batch) now
        while not killed and not over.wait(0.01):
            if busy := local_worker_pids("_Host.run"):
                os.kill(busy[0], signal.SIGKILL)
                killed.append(len(committed))

    (killer := threading.Thread(target=kill_a_busy_worker)).start()
    try:
        with caplog.at_level("WARNING", logger="engine.ray_run"):
            built = build_gallery(records, tmp_path / "ray", embedder, renderer, engine=RAY, on_batch=committed.append,
                                  **{**GALLERY, "batch_size": 1})
    finally:
        over.set()
        killer.join()
    assert killed and killed[0] < len(records), "no Ray worker was killed mid-build"
    assert sum("a Ray worker died running task" in r.getMessage() for r in caplog.records) >= 1
    assert committed == list(range(len(records)))  # every batch committed once, in order
    assert built.finished and built.added == built.count == len(records)
    a, b = _gallery_rows(local.out), _gallery_rows(tmp_path / "ray")
    # every caption once: the local build's items (ids, dense labels, captions, sources), one clip and two vectors each
    assert a["items"] == b["items"] and len({r[0] for r in b["items"]}) == len(records)
    assert [r[:2] for r in a["embeddings"]] == [r[:2] for r in b["embeddings"]] and len(b["clips"]) == len(records)
    va, vb = (np.stack([np.frombuffer(r[2], dtype=np.float32) for r in rows["embeddings"]]) for rows in (a, b))
    assert np.allclose(va, vb, rtol=0, atol=1e-5), float(np.abs(va - vb).max())


# ------------------------------------------------------------------------------------------------ bad input


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_address_is_a_clear_error_within_seconds(ckpt, capsys):
    from core.cli import main
    from engine.ray_run import ray_session

    t0 = time.perf_counter()
    with pytest.raises(EngineError, match="no Ray cluster answers at 127.0.0.1"), \
            ray_session(EngineConfig(kind="ray", address=f"127.0.0.1:{_closed_port()}")):
        pass
    code = main(["map", "--ckpt", str(ckpt), "--bbox", "-95,38,-94,39", "--cols", "4", "--query", "birds",
                 "--out", str(ckpt.parent / "m"), "--engine", "ray", "--address", f"127.0.0.1:{_closed_port()}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no Ray cluster answers" in err[0] and "ray start --head" in err[0]
    assert time.perf_counter() - t0 < 20


def test_an_address_where_something_else_listens_is_a_clear_error_within_seconds(tmp_path):
    """A port that accepts connections but is no Ray head: Ray itself would retry for 20 s, printing a warning a
    second; the engine gives up after its connect timeout with one line."""
    import subprocess
    import sys

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    code = ("from engine.config import EngineConfig; from engine.ray_run import ray_session\n"
            f"with ray_session(EngineConfig(kind='ray', address='127.0.0.1:{server.getsockname()[1]}', "
            "connect_timeout_s=2)):\n    pass\n")
    t0 = time.perf_counter()
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                             cwd=Path(__file__).resolve().parents[1])
    finally:
        stop.set()
        thread.join()
        for c in held:
            c.close()
        server.close()
    assert time.perf_counter() - t0 < 30
    assert "EngineError: no Ray cluster answers at 127.0.0.1:" in out.stderr
    assert "connected, but no answer" in out.stderr


def test_the_address_probe_knows_a_real_ray_head(ray_runtime):
    """The HTTP/2 hello the probe sends is answered by a real GCS (the module's local runtime)."""
    from engine.ray_run import probe_address

    host, port = ray.get_runtime_context().gcs_address.rsplit(":", 1)
    probe_address(host, int(port), 3.0)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"kind": "ray", "address": "not an address"}, "--address must be"),
    ({"kind": "ray", "address": "head:99999"}, "--address must be"),
    ({"kind": "local", "address": "10.0.0.5:6379"}, "--address is for --engine ray"),
    ({"kind": "ray", "workers": 0}, "--ray-workers must be"),
    ({"kind": "spark"}, "--engine must be"),
])
def test_bad_engine_settings_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        EngineConfig(**kwargs)


def test_ray_flags_without_the_ray_engine_are_refused():
    import argparse

    from engine.config import engine_from_args

    with pytest.raises(ConfigError, match="--ray-workers is for --engine ray"):
        engine_from_args(argparse.Namespace(engine="local", address=None, ray_workers=2))
    assert engine_from_args(argparse.Namespace()).kind == "local"  # a parser without the flags: the local engine


def test_without_ray_installed_the_error_says_how_to_install_it(monkeypatch):
    from engine.ray_run import import_ray

    monkeypatch.setitem(__import__("sys").modules, "ray", None)
    with pytest.raises(EngineError, match=r"pip install '\.\[ray\]'"):
        import_ray()


def test_workers_that_cannot_import_the_project_are_a_clear_error(ray_runtime, ckpt, tmp_path):
    from core.maps.ray_region import embed_region_ray

    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCKER)
    engine = EngineConfig(kind="ray", workers=1, runtime_env={"env_vars": {"PYTHONPATH": str(tmp_path / "site")}})
    loaded = load_checkpoint(ckpt)
    with pytest.raises(EngineError, match="Ray workers cannot import the project .*No module named"):
        embed_region_ray(loaded, make_grid(BBox(-95, 38, -94, 39), 4), 1, MetaOptions(), tmp_path / "c", engine,
                         chunk=8, progress=False)


def test_a_checkpoint_the_workers_cannot_read_is_a_clear_error(ray_runtime, ckpt, tmp_path):
    import shutil

    from core.maps.ray_region import embed_region_ray

    copy = tmp_path / "ckpt-only-here"
    shutil.copytree(ckpt, copy)
    loaded = load_checkpoint(copy)  # the driver read it; then it is gone before the workers look
    shutil.rmtree(copy)
    with pytest.raises(EngineError, match=f"cannot read the checkpoint folder {copy}.*same path"):
        embed_region_ray(loaded, make_grid(BBox(-95, 38, -94, 39), 4), 1, MetaOptions(), tmp_path / "c",
                         EngineConfig(kind="ray", workers=1), chunk=8, progress=False)
    assert not list((tmp_path / "c" / "chunks").glob("*.npz"))
