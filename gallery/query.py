"""Device-side gallery reader: open a gallery folder, check it, search it, hand out clips.

Only numpy, sqlite3 and (optionally) the gallery's index library - USearch by default, whose index file is
memory-mapped, or hnswlib: this runs on the phone and the kiosk, where there is no PyTorch and no FAISS. The
paper's retrieval-based synthesis is one call: embed the place, ``gallery.search(vector, k=1)``, play
``gallery.clip(hit.id)``. Hits found by the graph are re-scored with the float32 vectors in the db, so scores are
exact cosines whatever the index stores (f16 or i8); a kind whose graph missed the recall target at build time is
searched by its IVF lists (gallery/ivf.py, memory-mapped numpy), or exactly.

Everything a damaged or mismatched artifact can cause surfaces as ``GalleryError`` with a line that says what is
wrong and what to do, never a sqlite traceback.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from contracts.artifacts import sha256_bytes
from gallery import backends
from gallery import index as vindex
from gallery.checks import UNFINISHED as _UNFINISHED
from gallery.checks import check_index_json
from gallery.clips import decode_clip, sniff_format
from gallery.errors import GalleryError
from gallery.ivf import IVFIndex, ivf_topk, load_ivf
from gallery.layout import DB_NAME, DEFAULT_EF, KINDS, SCHEMA_VERSION

_SQLITE_MAGIC = b"SQLite format 3\x00"
_VERIFY = ("header", "quick", "full")


@dataclass(frozen=True)
class Hit:
    """One search result: the item's content id, its cosine score to the query, and what the item is."""

    id: str
    score: float
    caption: str
    label: int
    zoom: int | None = None
    lat: float | None = None
    lon: float | None = None
    split: str | None = None
    renderer: str | None = None
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class Item:
    """A gallery entry with its provenance (which dataset samples and zooms its caption came from) and clip info."""

    id: str
    label: int
    caption: str
    provenance: list[dict[str, Any]]
    zoom: int | None
    lat: float | None
    lon: float | None
    split: str | None
    renderer: str
    sources: tuple[str, ...]
    clip_format: str
    sample_rate: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


@lru_cache(maxsize=4096)
def _sources(text: str | None) -> tuple[str, ...]:
    """An item's sources column (a JSON list) as a tuple; galleries repeat a few hundred lists, so parse each once."""
    return tuple(json.loads(text or "[]"))


def check_db_file(db: Path) -> None:
    """Cheap structural checks on the SQLite file before sqlite3 sees it: magic, and no truncation.

    SQLite records the database size (in pages) in its header; a copy cut short is smaller than that.
    """
    try:
        size = db.stat().st_size
        with open(db, "rb") as f:
            header = f.read(100)
    except OSError as exc:
        raise GalleryError(f"cannot read {db}: {exc.strerror}") from None
    if len(header) < 100 or header[:16] != _SQLITE_MAGIC:
        raise GalleryError(f"{db} is not a SQLite database (corrupt or not a gallery)")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    change_counter = int.from_bytes(header[24:28], "big")
    pages = int.from_bytes(header[28:32], "big")
    valid_for = int.from_bytes(header[92:96], "big")
    if pages and change_counter == valid_for and size < pages * page_size:
        raise GalleryError(f"{db} is truncated: {size} bytes on disk, its header says {pages * page_size}; "
                           "copy or rebuild the gallery")
    if size % page_size:
        raise GalleryError(f"{db} is truncated or damaged: {size} bytes is not a whole number of "
                           f"{page_size}-byte pages")


