"""Helpers (no tests) for the gallery tests: galleries written by the real writer with real vectors and clips.

The vectors are made here (clustered unit vectors, audio = caption + noise), which tests storage, indexing and
search - not the model; the build tests use a real checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gallery.captions import caption_id
from gallery.clips import encode_clip
from gallery.store import GalleryRow, GalleryWriter

SR = 8000


def unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered_vectors(n: int, dim: int, seed: int = 0, clusters: int = 8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = unit_rows(rng.normal(size=(clusters, dim)))
    return unit_rows(centres[rng.integers(0, clusters, n)] + 0.35 * rng.normal(size=(n, dim)) / np.sqrt(dim) * 4)


def tone(i: int, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * (200 + 40 * i) * t)).astype(np.float32)


def make_rows(n: int, dim: int, *, seed: int = 0, start: int = 0, fmt: str = "ogg") -> list[GalleryRow]:
    cap = clustered_vectors(n, dim, seed)
    rng = np.random.default_rng(seed + 1)
    aud = unit_rows(cap + 0.2 * rng.normal(size=cap.shape) / np.sqrt(dim) * 4)
    rows = []
    for j in range(n):
        i = start + j
        text = f"caption number {i}: birds and wind near a river"
        rows.append(GalleryRow(id=caption_id(text), caption=text, clip=encode_clip(tone(i), SR, fmt), clip_format=fmt,
                               sample_rate=SR, seconds=0.5, caption_vector=cap[j], audio_vector=aud[j],
                               renderer="test", provenance=[{"sample_id": f"s{i}", "zoom": 1, "split": "test"}],
                               zoom=1, lat=40.0 + i * 0.01, lon=-90.0, split="test", sources=["birds", "wind"]))
    return rows


def make_gallery(root: Path, n: int = 60, dim: int = 32, *, fingerprint: str = "a" * 64, seed: int = 0,
                 fmt: str = "ogg", **finish: Any) -> list[GalleryRow]:
    """A gallery written by the real writer; ``finish`` goes to ``GalleryWriter.finish`` (e.g. index="hnswlib",
    must_beat_exact=False so that a gallery this small is searched by its graph rather than exactly)."""
    rows = make_rows(n, dim, seed=seed, fmt=fmt)
    with GalleryWriter.open(root, fingerprint=fingerprint, dim=dim, clip_format=fmt, sample_rate=SR) as w:
        for k in range(0, n, 25):
            w.add_batch(rows[k : k + 25])
        w.finish(**finish)
    return rows
