"""The libraries a gallery index is built with, behind one small interface: USearch (the default) and hnswlib.

Both build an HNSW graph over unit vectors and search it by cosine; what differs is on disk and on phones:

- USearch (``usearch``): one file that ``Index.restore(path, view=True)`` memory-maps, so opening a gallery reads
  only the pages a search touches; vectors stored as f32, f16 or i8; bindings for Swift, Java/Kotlin,
  Objective-C and C besides Python, so a native app reads the same file.
- hnswlib (``hnswlib``): f32 only, loaded whole into memory, no mobile build.

Device-safe: numpy, and each library imported on first need and only when installed (a device without the
gallery's library searches exactly; USearch brings numkong and tqdm with it). The file headers are read here,
before a library touches the body, so a truncated or foreign file is refused with a clear line, not a crash.
"""

from __future__ import annotations

import struct
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from gallery.errors import GalleryError
from gallery.layout import USEARCH_DTYPES

LIBRARIES: tuple[str, ...] = ("usearch", "hnswlib")


def _usearch() -> Any:
    """USearch's ``Index`` class, imported on first need (importing this module loads no library), or None: a
    device without it searches a USearch gallery exactly."""
    try:
        from usearch.index import Index
    except ImportError:
        return None
    return Index


def _hnswlib() -> Any:
    """hnswlib, imported on first need (only galleries built with --index hnswlib use it), or None."""
    try:
        import hnswlib
    except ImportError:
        return None
    return hnswlib


def have(library: str) -> bool:
    """Whether ``library`` can be imported here."""
    if library == "usearch":
        return _usearch() is not None
    return library == "hnswlib" and _hnswlib() is not None


def version(library: str) -> str | None:
    """The installed version of ``library`` (None when it is not installed)."""
    if not have(library):
        return None
    if library == "usearch":
        import usearch

        found = getattr(usearch, "__version__", None)
        if found:
            return str(found)
    try:
        return metadata.version(library)
    except metadata.PackageNotFoundError:  # a packaged app without dist-info: the module is there, its version not
        return "unknown"


def compatible(recorded: str, installed: str | None) -> bool:
    """Whether an index written by version ``recorded`` can be read by version ``installed``: the same major version
    (for 0.x releases, the same minor), as both libraries keep their file format within such a release line."""
    if installed is None:
        return False
    if "unknown" in (recorded, installed):
        return True  # nothing to compare; the header checks still run

    def line(v: str) -> tuple[str, ...]:
        parts = v.split(".")
        return tuple(parts[:2]) if parts[0] == "0" else (parts[0],)

    return line(recorded) == line(installed)


