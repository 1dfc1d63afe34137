"""Build-side gallery writer: SQLite through sqlite-utils, one transaction per batch, then the search indexes.

Tables (``gallery.db``)::

    items       id TEXT PK (sha1 of the caption), label INTEGER UNIQUE (the index's integer key, dense 0..N-1),
                caption, provenance (JSON list of {sample_id, zoom, lat, lon, split, ...}), zoom, lat, lon, split,
                renderer, sources (JSON list of the sound sources the clip plays)
    clips       item_id PK, format, sample_rate, seconds, sha256, bytes BLOB   (BLOBs apart: reading vectors stays fast)
    embeddings  (item_id, kind) PK, kind 'caption' | 'audio', vector BLOB (float32, L2-normalised)
    meta        key PK, value (JSON): schema_version, model_fingerprint, embedding_dim, count, created, build_id, ...

A batch is written in one transaction, so an interrupted build leaves whole items only and a rerun continues with
the ids that are not there yet. The database runs in WAL mode while building and is switched back to a single
self-contained file (journal_mode=delete) when the build finishes, so the device can open it read-only.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from contracts.artifacts import sha256_bytes, sha256_file
from contracts.durability import acquire_lock, atomic_write_text, release_lock, space_note
from contracts.faults import fault_point
from gallery import backends
from gallery import index as vindex
from gallery.errors import GalleryError
from gallery.ivf import ivf_file_names, save_ivf
from gallery.layout import (
    DB_NAME,
    DEFAULT_DTYPE,
    DEFAULT_INDEX,
    EF_LADDER,
    HNSW_EF_CONSTRUCTION,
    HNSW_M,
    INDEX_CHOICES,
    INDEX_FORMAT,
    INDEX_JSON,
    KINDS,
    SCHEMA_VERSION,
    TARGET_RECALL,
    USEARCH_DTYPES,
    index_file_name,
)
from gallery.query import check_db_file


@dataclass
class GalleryRow:
    """Everything one gallery item needs, ready to write."""

    id: str
    caption: str
    clip: bytes
    clip_format: str
    sample_rate: int
    seconds: float
    caption_vector: np.ndarray
    audio_vector: np.ndarray
    renderer: str
    provenance: list[dict[str, Any]] = field(default_factory=list)
    zoom: int | None = None
    lat: float | None = None
    lon: float | None = None
    split: str | None = None
    sources: list[str] = field(default_factory=list)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _vector_blob(vec: np.ndarray, dim: int, what: str) -> bytes:
    v = np.asarray(vec, dtype=np.float32).reshape(-1)
    if v.shape[0] != dim:
        raise GalleryError(f"{what} has width {v.shape[0]}, the gallery's embedding width is {dim}")
    return vindex.normalise_rows(v)[0].tobytes()


class GalleryWriter:
    """Create or resume a gallery database in ``root``. ``GalleryWriter.open(...)``; a context manager."""

    def __init__(self, root: Path, db: sqlite_utils.Database, meta: dict[str, Any]):
        self.root = root
        self.db = db
        self.meta = meta
        self._done: set[str] = {r[0] for r in db.execute("SELECT id FROM items")}  # kept in step with commits

    @classmethod
    def open(cls, root: str | os.PathLike, *, fingerprint: str, dim: int, clip_format: str, sample_rate: int,
             extra_meta: dict[str, Any] | None = None) -> GalleryWriter:
        """Start a new gallery, or reopen an unfinished/finished one built with the same model and clip settings.

        A gallery of another schema version, another model (fingerprint) or other clip settings is refused: mixing
        embedding spaces or formats in one gallery would give silently wrong answers.
        """
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise GalleryError(f"--out {root} is a file, not a folder")
        root.mkdir(parents=True, exist_ok=True)
        lock = acquire_lock(root, what="the gallery")  # a second builder of the same folder is refused at once
        try:
            return cls._open_locked(root, lock, fingerprint, dim, clip_format, sample_rate, extra_meta)
        except BaseException:
            release_lock(lock)
            raise

    @classmethod
    def _open_locked(cls, root: Path, lock: int, fingerprint: str, dim: int, clip_format: str, sample_rate: int,
                     extra_meta: dict[str, Any] | None) -> GalleryWriter:
        path = root / DB_NAME
        fresh = not path.exists()
        if not fresh:
            check_db_file(path)
        try:
            db = sqlite_utils.Database(path)
            db.enable_wal()
            if fresh or "meta" not in db.table_names():
                meta = cls._create(db, fingerprint, dim, clip_format, sample_rate, extra_meta or {})
            else:
                meta = {r["key"]: json.loads(r["value"]) for r in db["meta"].rows}
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"{path} is damaged ({exc}); delete it or build into another --out") from None
        want = {"schema_version": SCHEMA_VERSION, "model_fingerprint": fingerprint, "embedding_dim": dim,
                "clip_format": clip_format, "sample_rate": sample_rate}
        # a resumed build renders its clips the same way as the one it continues
        want |= {k: v for k, v in (extra_meta or {}).items() if k in ("renderer", "audio") and k in meta}
        for key, value in want.items():
            if meta.get(key) != value:
                db.close()
                raise GalleryError(f"{path} was built with {key} = {meta.get(key)!r}, this build asks for {value!r}; "
                                   "build into a new --out folder (or delete the old gallery)")
        writer = cls(root, db, meta)
        writer._lock = lock
        (root / INDEX_JSON).unlink(missing_ok=True)  # the db is about to change: its old index no longer describes it
        return writer

    @staticmethod
    def _create(db: sqlite_utils.Database, fingerprint: str, dim: int, clip_format: str, sample_rate: int,
                extra: dict[str, Any]) -> dict[str, Any]:
        with db.atomic():
            db["items"].create({"id": str, "label": int, "caption": str, "provenance": str, "zoom": int, "lat": float,
                                "lon": float, "split": str, "renderer": str, "sources": str}, pk="id",
                               not_null={"label", "caption", "renderer"})
            db["items"].create_index(["label"], unique=True)
            db["clips"].create({"item_id": str, "format": str, "sample_rate": int, "seconds": float, "sha256": str,
                                "bytes": bytes}, pk="item_id", foreign_keys=[("item_id", "items", "id")],
                               not_null={"format", "bytes", "sha256"})
            db["embeddings"].create({"item_id": str, "kind": str, "vector": bytes}, pk=("item_id", "kind"),
                                    foreign_keys=[("item_id", "items", "id")], not_null={"vector"})
            db["meta"].create({"key": str, "value": str}, pk="key")
            meta = {"schema_version": SCHEMA_VERSION, "model_fingerprint": fingerprint, "embedding_dim": dim,
                    "clip_format": clip_format, "sample_rate": sample_rate, "created": _now(),
                    "build_id": uuid.uuid4().hex, **extra}
            db["meta"].insert_all([{"key": k, "value": json.dumps(v)} for k, v in meta.items()])
        return meta

    def close(self) -> None:
        self.db.close()
        if getattr(self, "_lock", None) is not None:
            release_lock(self._lock)
            self._lock = None

    def __enter__(self) -> GalleryWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------------ writing

    @property
    def dim(self) -> int:
        return int(self.meta["embedding_dim"])

    def done_ids(self) -> set[str]:
        """Ids of the items already written in full (an item is written with its clip and vectors, or not at all)."""
        return set(self._done)

    def count(self) -> int:
        return len(self._done)

    def add_batch(self, rows: list[GalleryRow]) -> int:
        """Write a batch in one transaction; rows whose id is already there are skipped. Returns how many were new."""
        fresh, seen = [], set()
        for row in rows:
            if row.id in self._done or row.id in seen:
                continue
            seen.add(row.id)
            fresh.append(row)
        if not fresh:
            return 0
        try:
            self._insert(fresh)
        except sqlite3.OperationalError as exc:  # a full disk, a file-size limit, a read-only file
            raise GalleryError(f"cannot write {self.root / DB_NAME}: {exc} ({space_note(self.root)}); the items "
                               "written so far are kept: rerun the same command to resume") from None
        self._done.update(seen)  # only after the transaction committed
        fault_point("gallery.batch")
        return len(fresh)

    def _insert(self, fresh: list[GalleryRow]) -> None:
        items, clips, vectors = [], [], []
        with self.db.atomic():
            next_label = self.db.execute("SELECT coalesce(max(label) + 1, 0) FROM items").fetchone()[0]
            for i, row in enumerate(fresh):
                items.append({"id": row.id, "label": next_label + i, "caption": row.caption,
                              "provenance": json.dumps(row.provenance), "zoom": row.zoom, "lat": row.lat,
                              "lon": row.lon, "split": row.split, "renderer": row.renderer,
                              "sources": json.dumps(list(row.sources))})
                clips.append({"item_id": row.id, "format": row.clip_format, "sample_rate": row.sample_rate,
                              "seconds": row.seconds, "sha256": sha256_bytes(row.clip),
                              "bytes": row.clip})
                vectors.append({"item_id": row.id, "kind": "caption",
                                "vector": _vector_blob(row.caption_vector, self.dim, f"caption vector of {row.id}")})
                vectors.append({"item_id": row.id, "kind": "audio",
                                "vector": _vector_blob(row.audio_vector, self.dim, f"audio vector of {row.id}")})
            self.db["items"].insert_all(items)
            self.db["clips"].insert_all(clips)
            self.db["embeddings"].insert_all(vectors)

    def set_meta(self, values: dict[str, Any]) -> None:
        with self.db.atomic():
            self.db["meta"].upsert_all([{"key": k, "value": json.dumps(v)} for k, v in values.items()], pk="key")
        self.meta.update(values)

    # ------------------------------------------------------------------------------------------------ finishing

    def vectors(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        rows = self.db.execute(
            "SELECT i.label, e.vector FROM embeddings e JOIN items i ON i.id = e.item_id WHERE e.kind = ? "
            "ORDER BY i.label", (kind,)).fetchall()
        labels = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), self.dim)
        return matrix, labels

    def tuning_sources(self, n: int = 150, seed: int = 0) -> tuple[list[str], list[tuple[float, float, int]]]:
        """Up to ``n`` captions and ``n`` item places (lat, lon, zoom) of this gallery, drawn at random: what
        gallery.tuning.real_use_queries turns into text and place tuning queries."""
        rng = np.random.default_rng(seed)
        captions = [r[0] for r in self.db.execute("SELECT caption FROM items ORDER BY label")]
        places = [(float(r[0]), float(r[1]), int(r[2] or 1)) for r in self.db.execute(
            "SELECT lat, lon, zoom FROM items WHERE lat IS NOT NULL AND lon IS NOT NULL ORDER BY label")]
        pick = [captions[int(i)] for i in rng.choice(len(captions), size=min(n, len(captions)), replace=False)]
        where = [places[int(i)] for i in rng.choice(len(places), size=min(n, len(places)), replace=False)]
        return pick, where

    def _keep(self, key: str, path: Path, files: dict[str, Any], library: str, version: str | None) -> None:
        """Record a written index file: its size, SHA-256 and the library (and version) that reads it."""
        files[key] = {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size,
                      "library": library, "version": version}

    def _graph(self, kind: str, vectors: tuple[np.ndarray, np.ndarray], queries: dict[str, np.ndarray],
               files: dict[str, Any], measured: dict[str, Any], *, index: str, dtype: str, m: int,
               ef_construction: int, threads: int, beat: bool) -> str | None:
        """Build and tune ``kind``'s graph; save it and return "hnsw" when it reaches the target (and beats exact
        search, when ``beat``)."""
        from gallery.tuning import tune_graph

        matrix, labels = vectors
        graph = vindex.build_hnsw(matrix, labels, m=m, ef_construction=ef_construction, threads=threads,
                                  library=index, dtype=dtype)
        result = tune_graph(graph, matrix, labels, queries, k=min(10, len(matrix)), threads=threads)
        measured.update(result)
        best = result["chosen"]
        if vindex.worst_recall(best) < TARGET_RECALL or (beat and best["p50_ms"] >= result["exact_p50_ms"]):
            return None
        final = self.root / index_file_name(kind, index)
        tmp = final.with_name(final.name + ".tmp")
        graph.save(tmp)
        os.replace(tmp, final)
        self._keep(kind, final, files, index, backends.version(index))
        return "hnsw"

    def _ivf(self, kind: str, matrix: np.ndarray, queries: dict[str, np.ndarray], files: dict[str, Any],
             measured: dict[str, Any], *, threads: int, beat: bool, seed: int) -> int | None:
        """Train, tune and save ``kind``'s IVF lists; their nprobe when they reach the target (and beat exact)."""
        from gallery.tuning import exact_latency, train_ivf, tune_ivf

        lists = train_ivf(matrix, seed=seed, threads=threads)
        result = tune_ivf(lists, matrix, queries, k=min(10, len(matrix)), threads=threads)
        measured["ivf"] = result
        best = result["chosen"]
        exact_ms = measured.get("exact_p50_ms") or exact_latency(matrix, queries)
        measured["exact_p50_ms"] = exact_ms
        if vindex.worst_recall(best) < TARGET_RECALL or (beat and best["p50_ms"] >= exact_ms):
            return None
        names = ivf_file_names(kind)
        tmp = [self.root / (name + ".tmp") for name in names]
        save_ivf(lists, *tmp)
        for t, name in zip(tmp, names):
            os.replace(t, self.root / name)
        self._keep(f"{kind}.ivf", self.root / names[0], files, "numpy", np.__version__)
        self._keep(f"{kind}.ivf.vectors", self.root / names[1], files, "numpy", np.__version__)
        return int(best["nprobe"])

    def finish(self, *, index: str = DEFAULT_INDEX, dtype: str = DEFAULT_DTYPE, m: int = HNSW_M,
               ef_construction: int = HNSW_EF_CONSTRUCTION, threads: int = 1,
               tune_queries: dict[str, np.ndarray] | None = None, tune_count: int = 300, seed: int = 0,
               must_beat_exact: bool = True, kinds: tuple[str, ...] = KINDS, try_graph: bool = True,
               ivf_fallback: bool = True) -> dict[str, Any]:
        """Build, tune and save the search indexes, record them in meta and index.json, and close the WAL.

        ``index``: "usearch" (default), "hnswlib" or "exact" (no index at all). Each kind's graph is tuned with
        ``tune_queries`` (name -> (Q, dim) vectors: the text and place queries gallery.build makes) and up to
        ``tune_count`` of the other kind's vectors (audio embeddings query the caption graph, as sounds do at run
        time); ef is the cheapest of EF_LADDER whose recall@10 against exact search (FAISS) reaches TARGET_RECALL
        for every kind of query. The kind is searched by its graph (mode "hnsw") when that ef exists and the
        graph beats exact search's latency (``must_beat_exact``; tests switch it off); else by IVF lists (mode
        "ivf", gallery/ivf.py) when their cheapest nprobe reaching the target beats exact search; else exactly
        (mode "exact"). Only the files of the mode chosen are kept. Kinds not in ``kinds`` are searched exactly;
        ``try_graph=False`` / ``ivf_fallback=False`` skip a step (tests, benchmarks).
        """
        if index not in INDEX_CHOICES:
            raise GalleryError(f"--index must be one of {', '.join(INDEX_CHOICES)}, got {index!r}")
        if index == "usearch" and dtype not in USEARCH_DTYPES:
            raise GalleryError(f"--index-dtype must be one of {', '.join(USEARCH_DTYPES)}, got {dtype!r}")
        dtype = dtype if index == "usearch" else "f32"
        count = self.count()
        matrices = {kind: self.vectors(kind) for kind in KINDS}
        for kind, (_, labels) in matrices.items():
            if len(labels) != count or not np.array_equal(labels, np.arange(count)):
                raise GalleryError(f"{self.root / DB_NAME} has {len(labels)} {kind} vectors for {count} items or "
                                   "gaps in its labels; delete it and rebuild")
        rng = np.random.default_rng(seed)
        files: dict[str, dict[str, Any]] = {}
        params_ef, nprobes, measured, modes = {}, {}, {}, {}
        for kind in KINDS:
            for name in (index_file_name(kind, "usearch"), index_file_name(kind, "hnswlib"), *ivf_file_names(kind)):
                (self.root / name).unlink(missing_ok=True)
            modes[kind], params_ef[kind] = "exact", EF_LADDER[0]
            if index == "exact" or count < 2 or kind not in kinds:
                continue
            other = matrices["audio" if kind == "caption" else "caption"][0]
            queries = {**(tune_queries or {}),
                       "other-kind": other[rng.choice(count, size=min(tune_count, count), replace=False)]}
            measured[kind] = {}
            if try_graph:
                mode = self._graph(kind, matrices[kind], queries, files, measured[kind], index=index, dtype=dtype,
                                   m=m, ef_construction=ef_construction, threads=threads, beat=must_beat_exact)
                params_ef[kind] = measured[kind]["chosen"]["ef"]
                if mode:
                    modes[kind] = mode
                    continue
            if ivf_fallback:
                nprobe = self._ivf(kind, matrices[kind][0], queries, files, measured[kind], threads=threads,
                                   beat=must_beat_exact, seed=seed)
                if nprobe:
                    modes[kind], nprobes[kind] = "ivf", nprobe
        params = {"index": index, "library": None if index == "exact" else index,
                  "version": None if index == "exact" else backends.version(index), "dtype": dtype, "metric": "cos",
                  "M": m, "ef_construction": ef_construction, "ef": params_ef, "mode": modes, "nprobe": nprobes,
                  "target_recall": TARGET_RECALL}
        self.set_meta({"count": count, "updated": _now(), "hnsw": params,
                       "index_sha256": {k: v["sha256"] for k, v in files.items()}})
        # Fold the WAL back into the file: a finished gallery is one self-contained, read-only-openable file.
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.disable_wal()
        info = {"index_format": INDEX_FORMAT, "schema_version": SCHEMA_VERSION, "build_id": self.meta["build_id"],
                "count": count, "dim": self.dim, "fingerprint": self.meta["model_fingerprint"], "params": params,
                "measured": measured, "files": files, "created": _now()}
        fault_point("gallery.index")
        atomic_write_text(self.root / INDEX_JSON, json.dumps(info, indent=2), label="gallery.publish")
        return info
