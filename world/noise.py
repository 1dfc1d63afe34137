"""Deterministic hashing and value noise driven by world coordinates.

Every random-looking thing in a tile (where a forest edge runs, which parcel grows wheat, where a roof sits) is a
hash of a world-space lattice point and a key, never a draw from a stateful generator. That is what makes a tile a
pure function of where it is: two requests that cover the same ground evaluate the same hashes there.
"""

from __future__ import annotations

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xC2B2AE3D27D4EB4F)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)


def mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 arrays (wrapping arithmetic is intended)."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def field_key(seed: int, name: str) -> int:
    """A 63-bit key for one named field of one world seed, stable across runs and platforms."""
    h = 1469598103934665603
    for ch in f"{int(seed)}/{name}".encode():
        h = ((h ^ ch) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF


def hash2(ix: np.ndarray, iy: np.ndarray, key: int) -> np.ndarray:
    """uint64 hash of integer lattice points (broadcasting) under ``key``."""
    ux = np.asarray(ix).astype(np.int64).astype(np.uint64)
    uy = np.asarray(iy).astype(np.int64).astype(np.uint64)
    return mix64(mix64(ux * _K1 + np.uint64(key)) ^ (uy * _K2))


def unit(h: np.ndarray) -> np.ndarray:
    """uint64 hash -> float64 uniform in [0, 1)."""
    return (h >> _S11).astype(np.float64) * (1.0 / 9007199254740992.0)


def hash_unit(ix: np.ndarray, iy: np.ndarray, key: int) -> np.ndarray:
    return unit(hash2(ix, iy, key))


def mix_bits(h: np.ndarray) -> np.ndarray:
    """A second, cheap uint64 hash of ``h`` (multiply and xor-shift) for one more independent value per point."""
    return (h * np.uint64(0x9E3779B97F4A7C15)) ^ (h >> np.uint64(29))


def _smooth(t: np.ndarray) -> np.ndarray:
    return t * t * (3.0 - 2.0 * t)


def value_noise(xs: np.ndarray, ys: np.ndarray, scale: float, key: int) -> np.ndarray:
    """Smooth value noise in [-1, 1] on the separable grid ``ys x xs`` (metres): shape (len(ys), len(xs)), float32.

    Lattice values are hashed only for the few lattice points the grid touches; interpolation runs along x on the
    lattice rows and then along y, so the cost is about three passes over the output.
    """
    gx = np.asarray(xs, np.float64) / scale
    gy = np.asarray(ys, np.float64) / scale
    fx_i = np.floor(gx)
    fy_i = np.floor(gy)
    sx = _smooth((gx - fx_i).astype(np.float32))
    sy = _smooth((gy - fy_i).astype(np.float32))
    ix = fx_i.astype(np.int64)
    iy = fy_i.astype(np.int64)
    ix0, iy0 = int(ix.min()), int(iy.min())
    lx = np.arange(ix0, int(ix.max()) + 2, dtype=np.int64)
    ly = np.arange(iy0, int(iy.max()) + 2, dtype=np.int64)
    lattice = (hash_unit(lx[None, :], ly[:, None], key) * 2.0 - 1.0).astype(np.float32)
    jx = ix - ix0
    a = lattice[:, jx]
    rows = a + (lattice[:, jx + 1] - a) * sx[None, :]
    steps = rows[1:] - rows[:-1]
    jy = iy - iy0
    out = steps[jy]
    out *= sy[:, None]
    out += rows[jy]
    return out


def _axis(coords: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Lattice cell (relative to the first touched cell) and smoothstep weight of each coordinate on one axis."""
    g = np.asarray(coords, np.float64) / scale
    fi = np.floor(g)
    i = fi.astype(np.int64)
    lo = int(i.min())
    return i - lo, _smooth((g - fi).astype(np.float32)), lo, int(i.max()) - lo + 2


def value_noise_at(xs: np.ndarray, ys: np.ndarray, rows: np.ndarray, cols: np.ndarray, scale: float, key: int
                   ) -> np.ndarray:
    """The field of :func:`value_noise` on the grid ``ys x xs`` but only at the pixels (rows[k], cols[k]); float32.

    For features that cover a small part of a tile this is cheaper than the whole grid, and exactly equal to it.
    """
    jx, sx, x0, nx = _axis(xs, scale)
    jy, sy, y0, ny = _axis(ys, scale)
    lattice = (hash_unit(np.arange(x0, x0 + nx)[None, :], np.arange(y0, y0 + ny)[:, None], key) * 2.0 - 1.0
               ).astype(np.float32)
    cx, cy = jx[cols], jy[rows]
    wx, wy = sx[cols], sy[rows]
    flat = lattice.ravel()
    base = cy * nx + cx
    a, b = flat[base], flat[base + 1]
    c, d = flat[base + nx], flat[base + nx + 1]
    top = a + (b - a) * wx
    bottom = c + (d - c) * wx
    return top + (bottom - top) * wy


def noise_bounds(xs: np.ndarray, ys: np.ndarray, scale: float, key: int) -> tuple[float, float]:
    """Exact min and max of :func:`value_noise` over the rectangle spanned by ``xs`` x ``ys``.

    Inside one lattice cell the field is bilinear in the smoothstepped coordinates, so its extremes over a
    rectangle sit at the rectangle's corners; cutting the rectangle at cell borders and evaluating all those corners
    bounds it exactly. Used to skip features (rivers, rail) that cannot appear in a tile, at the cost of a few points.
    """
    def cuts(c: np.ndarray) -> np.ndarray:
        lo, hi = float(np.min(c)), float(np.max(c))
        inner = np.arange(np.floor(lo / scale) + 1, np.floor(hi / scale) + 1) * scale
        return np.unique(np.concatenate([[lo, hi], inner[(inner > lo) & (inner < hi)]]))

    v = value_noise(cuts(xs), cuts(ys), scale, key)
    return float(v.min()), float(v.max())


def fade(scale: float, gsd: float) -> float:
    """Weight of a texture octave of feature size ``scale`` at ground sample distance ``gsd``.

    Detail smaller than about two pixels is faded out instead of aliasing into salt-and-pepper speckle.
    """
    return float(np.clip((scale / gsd - 1.0) / 2.0, 0.0, 1.0))


def fbm(xs: np.ndarray, ys: np.ndarray, octaves: list[tuple[float, float]], key: int, gsd: float | None = None
        ) -> np.ndarray:
    """Weighted sum of value-noise octaves ``[(scale, weight), ...]``, normalised to about [-1, 1].

    With ``gsd`` given, octaves finer than the pixels are faded (their weight still counts in the normaliser, so the
    texture just gets calmer, as a coarser image of the same ground would look).
    """
    total = sum(w for _, w in octaves)
    out = np.zeros((len(ys), len(xs)), np.float32)
    for n, (scale, weight) in enumerate(octaves):
        w = weight * (fade(scale, gsd) if gsd is not None else 1.0)
        if w <= 0.0:
            continue
        out += np.float32(w / total) * value_noise(xs, ys, scale, key + 7919 * (n + 1))
    return out


def fbm_at(xs: np.ndarray, ys: np.ndarray, rows: np.ndarray, cols: np.ndarray, octaves: list[tuple[float, float]],
           key: int, gsd: float | None = None) -> np.ndarray:
    """:func:`fbm` at selected pixels only (exactly the same values)."""
    total = sum(w for _, w in octaves)
    out = np.zeros(len(rows), np.float32)
    for n, (scale, weight) in enumerate(octaves):
        w = weight * (fade(scale, gsd) if gsd is not None else 1.0)
        if w <= 0.0:
            continue
        out += np.float32(w / total) * value_noise_at(xs, ys, rows, cols, scale, key + 7919 * (n + 1))
    return out