class Gallery:
    """A read-only gallery. Use ``Gallery.open(folder)``; it is a context manager."""

    def __init__(self, root: Path, conn: sqlite3.Connection, meta: dict[str, Any], index_info: dict[str, Any], *,
                 exact: bool, ef: dict[str, int]):
        self.root = root
        self._conn = conn
        self.meta = meta
        self.index_info = index_info
        params = index_info.get("params", {})
        self.library: str = str(params.get("index"))  # "usearch", "hnswlib" or "exact"
        modes = params.get("mode", {})
        # kinds searched by the library's graph, and kinds whose graph missed the recall target and that are
        # searched by IVF lists (numpy only: a device without the library still uses them)
        graphs = any(modes.get(kind) == "hnsw" for kind in KINDS)  # import the library only when a graph is used
        self.missing_library = graphs and self.library in backends.LIBRARIES and not backends.have(self.library)
        self.graph_kinds = {kind for kind in KINDS if modes.get(kind) == "hnsw" and not self.missing_library}
        self.ivf_kinds = {kind for kind in KINDS if modes.get(kind) == "ivf"}
        self.nprobe = {kind: int(n) for kind, n in params.get("nprobe", {}).items()}
        # exact everywhere: when asked, or when no kind has an index to use (small galleries, a missing library)
        self.exact = exact or not (self.graph_kinds | self.ivf_kinds)
        if exact:
            self.graph_kinds, self.ivf_kinds = set(), set()
        self.exact_kinds = set(KINDS) - self.graph_kinds - self.ivf_kinds
        self._ivf: dict[str, Any] = {}
        self.ef = ef
        self._indexes: dict[str, backends.GraphIndex] = {}
        self._lock = threading.RLock()  # the app searches from a worker thread while the UI thread fetches clips
        self._matrices: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    # ------------------------------------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: str | os.PathLike, *, expect_fingerprint: str | None = None, exact: bool = False,
             ef: int | None = None, verify: str = "quick") -> Gallery:
        """Open and check a gallery folder.

        ef: HNSW search depth for every kind (default: the one measured at build time, recorded in index.json).

        verify: "quick" (db header, schema version, counts, index.json, each index file's size, library version and
        header, and its SHA-256), "header" (the same without hashing the index files: for a caller that verified
        their bytes already, as a bundle does against its manifest; a 100k-item index is about 100 MB to hash), or
        "full" (also ``PRAGMA integrity_check`` and every clip's checksum and decode).
        """
        if verify not in _VERIFY:
            raise GalleryError(f"verify must be one of {', '.join(map(repr, _VERIFY))}, got {verify!r}")
        root = Path(path)
        db = root / DB_NAME
        if not root.is_dir():
            raise GalleryError(f"gallery folder {root} does not exist")
        if not db.is_file():
            raise GalleryError(f"{root} is not a gallery folder: {DB_NAME} is missing")
        if Path(str(db) + "-wal").exists():
            raise GalleryError(f"{db} has an unfinished write-ahead log: {_UNFINISHED}")
        check_db_file(db)
        try:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, check_same_thread=False)
        except sqlite3.Error as exc:
            raise GalleryError(f"cannot open {db}: {exc}") from None
        try:
            meta = _read_meta(conn, db)
            _check_meta(meta, db, expect_fingerprint)
            counts = _read_counts(conn, db)
            info = check_index_json(root, meta, counts, hash_files=verify != "header")
            chosen = info.get("params", {}).get("ef", {})
            efs = {kind: int(ef or chosen.get(kind, DEFAULT_EF)) for kind in KINDS}
            gallery = cls(root, conn, meta, info, exact=exact, ef=efs)
            if verify == "full":
                gallery.verify()
            return gallery
        except GalleryError:
            conn.close()
            raise
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise GalleryError(f"{db} is damaged ({exc}); rebuild the gallery") from None

    def close(self) -> None:
        self._indexes.clear()  # drops the graphs (a USearch view unmaps its file) and the IVF memory maps
        self._ivf.clear()
        self._matrices.clear()
        self._conn.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------------ facts

    @property
    def fingerprint(self) -> str:
        return str(self.meta["model_fingerprint"])

    @property
    def dim(self) -> int:
        return int(self.meta["embedding_dim"])

    def __len__(self) -> int:
        return int(self.meta["count"])

    # ------------------------------------------------------------------------------------------------ search

    def search(self, vector: np.ndarray, k: int = 5, kind: str = "caption", *, exact: bool | None = None) -> list[Hit]:
        """The k items whose ``kind`` embedding is nearest (cosine) to ``vector``, best first.

        ``vector`` must be in the gallery model's embedding space (width ``dim``); it is L2-normalised here.
        """
        return self.search_many(np.asarray(vector)[None, ...] if np.ndim(vector) == 1 else vector, k, kind,
                                exact=exact)[0]

    def search_many(self, vectors: np.ndarray, k: int = 5, kind: str = "caption", *,
                    exact: bool | None = None) -> list[list[Hit]]:
        """``search`` for a batch of query vectors (Q, dim)."""
        if kind not in KINDS:
            raise GalleryError(f"unknown embedding kind {kind!r}; expected one of {', '.join(KINDS)}")
        if not isinstance(k, int | np.integer) or k < 1:
            raise GalleryError(f"k must be a positive integer, got {k!r}")
        q = np.asarray(vectors, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise GalleryError(f"query vectors must have shape (Q, {self.dim}) for this gallery, got {q.shape}")
        q = vindex.normalise_rows(q)
        if len(self) == 0:
            return [[] for _ in range(len(q))]
        use = "exact" if exact or kind in self.exact_kinds else ("ivf" if kind in self.ivf_kinds else "graph")
        try:
            with self._lock:
                if use == "exact":
                    matrix, labels = self._vectors(kind)
                    rows, scores = vindex.exact_topk(matrix, q, k)
                    return [self._hits(labels[r], s) for r, s in zip(rows, scores)]
                if use == "ivf":  # exact scores of the probed lists' items already
                    found, scores = ivf_topk(self._ivf_index(kind), q, k, self.nprobe.get(kind, 32))
                    return [self._hits(f, s) for f, s in zip(found, scores)]
                found, _ = self._index(kind).topk(q, k, self.ef[kind])
                return [self._rescored_hits(f, qv, kind) for f, qv in zip(found, q)]
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"{self.root / DB_NAME} is damaged ({exc}); rebuild the gallery") from None

    def _index(self, kind: str) -> backends.GraphIndex:
        if kind not in self._indexes:
            entry = self.index_info["files"][kind]
            self._indexes[kind] = backends.open_graph(self.library, self.root / entry["file"], dim=self.dim,
                                                      count=len(self))
        return self._indexes[kind]

    def _ivf_index(self, kind: str) -> IVFIndex:
        if kind not in self._ivf:
            files = self.index_info["files"]
            self._ivf[kind] = load_ivf(self.root / files[f"{kind}.ivf"]["file"],
                                       self.root / files[f"{kind}.ivf.vectors"]["file"], count=len(self), dim=self.dim)
        return self._ivf[kind]

    def vectors(self, kind: str = "caption") -> tuple[np.ndarray, np.ndarray]:
        """All ``kind`` embeddings as (matrix (N, dim) float32, labels (N,) int64), in label order (cached)."""
        with self._lock:
            return self._vectors(kind)

    def _vectors(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        if kind not in self._matrices:
            rows = self._conn.execute(
                "SELECT i.label, e.vector FROM embeddings e JOIN items i ON i.id = e.item_id WHERE e.kind = ? "
                "ORDER BY i.label", (kind,)).fetchall()
            if any(len(v) != 4 * self.dim for _, v in rows):
                raise GalleryError(f"{self.root / DB_NAME}: a stored {kind} vector is not {self.dim} float32 values")
            labels = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), self.dim)
            self._matrices[kind] = (matrix, labels)
        return self._matrices[kind]

    _HIT_COLUMNS = "i.label, i.id, i.caption, i.zoom, i.lat, i.lon, i.split, i.renderer, i.sources"

    def _hits(self, labels: np.ndarray, scores: np.ndarray) -> list[Hit]:
        wanted = [int(x) for x in labels if x >= 0]
        marks = ",".join("?" * len(wanted))
        rows = self._conn.execute(f"SELECT {self._HIT_COLUMNS} FROM items i WHERE i.label IN ({marks})",
                                  wanted).fetchall()
        by_label = {r[0]: r for r in rows}
        return [self._hit(by_label.get(lab), lab, float(score)) for lab, score in zip(wanted, scores)]

    def _rescored_hits(self, labels: np.ndarray, query: np.ndarray, kind: str) -> list[Hit]:
        """The graph's hits with their rows and float32 vectors from the db: exact cosine scores, best first."""
        wanted = [int(x) for x in labels if x >= 0]
        marks = ",".join("?" * len(wanted))
        rows = self._conn.execute(
            f"SELECT {self._HIT_COLUMNS}, e.vector FROM items i JOIN embeddings e ON e.item_id = i.id AND e.kind = ? "
            f"WHERE i.label IN ({marks})", [kind, *wanted]).fetchall()
        by_label = {r[0]: r for r in rows}
        for lab in wanted:
            if lab not in by_label:
                self._hit(None, lab, 0.0)  # raises: the index and the db disagree
        if any(len(by_label[lab][-1]) != 4 * self.dim for lab in wanted):
            raise GalleryError(f"{self.root / DB_NAME}: a stored {kind} vector is not {self.dim} float32 values")
        vectors = np.frombuffer(b"".join(by_label[lab][-1] for lab in wanted), dtype=np.float32)
        scores = vectors.reshape(len(wanted), self.dim) @ query
        order = sorted(range(len(wanted)), key=lambda j: (-scores[j], wanted[j]))
        return [self._hit(by_label[wanted[j]], wanted[j], float(scores[j])) for j in order]

    def _hit(self, r: tuple | None, lab: int, score: float) -> Hit:
        if r is None:
            raise GalleryError(f"the index returned label {lab}, which is not in {self.root / DB_NAME}: "
                               "index and db do not match; rebuild the gallery")
        return Hit(id=r[1], score=score, caption=r[2], label=lab, zoom=r[3], lat=r[4], lon=r[5], split=r[6],
                   renderer=r[7], sources=_sources(r[8]))

    # ------------------------------------------------------------------------------------------------ items, clips

    def item(self, item_id: str) -> Item:
        row = self._query_one(
            "SELECT i.id, i.label, i.caption, i.provenance, i.zoom, i.lat, i.lon, i.split, i.renderer, i.sources, "
            "c.format, c.sample_rate, c.seconds FROM items i JOIN clips c ON c.item_id = i.id WHERE i.id = ?", item_id)
        return Item(id=row[0], label=row[1], caption=row[2], provenance=json.loads(row[3] or "[]"), zoom=row[4],
                    lat=row[5], lon=row[6], split=row[7], renderer=row[8], sources=tuple(json.loads(row[9] or "[]")),
                    clip_format=row[10], sample_rate=row[11], seconds=row[12])

    def clip(self, item_id: str) -> tuple[bytes, str]:
        """(clip bytes, format) of an item, checked against the checksum and header recorded at build time."""
        data, fmt, digest = self._query_one("SELECT bytes, format, sha256 FROM clips WHERE item_id = ?", item_id)
        data = bytes(data)
        if sha256_bytes(data) != digest:
            raise GalleryError(f"the clip of item {item_id} is corrupt (checksum mismatch); rebuild the gallery")
        if sniff_format(data) != fmt:
            raise GalleryError(f"the clip of item {item_id} is not a valid {fmt} file")
        return data, fmt

    def decode_clip(self, item_id: str) -> tuple[np.ndarray, int]:
        """The item's clip decoded to (mono float32 waveform, sample rate)."""
        data, fmt = self.clip(item_id)
        return decode_clip(data, fmt, name=f"the clip of item {item_id}")

    def _query_one(self, sql: str, item_id: str) -> tuple:
        try:
            with self._lock:
                row = self._conn.execute(sql, (item_id,)).fetchone()
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"{self.root / DB_NAME} is damaged ({exc}); rebuild the gallery") from None
        if row is None:
            raise GalleryError(f"no item {item_id!r} in gallery {self.root}")
        return row

    def ids(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._conn.execute("SELECT id FROM items ORDER BY label")]

    # ------------------------------------------------------------------------------------------------ checks

    def verify(self) -> None:
        """Deep check: SQLite integrity, then every clip's checksum and decode. Raises GalleryError on any fault."""
        db = self.root / DB_NAME
        try:
            result = [r[0] for r in self._conn.execute("PRAGMA integrity_check")]
            if result != ["ok"]:
                raise GalleryError(f"{db} fails its integrity check: {'; '.join(result[:3])}")
            for (item_id,) in self._conn.execute("SELECT item_id FROM clips").fetchall():
                self.decode_clip(item_id)
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"{db} is damaged ({exc}); rebuild the gallery") from None


