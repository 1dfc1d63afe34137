"""Inverted-file (IVF) lists, the gallery's fallback where no graph reaches the recall target: probe the lists
whose centroids are nearest the query and score every item in them exactly.

Why it is still here (docs/gallery_search.md has the figures): HNSW graphs - USearch, hnswlib and FAISS alike -
answer in-modal queries (a place among places) at recall@10 0.99 in a tenth of a millisecond, but a cross-modal
query (a text among image embeddings, a place among captions) has its true top ten scattered over many distant
regions, and a greedy graph walk finds some of them only: recall@10 stays near 0.97-0.98 even at ef 2048 on 100,000
real teacher embeddings. Probing the lists nearest the query covers every region that matters. USearch has no
IVF, and FAISS, which has, is no library a phone links; so the lists are trained on the build side with FAISS's
k-means (gallery/tuning.py) and only the probe below - two matrix products and a partial sort - runs on the device.

On disk, per embedding kind: ``{kind}.ivf.npz`` (centroids, the item label at each list position, where each list
starts; a few hundred KB) and ``{kind}.ivf.npy`` (the items' float32 vectors in list order), which the device
memory-maps, so opening reads neither file whole and a query touches only the lists it probes.

Device-safe: numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gallery.errors import GalleryError

NPROBE_LADDER: tuple[int, ...] = (4, 8, 12, 16, 24, 32, 48, 64, 96, 128)


@dataclass(frozen=True)
class IVFIndex:
    centroids: np.ndarray  # (L, d) float32 unit vectors
    order: np.ndarray  # (N,) int64: the item label at each list position
    starts: np.ndarray  # (L + 1,) int64: where each list begins
    vectors: np.ndarray  # (N, d) float32, the items in list order (contiguous per list; a memory map when opened)

    @property
    def n_lists(self) -> int:
        return int(self.centroids.shape[0])

    def __len__(self) -> int:
        return int(self.order.shape[0])


def default_lists(n: int) -> int:
    """About 3.2 sqrt(n) lists (1012 at 100k, about 100 items each): on 100k real embeddings this reaches recall@10
    0.99 for text queries at nprobe 48 in 0.45 ms, where 506 lists need 0.77 ms (docs/gallery_search.md)."""
    return max(1, min(n, int(round(3.2 * np.sqrt(max(n, 1))))))


def from_assignment(vectors: np.ndarray, centroids: np.ndarray, assign: np.ndarray) -> IVFIndex:
    """Lists from each item's list number (``assign``), items in label order 0..N-1."""
    order = np.argsort(assign, kind="stable").astype(np.int64)
    starts = np.searchsorted(assign[order], np.arange(len(centroids) + 1)).astype(np.int64)
    return IVFIndex(np.ascontiguousarray(centroids, dtype=np.float32), order, starts,
                    np.ascontiguousarray(vectors[order], dtype=np.float32))


def ivf_topk(index: IVFIndex, queries: np.ndarray, k: int, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k item labels and exact scores (best first) from the ``nprobe`` lists nearest each query. Fewer than k
    items in the probed lists: the rest are -1 with score -inf."""
    q = np.asarray(queries, dtype=np.float32).reshape(-1, index.centroids.shape[1])
    nprobe = max(1, min(int(nprobe), index.n_lists))
    k = max(1, min(int(k), len(index)))
    labels = np.full((len(q), k), -1, dtype=np.int64)
    scores = np.full((len(q), k), -np.inf, dtype=np.float32)
    for i, qv in enumerate(q):
        near = index.centroids @ qv
        probe = np.argpartition(-near, nprobe - 1)[:nprobe] if nprobe < index.n_lists else np.arange(index.n_lists)
        first, last = index.starts[probe], index.starts[probe + 1]
        sizes = last - first
        offsets = np.cumsum(sizes) - sizes  # where each probed list's scores begin in ``sc``
        sc = np.empty(int(sizes.sum()), dtype=np.float32)
        for a, b, o in zip(first.tolist(), last.tolist(), offsets.tolist()):
            if b > a:  # each list is a contiguous slice: score it in place (a memory map reads only these pages)
                np.dot(index.vectors[a:b], qv, out=sc[o:o + b - a])
        kk = min(k, len(sc))
        if kk == 0:
            continue
        top = np.argpartition(-sc, kk - 1)[:kk] if kk < len(sc) else np.arange(len(sc))
        which = np.searchsorted(offsets, top, side="right") - 1  # the probed list each winner came from
        pos = first[which] + (top - offsets[which])
        best = np.lexsort((pos, -sc[top]))
        labels[i, :kk] = index.order[pos[best]]
        scores[i, :kk] = sc[top[best]]
    return labels, scores


def _is_permutation(order: np.ndarray, count: int) -> bool:
    """Whether ``order`` holds each of 0..count-1 exactly once."""
    if count == 0:
        return len(order) == 0
    return bool(order.min() >= 0 and order.max() < count and np.all(np.bincount(order, minlength=count) == 1))


def ivf_file_names(kind: str) -> tuple[str, str]:
    """(lists file, vectors file) of one embedding kind."""
    return f"{kind}.ivf.npz", f"{kind}.ivf.npy"


def save_ivf(index: IVFIndex, lists: Path, vectors: Path) -> None:
    """The lists as plain arrays (no pickle) and the list-ordered vectors as a memory-mappable .npy."""
    with open(lists, "wb") as f:
        np.savez(f, centroids=index.centroids, order=index.order, starts=index.starts)
    with open(vectors, "wb") as f:
        np.save(f, np.ascontiguousarray(index.vectors, dtype=np.float32), allow_pickle=False)


def load_ivf(lists: Path, vectors: Path, *, count: int, dim: int) -> IVFIndex:
    """Open saved lists (the vectors memory-mapped) and check they fit a gallery of ``count`` items of width ``dim``."""
    try:
        with np.load(lists, allow_pickle=False) as z:
            centroids, order, starts = z["centroids"], z["order"].astype(np.int64), z["starts"].astype(np.int64)
        matrix = np.load(vectors, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise GalleryError(f"IVF lists {lists} do not load: {exc}") from None
    ok = (centroids.ndim == 2 and centroids.shape[1] == dim and len(order) == count and len(starts) == len(centroids)
          + 1 and starts[0] == 0 and starts[-1] == count and matrix.shape == (count, dim)
          and matrix.dtype == np.float32 and _is_permutation(order, count))
    if not ok:
        raise GalleryError(f"IVF lists {lists} do not fit this gallery's {count} vectors of width {dim}")
    # a plain ndarray view of the map: same pages, without np.memmap's per-slice overhead in the probe loop
    return IVFIndex(centroids.astype(np.float32), order, starts, np.asarray(matrix))
