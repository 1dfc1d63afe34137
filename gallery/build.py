"""Gallery building: captions -> clips -> embeddings -> SQLite, in batches that each commit whole; then the indexes.

Resumable by construction: items are keyed by the caption's content id and each batch is one transaction, so a
rerun into the same folder skips what is there and continues with the rest, duplicating nothing. The search
indexes are tuned with queries that stand for real use (gallery/tuning.py): text fragments of the gallery's
captions and image embeddings of its items' places, made here with the same embedder.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from contracts.durability import die_with_parent
from gallery.captions import CaptionRecord
from gallery.clips import encode_and_decode
from gallery.layout import DB_NAME, DEFAULT_DTYPE, DEFAULT_INDEX, HNSW_EF_CONSTRUCTION, HNSW_M
from gallery.renderers import Renderer
from gallery.store import GalleryRow, GalleryWriter


class Embedder(Protocol):
    """What the builder needs from an embedding model (gallery.embedder.TeacherEmbedder is the real one)."""

    fingerprint: str
    dim: int
    sample_rate: int

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_audio(self, waves: Sequence[np.ndarray], sample_rate: int | None = None) -> np.ndarray: ...


@dataclass
class BuildReport:
    out: Path
    requested: int
    already: int
    added: int
    count: int
    seconds: dict[str, float] = field(default_factory=dict)
    index: dict[str, Any] = field(default_factory=dict)
    db_bytes: int = 0
    finished: bool = True

    def summary(self) -> str:
        t = self.seconds
        parts = [f"gallery {self.out}: {self.count} items ({self.added} new, {self.already} already there)"]
        if self.finished:
            params = self.index.get("params", {})
            rec = {k: round(v["chosen"]["recall"], 4) for k, v in self.index.get("measured", {}).items()}
            parts.append(f"db {self.db_bytes / 1e6:.1f} MB; index {params.get('index')} {params.get('dtype')} "
                         f"ef {params.get('ef')} (recall@10 {rec}); search mode {params.get('mode')}")
        else:
            parts.append("stopped early: rerun the same command to continue")
        parts.append("time " + ", ".join(f"{k} {v:.1f}s" for k, v in t.items()))
        return "; ".join(parts)


def _first(record: CaptionRecord, key: str) -> Any:
    return record.first.get(key)


def render_clip(renderer: Renderer, record: CaptionRecord, sample_rate: int, clip_format: str,
                compression: float | None = None) -> tuple[list[str], bytes, np.ndarray]:
    """Render one caption and encode it: (sources, clip bytes, decoded waveform). Runs in worker processes."""
    clip = renderer.render(record)
    data, heard = encode_and_decode(clip.wave, sample_rate, clip_format, compression)
    return clip.sources, data, heard


def finish_index(writer: GalleryWriter, embedder: Embedder | None, *, index: str = DEFAULT_INDEX,
                 dtype: str = DEFAULT_DTYPE, m: int = HNSW_M, ef_construction: int = HNSW_EF_CONSTRUCTION,
                 threads: int = 1, tune_n: int = 150) -> dict[str, Any]:
    """Make the real-use tuning queries with ``embedder`` (text fragments of the captions; places where the items
    have coordinates and the embedder can render them) and let the writer build, tune and record the indexes."""
    from gallery.tuning import real_use_queries

    queries: dict[str, np.ndarray] = {}
    if embedder is not None and writer.count() >= 2 and index != "exact":
        captions, places = writer.tuning_sources(tune_n)
        queries = real_use_queries(embedder.embed_texts, captions, _place_embedder(embedder), places, n=tune_n)
    return writer.finish(index=index, dtype=dtype, m=m, ef_construction=ef_construction, threads=threads,
                         tune_queries=queries)


def _place_embedder(embedder: Embedder) -> Callable[[float, float, int], np.ndarray] | None:
    """(lat, lon, zoom) -> the place's image embedding, when the embedder renders places (the teacher does)."""
    embed_place = getattr(embedder, "embed_place", None)
    if embed_place is None:
        return None
    zooms = tuple(getattr(getattr(getattr(embedder, "cfg", None), "image", None), "zooms", ()) or ())

    def place(lat: float, lon: float, zoom: int) -> np.ndarray:
        return embed_place(lat, lon, zoom if not zooms or zoom in zooms else zooms[0])

    return place


