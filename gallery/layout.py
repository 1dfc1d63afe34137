"""Names and versions that define a gallery folder on disk, shared by the builder and the device-side reader.

A gallery folder holds::

    gallery.db       SQLite: items, clips (BLOBs kept in their own table), embeddings, meta
    caption.hnsw     HNSW index over the caption embeddings (hnswlib, inner product on unit vectors)
    audio.hnsw       HNSW index over the clip embeddings (search by sound)
    index.json       what the index files are: count, dim, model fingerprint, HNSW params, SHA-256 of each file

Only the standard library here: the device imports it.
"""

from __future__ import annotations

# Bump when tables or meaning change; a reader refuses any other version rather than guess.
SCHEMA_VERSION = 1

DB_NAME = "gallery.db"
INDEX_JSON = "index.json"
KINDS: tuple[str, ...] = ("caption", "audio")
CLIP_FORMATS: tuple[str, ...] = ("ogg", "flac", "wav")

# The gallery's read path: the modules a device runs to search a gallery and play its clips (numpy, sqlite3, hnswlib;
# never torch). The rest of the package is the build side.
READ_PATH_MODULES: tuple[str, ...] = ("__init__", "errors", "layout", "index", "clips", "query", "ivf")


def ivf_file_name(kind: str) -> str:
    """File name of the IVF lists (gallery/ivf.py) of one embedding kind, when its search mode is "ivf"."""
    return f"{kind}.ivf.npz"


def index_file_name(kind: str) -> str:
    """File name of the HNSW index for one embedding kind."""
    return f"{kind}.hnsw"


# HNSW parameters chosen by benchmarks/gallery_search.py on this CPU. On synthetic sparse code mixtures M=32 /
# ef_construction=400 lifted recall@10 at ef 1024 from 0.86 (M=16/200) to 0.95 at 100k items. On 100k real teacher
# embeddings (--teacher) M=16 and M=32 are equal (0.974 / 0.972 at ef 1024; cross-modal queries are the hard part)
# and a numpy IVF (gallery/ivf.py) reaches 0.993 at 0.36 ms; M=32 stays as the safer graph. M and ef_construction fix
# the graph; ef is re-measured on each gallery at build time (smallest ef of EF_LADDER whose recall@10 against exact
# search reaches TARGET_RECALL) and recorded in meta + index.json. When no ef reaches it, the gallery records
# search mode "exact" for that kind and readers use exact numpy search (recall 1 by definition).
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 400
EF_LADDER: tuple[int, ...] = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
TARGET_RECALL = 0.99
DEFAULT_EF = 128
