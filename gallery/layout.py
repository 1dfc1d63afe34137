"""Names and versions that define a gallery folder on disk, shared by the builder and the device-side reader.

A gallery folder holds::

    gallery.db         SQLite: items, clips (BLOBs kept in their own table), embeddings, meta
    caption.usearch    the search index over the caption embeddings (USearch HNSW, cosine; or caption.hnsw: hnswlib)
    audio.usearch      the same over the clip embeddings (search by sound)
    caption.ivf.npz    instead of a graph that misses the recall target: IVF lists (gallery/ivf.py), with
    caption.ivf.npy    the items' vectors in list order (memory-mapped on the device); the same for audio
    index.json         what the index files are: library and version, parameters, count, dim, model fingerprint,
                       size and SHA-256 of each file, and the tuning measurements

Only the standard library here: the device imports it.
"""

from __future__ import annotations

# Bump when tables or meaning change; a reader refuses any other version rather than guess.
SCHEMA_VERSION = 1
# Bump when index.json or the index files change meaning. 1: hnswlib graphs or numpy IVF lists, no library version
# recorded (refused now: rebuild the index); 2: one library per gallery, its name and version recorded and checked.
INDEX_FORMAT = 2

DB_NAME = "gallery.db"
INDEX_JSON = "index.json"
KINDS: tuple[str, ...] = ("caption", "audio")
CLIP_FORMATS: tuple[str, ...] = ("ogg", "flac", "wav")

# The gallery's read path: the modules a device runs to search a gallery and play its clips (numpy, sqlite3, and
# usearch or hnswlib when installed; never torch, never FAISS). The rest of the package is the build side.
READ_PATH_MODULES: tuple[str, ...] = ("__init__", "errors", "layout", "backends", "index", "ivf", "checks", "clips",
                                      "query")

# --index choices: the library whose HNSW graph a gallery is searched by, or "exact" (no index file: exact numpy
# search over the vectors in the db). USearch is the default: it memory-maps its index file on open, keeps vectors
# as f16 at no measured recall cost, and has Swift / Java / Objective-C / C bindings for native apps
# (docs/gallery_search.md has the measurement that chose it).
INDEX_CHOICES: tuple[str, ...] = ("usearch", "hnswlib", "exact")
DEFAULT_INDEX = "usearch"
# Vector storage inside a USearch index: f32, f16 or i8 (hnswlib stores f32 only).
USEARCH_DTYPES: tuple[str, ...] = ("f32", "f16", "i8")
DEFAULT_DTYPE = "f16"
INDEX_SUFFIX: dict[str, str] = {"usearch": "usearch", "hnswlib": "hnsw"}


def index_file_name(kind: str, library: str = DEFAULT_INDEX) -> str:
    """File name of one embedding kind's index built with ``library`` (e.g. caption.usearch, audio.hnsw)."""
    return f"{kind}.{INDEX_SUFFIX[library]}"


# Graph parameters (M = connectivity, ef_construction = expansion on add), chosen on 100k real teacher embeddings
# (docs/gallery_search.md): with M 32 in-modal queries (a place among places) plateau at recall@10 0.989 whatever
# the search ef, with M 64 they reach 0.996 at ef 32; ef_construction 800 doubles the build time for a little
# cross-modal recall (0.971 against 0.961 at ef 512), still far from 0.99.
# ef is re-measured on each gallery at build time (the smallest ef of EF_LADDER whose recall@10 against exact
# search reaches TARGET_RECALL for every kind of tuning query) and recorded in index.json. When no ef reaches it,
# or the graph is no faster than exact search (small galleries), IVF lists are tried the same way (search mode
# "ivf"), and when they fail too the gallery records search mode "exact" for that kind and readers use exact
# numpy search (recall 1 by definition).
HNSW_M = 64
HNSW_EF_CONSTRUCTION = 400
EF_LADDER: tuple[int, ...] = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
TARGET_RECALL = 0.99
DEFAULT_EF = 128