def build_gallery(records: list[CaptionRecord], out: str | Path, embedder: Embedder, renderer: Renderer, *,
                  clip_format: str = "ogg", clip_compression: float | None = None, sample_rate: int | None = None,
                  batch_size: int = 32, threads: int = 1, workers: int = 1, index: str = DEFAULT_INDEX,
                  dtype: str = DEFAULT_DTYPE, m: int = HNSW_M, ef_construction: int = HNSW_EF_CONSTRUCTION,
                  extra_meta: dict[str, Any] | None = None, progress: bool = True, max_batches: int | None = None,
                  on_batch: Callable[[int], None] | None = None, engine: Any = None) -> BuildReport:
    """Render, embed and store every record not yet in the gallery at ``out``; then (re)build the indexes
    (``index``: usearch, hnswlib or exact; ``dtype``: a USearch index's vector type).

    ``workers`` > 1 renders and encodes clips in that many spawned processes (torch-free: they import only the
    renderer); embedding stays in this process. ``max_batches`` stops after that many batches without building
    the index (as an interruption would); ``on_batch(i)`` is called after batch i commits. ``engine`` (an
    ``engine.config.EngineConfig``) of kind ray runs the batches on Ray workers (gallery/ray_build.py).
    """
    from tqdm.auto import tqdm

    out = Path(out)
    rate = int(sample_rate or embedder.sample_rate)
    renderer.prepare(records)
    times = {"render": 0.0, "embed": 0.0, "write": 0.0, "index": 0.0}
    meta = {"renderer": renderer.name, "seconds": getattr(renderer, "seconds", None),
            "audio": getattr(renderer, "audio", None),
            "clip_compression": clip_compression, **(extra_meta or {})}
    with GalleryWriter.open(out, fingerprint=embedder.fingerprint, dim=embedder.dim, clip_format=clip_format,
                            sample_rate=rate, extra_meta=meta) as writer:
        done = writer.done_ids()
        todo = [r for r in records if r.id not in done]
        already = len(records) - len(todo)
        added, finished = 0, True
        on_ray = engine is not None and engine.is_ray
        if on_ray:  # each batch a retryable task on a Ray worker; committed here in batch order
            from gallery.ray_build import add_batches_ray

            added, finished = add_batches_ray(writer, todo, embedder, renderer, engine, batch_size=batch_size,
                                              rate=rate, clip_format=clip_format, clip_compression=clip_compression,
                                              times=times, threads=threads, progress=progress,
                                              max_batches=max_batches, on_batch=on_batch)
            todo = []
        bar = tqdm(total=len(records), initial=already, desc="gallery", unit="clip", disable=not progress or on_ray)
        pool = None
        if workers > 1 and len(todo) > batch_size:
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=die_with_parent)  # a killed build takes its workers with it
        try:
            for b, start in enumerate(range(0, len(todo), batch_size)):
                if max_batches is not None and b >= max_batches:
                    finished = False
                    break
                batch = todo[start : start + batch_size]
                t0 = time.perf_counter()
                n = len(batch)
                args = ([renderer] * n, batch, [rate] * n, [clip_format] * n, [clip_compression] * n)
                made = list(pool.map(render_clip, *args) if pool else map(render_clip, *args))
                t1 = time.perf_counter()
                # Embed what the listener will hear: the decoded (lossy) clip, not the pre-encoding waveform.
                cap_vecs = embedder.embed_texts([r.caption for r in batch])
                aud_vecs = embedder.embed_audio([heard for _, _, heard in made], sample_rate=rate)
                t2 = time.perf_counter()
                rows = [GalleryRow(id=r.id, caption=r.caption, clip=data, clip_format=clip_format, sample_rate=rate,
                                   seconds=len(heard) / rate, caption_vector=cv, audio_vector=av,
                                   renderer=renderer.name, provenance=r.provenance, zoom=_first(r, "zoom"),
                                   lat=_first(r, "lat"), lon=_first(r, "lon"), split=_first(r, "split"),
                                   sources=sources)
                        for r, (sources, data, heard), cv, av in zip(batch, made, cap_vecs, aud_vecs)]
                added += writer.add_batch(rows)
                t3 = time.perf_counter()
                for key, dt_ in zip(("render", "embed", "write"), (t1 - t0, t2 - t1, t3 - t2)):
                    times[key] += dt_
                bar.update(len(batch))
                if on_batch is not None:
                    on_batch(b)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
            bar.close()
        info: dict[str, Any] = {}
        if finished:
            t0 = time.perf_counter()
            info = finish_index(writer, embedder, index=index, dtype=dtype, m=m, ef_construction=ef_construction,
                                threads=threads)
            times["index"] = time.perf_counter() - t0
        count = writer.count()
    return BuildReport(out=out, requested=len(records), already=already, added=added, count=count, seconds=times,
                       index=info, db_bytes=(out / DB_NAME).stat().st_size, finished=finished)
