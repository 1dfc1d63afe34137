"""Opening checks of a gallery's search index: index.json against the db, each index file against index.json.

What is refused, each with one line that says what to do:

- an index.json from an older release (index format 1: hnswlib graphs or numpy IVF lists with no library version
  recorded, the lists' vectors not memory-mappable), or naming a library this reader does not know;
- an index.json of another build, count, width, model or schema than the db;
- an index file that is missing, shorter or longer than recorded (truncated, or another file), whose header is not
  the recorded library's or holds another count, width or vector type, written by a version of the library that
  the installed one cannot read, or (unless the caller verified the bytes already) whose SHA-256 differs.

A device without the gallery's library is not refused: it searches exactly (``Gallery.exact``).

Device-safe: the standard library and numpy, plus gallery.backends for the graph files' headers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contracts.artifacts import read_json, sha256_file
from gallery import backends
from gallery.errors import GalleryError
from gallery.layout import DB_NAME, INDEX_CHOICES, INDEX_FORMAT, INDEX_JSON, KINDS, SCHEMA_VERSION

UNFINISHED = "the build did not finish (interrupted?): rerun `sat2sound gallery build` with the same --out"


def reindex_hint(root: Path) -> str:
    return f"rebuild its index with `sat2sound gallery reindex {root}` (the db is kept; only the index is remade)"


def check_index_json(root: Path, meta: dict[str, Any], counts: dict[str, int], *, hash_files: bool = True
                     ) -> dict[str, Any]:
    """index.json, checked against the db's meta and counts and against its index files; returns it."""
    path = root / INDEX_JSON
    if not path.is_file():
        raise GalleryError(f"{root} has no {INDEX_JSON}: {UNFINISHED}")
    info = read_json(path, GalleryError)
    db = root / DB_NAME
    if meta["count"] != counts["items"]:
        raise GalleryError(f"{db} holds {counts['items']} items but its meta says {meta['count']}: {UNFINISHED}")
    if info.get("index_format") != INDEX_FORMAT:
        raise GalleryError(f"{path} is index format {info.get('index_format', 1)} (an older release's hnswlib or IVF "
                           f"index, no library version recorded); this reader needs format {INDEX_FORMAT}: "
                           + reindex_hint(root))
    checks = [("count", counts["items"]), ("dim", meta["embedding_dim"]), ("fingerprint", meta["model_fingerprint"]),
              ("build_id", meta["build_id"]), ("schema_version", SCHEMA_VERSION)]
    for key, want in checks:
        if info.get(key) != want:
            raise GalleryError(f"index {path} does not match {db}: {key} is {info.get(key)!r} in the index and "
                               f"{want!r} in the db; rebuild the gallery index (rerun the build)")
    params = info.get("params", {})
    choice = params.get("index")
    if choice not in INDEX_CHOICES:
        raise GalleryError(f"index {path} names index {choice!r}, which this reader does not know (it reads "
                           f"{', '.join(INDEX_CHOICES)}): " + reindex_hint(root))
    entries = dict(info.get("files", {}))
    recorded = meta.get("index_sha256", {})
    for kind in KINDS:
        mode = params.get("mode", {}).get(kind)
        if mode not in ("hnsw", "ivf", "exact"):
            raise GalleryError(f"index {path} searches {kind} by {mode!r}, which this reader does not know: "
                               + reindex_hint(root))
        if mode == "hnsw":
            if kind not in entries:
                raise GalleryError(f"index {path} searches {kind} by its graph but lists no {kind} index file")
            check_index_file(root, entries[kind], params, counts["items"], int(meta["embedding_dim"]))
        if mode == "ivf":
            check_ivf_files(root, entries, kind, counts["items"], int(meta["embedding_dim"]))
    if hash_files:
        for kind, entry in entries.items():
            file = root / entry["file"]
            digest = sha256_file(file)
            if digest != entry.get("sha256") or recorded.get(kind) != digest:
                raise GalleryError(f"index file {file} does not match its gallery (SHA-256 differs from the one "
                                   "recorded at build time); rebuild the gallery index (rerun the build)")
    return info


def check_ivf_files(root: Path, entries: dict[str, Any], kind: str, count: int, dim: int) -> None:
    """IVF lists and their vectors: listed, present, of the recorded size; the vectors' .npy header (shape and
    type) fits the gallery. The lists' own contents are checked when they are opened (gallery/ivf.py)."""
    import numpy as np

    for key in (f"{kind}.ivf", f"{kind}.ivf.vectors"):
        entry = entries.get(key)
        if entry is None:
            raise GalleryError(f"{root / INDEX_JSON} searches {kind} by IVF lists but lists no {key} file")
        file = root / str(entry["file"])
        if not file.is_file():
            raise GalleryError(f"index file {file} is missing")
        if file.stat().st_size != entry.get("bytes"):
            raise GalleryError(f"index file {file} is {file.stat().st_size} bytes, index.json records "
                               f"{entry.get('bytes')} (truncated or replaced): " + reindex_hint(root))
    vectors = root / str(entries[f"{kind}.ivf.vectors"]["file"])
    try:
        with open(vectors, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
    except (OSError, ValueError) as exc:
        raise GalleryError(f"index file {vectors} is not a numpy array file ({exc}): " + reindex_hint(root)) from None
    if tuple(shape) != (count, dim) or dtype != np.float32:
        raise GalleryError(f"index file {vectors} holds {dtype} vectors of shape {tuple(shape)}, the gallery has "
                           f"{count} of width {dim}: " + reindex_hint(root))


def check_index_file(root: Path, entry: dict[str, Any], params: dict[str, Any], count: int, dim: int) -> None:
    """One index file against its index.json entry and the db: presence, size, library, version, header."""
    file = root / str(entry.get("file", ""))
    library = str(entry.get("library") or params.get("index"))
    if library not in backends.LIBRARIES or library != params.get("index"):
        raise GalleryError(f"index file {file} is a {library!r} index in a gallery indexed by {params.get('index')!r}: "
                           + reindex_hint(root))
    if not file.is_file():
        raise GalleryError(f"index file {file} is missing")
    size = file.stat().st_size
    if size != entry.get("bytes"):
        raise GalleryError(f"index file {file} is {size} bytes, index.json records {entry.get('bytes')} (truncated "
                           "or replaced): copy the gallery again or " + reindex_hint(root))
    if not backends.have(library):
        return  # searched exactly on this device (Gallery.exact); nothing here can read the file
    written = str(entry.get("version") or "unknown")
    installed = backends.version(library)
    if not backends.compatible(written, installed):
        raise GalleryError(f"index file {file} was written by {library} {written}; this reader has {library} "
                           f"{installed}, which does not read that release line's files: " + reindex_hint(root))
    head = backends.read_header(library, file)
    if (head["count"], head["dim"]) != (count, dim):
        raise GalleryError(f"index file {file} holds {head['count']} vectors of width {head['dim']}, the gallery has "
                           f"{count} of width {dim}: " + reindex_hint(root))
    want_dtype = params.get("dtype") if library == "usearch" else "f32"
    if head["dtype"] != want_dtype:
        raise GalleryError(f"index file {file} stores {head['dtype']} vectors, index.json records {want_dtype}: "
                           + reindex_hint(root))
    if head["version"] is not None and written != "unknown" and head["version"] != written:
        raise GalleryError(f"index file {file} was written by {library} {head['version']}, index.json records "
                           f"{written} (replaced?): " + reindex_hint(root))