class GraphIndex:
    """An HNSW graph of one library: ``topk(queries, k, ef)`` -> (labels (Q,k) int64, cosine scores (Q,k) float32),
    best first; slots beyond the item count are label -1, score -inf. ``ef`` is raised to k when smaller."""

    library = ""

    def __init__(self, index: Any, dim: int):
        self._index = index
        self.dim = int(dim)

    def __len__(self) -> int:
        raise NotImplementedError

    def topk(self, queries: np.ndarray, k: int, ef: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def save(self, path: Path) -> None:
        raise NotImplementedError


class USearchGraph(GraphIndex):
    library = "usearch"

    def __len__(self) -> int:
        return int(self._index.size)

    def topk(self, queries: np.ndarray, k: int, ef: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        k = max(1, min(int(k), len(self)))
        self._index.expansion_search = int(max(ef, k))
        found = self._index.search(q, k, threads=1)
        labels = np.full((len(q), k), -1, dtype=np.int64)
        scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        if hasattr(found, "counts"):  # a batch: fixed-width arrays, ``counts`` valid entries per row
            keys, dist, counts = np.asarray(found.keys), np.asarray(found.distances), np.asarray(found.counts)
        else:  # one query: only the valid entries
            keys, dist, counts = np.asarray(found.keys)[None], np.asarray(found.distances)[None], [len(found.keys)]
        for i, n in enumerate(counts):
            labels[i, :n] = keys[i, :n]
            scores[i, :n] = 1.0 - dist[i, :n]
        return labels, scores

    def save(self, path: Path) -> None:
        self._index.save(str(path))


class HnswlibGraph(GraphIndex):
    library = "hnswlib"

    def __len__(self) -> int:
        return int(self._index.get_current_count())

    def topk(self, queries: np.ndarray, k: int, ef: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(queries, dtype=np.float32).reshape(-1, self.dim)
        k = max(1, min(int(k), len(self)))
        self._index.set_ef(int(max(ef, k)))
        labels, dist = self._index.knn_query(q, k=k)
        return labels.astype(np.int64), (1.0 - dist).astype(np.float32)

    def save(self, path: Path) -> None:
        self._index.save_index(str(path))


def _need(library: str) -> None:
    if library not in LIBRARIES:
        raise GalleryError(f"unknown index library {library!r}; this reader knows {', '.join(LIBRARIES)}")
    if not have(library):
        raise GalleryError(f"building or reading a {library} index needs {library} (pip install {library})")


def build_graph(library: str, vectors: np.ndarray, labels: np.ndarray, *, m: int, ef_construction: int,
                dtype: str = "f32", threads: int = 1, seed: int = 100) -> GraphIndex:
    """An HNSW graph over unit ``vectors`` keyed by integer ``labels`` (cosine), M = ``m`` links a node."""
    _need(library)
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = int(x.shape[1])
    if library == "usearch":
        if dtype not in USEARCH_DTYPES:
            raise GalleryError(f"a USearch index stores vectors as {', '.join(USEARCH_DTYPES)}, not {dtype!r}")
        index = _usearch()(ndim=dim, metric="cos", dtype=dtype, connectivity=int(m),
                              expansion_add=int(ef_construction))
        if len(x):
            index.add(np.asarray(labels, dtype=np.uint64), x, threads=max(1, threads))
        return USearchGraph(index, dim)
    if dtype != "f32":
        raise GalleryError(f"hnswlib stores vectors as f32 only, not {dtype!r}")
    index = _hnswlib().Index(space="ip", dim=dim)
    index.init_index(max_elements=max(1, len(x)), M=int(m), ef_construction=int(ef_construction), random_seed=seed)
    index.set_num_threads(max(1, threads))
    if len(x):
        index.add_items(x, np.asarray(labels, dtype=np.int64))
    index.set_num_threads(1)
    return HnswlibGraph(index, dim)


def read_header(library: str, path: Path) -> dict[str, Any]:
    """What an index file says it holds, from its header alone: count, dim, dtype, and (USearch) the writing version.

    A file that is not an index of ``library`` raises GalleryError."""
    path = Path(path)
    if library == "usearch":
        if not have("usearch"):
            raise GalleryError("reading a usearch index needs usearch (pip install usearch)")
        try:
            meta = _usearch().metadata(str(path))
        except (ValueError, RuntimeError) as exc:
            raise GalleryError(f"index file {path} is not a USearch index ({exc})") from None
        if not meta:
            raise GalleryError(f"index file {path} is missing")
        return {"count": int(meta["count_present"]), "dim": int(meta["dimensions"]),
                "dtype": str(meta["kind_scalar"]).rsplit(".", 1)[-1].lower(),
                "metric": str(meta["kind_metric"]).rsplit(".", 1)[-1].lower(), "version": str(meta["version"])}
    if library == "hnswlib":
        # hnswlib's header: six size_t (level-0 offset, max elements, count, bytes per element, label offset,
        # data offset), then the graph settings; the vector width is the gap between the data and label offsets
        try:
            with open(path, "rb") as f:
                head = f.read(48)
        except OSError as exc:
            raise GalleryError(f"cannot read index file {path}: {exc.strerror}") from None
        if len(head) < 48:
            raise GalleryError(f"index file {path} is not an hnswlib index (only {len(head)} bytes)")
        _, capacity, count, per_item, label_at, data_at = struct.unpack("<6Q", head)
        width = label_at - data_at
        if count > capacity or width <= 0 or width % 4 or per_item < width or width > 1 << 20:
            raise GalleryError(f"index file {path} is not an hnswlib index (its header does not parse)")
        return {"count": int(count), "dim": int(width // 4), "dtype": "f32", "metric": "ip", "version": None}
    raise GalleryError(f"unknown index library {library!r}; this reader knows {', '.join(LIBRARIES)}")


def open_graph(library: str, path: Path, *, dim: int, count: int) -> GraphIndex:
    """Open a saved index for searching: USearch memory-maps the file (only the pages a search touches are read),
    hnswlib loads it whole. The caller has checked the header, size and (unless told not to) SHA-256 already."""
    _need(library)
    try:
        if library == "usearch":
            index = _usearch().restore(str(path), view=True)
            if index is None:
                raise GalleryError(f"index file {path} is missing")
            graph: GraphIndex = USearchGraph(index, dim)
        else:
            index = _hnswlib().Index(space="ip", dim=dim)
            index.load_index(str(path), max_elements=max(1, count))
            index.set_num_threads(1)
            graph = HnswlibGraph(index, dim)
    except (RuntimeError, ValueError) as exc:  # both libraries raise these for short or garbled files
        raise GalleryError(f"index {path} does not load: {exc}; rebuild the gallery index") from None
    if len(graph) != count:
        raise GalleryError(f"index {path} holds {len(graph)} vectors but the gallery has {count}")
    return graph