# -------------------------------------------------------------------------------------------------- checks


def _read_meta(conn: sqlite3.Connection, db: Path) -> dict[str, Any]:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = {"items", "clips", "embeddings", "meta"} - tables
    if missing:
        raise GalleryError(f"{db} is not a gallery database (missing tables: {', '.join(sorted(missing))})")
    meta = {}
    for key, value in conn.execute("SELECT key, value FROM meta"):
        try:
            meta[key] = json.loads(value)
        except (TypeError, json.JSONDecodeError):
            meta[key] = value
    return meta


def _check_meta(meta: dict[str, Any], db: Path, expect_fingerprint: str | None) -> None:
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise GalleryError(f"{db} has gallery schema version {version}, this reader needs version {SCHEMA_VERSION}; "
                           "rebuild it with `sat2sound gallery build`")
    for key in ("model_fingerprint", "embedding_dim", "count", "build_id"):
        if key not in meta:
            raise GalleryError(f"{db} has no {key!r} in its meta table: {_UNFINISHED}")
    if expect_fingerprint is not None and meta["model_fingerprint"] != expect_fingerprint:
        raise GalleryError(f"{db} was embedded by model {str(meta['model_fingerprint'])[:12]}, not the expected "
                           f"{expect_fingerprint[:12]}; its vectors are in another space: rebuild the gallery with "
                           "this model's checkpoint")


def _read_counts(conn: sqlite3.Connection, db: Path) -> dict[str, int]:
    counts = {"items": conn.execute("SELECT count(*) FROM items").fetchone()[0],
              "clips": conn.execute("SELECT count(*) FROM clips").fetchone()[0]}
    for kind in KINDS:
        counts[kind] = conn.execute("SELECT count(*) FROM embeddings WHERE kind = ?", (kind,)).fetchone()[0]
    if len(set(counts.values())) != 1:
        raise GalleryError(f"{db} is inconsistent ({counts}); rerun the build to repair it")
    return counts
