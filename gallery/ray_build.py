"""Gallery building on Ray (``sat2sound gallery build --engine ray``): each batch of captions is one retryable task.

A worker loads the teacher once (from the same checkpoint path on every node, checked by fingerprint), renders
and encodes the batch's clips and embeds captions and decoded clips exactly as the local builder does
(``gallery.build``); the driver commits each batch to the SQLite gallery in the original batch order (a result
that arrives early waits for the ones before it), so rows, ids and vectors come out as the local engine writes
them, and a rerun skips the captions already committed. A batch lost with a killed worker is run again; a
caption is written once (its content id is the key, and a batch commits whole).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from contracts.errors import CheckpointError
from gallery.build import Embedder, _first, render_clip
from gallery.captions import CaptionRecord
from gallery.renderers import Renderer
from gallery.store import GalleryRow, GalleryWriter


@dataclass(frozen=True)
class BatchMaker:
    """Built once per Ray worker: the teacher embedder and the renderer, ready to turn batches into rows."""

    ckpt: str
    fingerprint: str
    renderer: Renderer
    rate: int
    clip_format: str
    clip_compression: float | None
    threads: int | None = None  # torch threads per worker, as --threads gives the local builder

    def __call__(self) -> _MakeRows:
        from gallery.embedder import TeacherEmbedder

        where = f"the Ray worker on {socket.gethostname()} (pid {os.getpid()})"
        if not Path(self.ckpt).is_dir() or not os.access(self.ckpt, os.R_OK | os.X_OK):
            raise CheckpointError(f"{where} cannot read the checkpoint folder {self.ckpt}: every node needs it at "
                                  "the same path (a shared filesystem, or the folder copied to each node)")
        embedder = TeacherEmbedder(self.ckpt, threads=self.threads)
        if embedder.fingerprint != self.fingerprint:
            raise CheckpointError(f"{where} found another checkpoint at {self.ckpt} (fingerprint "
                                  f"{embedder.fingerprint[:12]}, the job's is {self.fingerprint[:12]}): copy the "
                                  "same folder to every node")
        return _MakeRows(embedder, self)


class _MakeRows:
    def __init__(self, embedder: Embedder, spec: BatchMaker):
        self.embedder, self.spec = embedder, spec

    def __call__(self, batch: list[CaptionRecord]) -> tuple[list[GalleryRow], float, float]:
        s, t0 = self.spec, time.perf_counter()
        made = [render_clip(s.renderer, r, s.rate, s.clip_format, s.clip_compression) for r in batch]
        t1 = time.perf_counter()
        # Embed what the listener will hear: the decoded (lossy) clip, not the pre-encoding waveform.
        cap_vecs = self.embedder.embed_texts([r.caption for r in batch])
        aud_vecs = self.embedder.embed_audio([heard for _, _, heard in made], sample_rate=s.rate)
        rows = [GalleryRow(id=r.id, caption=r.caption, clip=data, clip_format=s.clip_format, sample_rate=s.rate,
                           seconds=len(heard) / s.rate, caption_vector=cv, audio_vector=av,
                           renderer=s.renderer.name, provenance=r.provenance, zoom=_first(r, "zoom"),
                           lat=_first(r, "lat"), lon=_first(r, "lon"), split=_first(r, "split"), sources=sources)
                for r, (sources, data, heard), cv, av in zip(batch, made, cap_vecs, aud_vecs)]
        return rows, t1 - t0, time.perf_counter() - t1


def add_batches_ray(writer: GalleryWriter, todo: list[CaptionRecord], embedder: Embedder, renderer: Renderer,
                    engine, *, batch_size: int, rate: int, clip_format: str, clip_compression: float | None,
                    times: dict[str, float], threads: int | None = None, progress: bool = True,
                    max_batches: int | None = None, on_batch: Callable[[int], None] | None = None) -> tuple[int, bool]:
    """Render, embed and commit ``todo`` in batches on Ray; returns (rows added, finished).

    Each worker runs torch on ``threads`` threads and reserves as many CPUs (the local builder's ``--threads``):
    the same thread count gives the same float bits as the local engine."""
    from engine.ray_run import Task, run_tasks

    ckpt = getattr(embedder, "ckpt_dir", None)
    if ckpt is None:
        raise CheckpointError("the Ray engine needs an embedder loaded from a checkpoint folder (TeacherEmbedder)")
    starts = list(range(0, len(todo), batch_size))
    finished = max_batches is None or len(starts) <= max_batches
    starts = starts if max_batches is None else starts[:max_batches]
    tasks = [Task(b, todo[s:s + batch_size], len(todo[s:s + batch_size])) for b, s in enumerate(starts)]
    waiting: dict[int, list[GalleryRow]] = {}
    state = {"next": 0, "added": 0}

    def commit(b: int, result: tuple[list[GalleryRow], float, float]) -> None:
        rows, render_s, embed_s = result
        times["render"] += render_s
        times["embed"] += embed_s
        waiting[b] = rows
        while state["next"] in waiting:  # commit in batch order, as the local builder does
            t0 = time.perf_counter()
            state["added"] += writer.add_batch(waiting.pop(state["next"]))
            times["write"] += time.perf_counter() - t0
            if on_batch is not None:
                on_batch(state["next"])
            state["next"] += 1

    factory = BatchMaker(str(Path(ckpt).resolve()), embedder.fingerprint, renderer, rate, clip_format,
                         clip_compression, threads)
    if threads:
        engine = dataclasses.replace(engine, cpus_per_worker=float(threads))
    run_tasks(engine, factory, tasks, commit, desc="gallery", unit="clip", progress=progress)
    return state["added"], finished
