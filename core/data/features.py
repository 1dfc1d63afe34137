"""Every row decoded once into arrays: fast batches for training and evaluation on a CPU.

Decoding a JPEG tile and an OGG clip per item costs milliseconds; over 20 epochs it dominates a small model's
training. ``FeatureTable.build`` decodes each row once (a tqdm bar shows it), keeping for every zoom the tile
already cropped and resized (uint8) and a centre-crop log-mel (float16), plus captions, metadata and the
pass-through columns. With ``cache_dir`` the arrays go to disk as .npy files keyed by a fingerprint of the
data files (names, sizes, mtimes), the split and the config fields that shape them, so the next run memory-maps
them in well under a second. Random draws at batch time (zoom, colour jitter) use the caller's generator.
Size: N x Z x S x S x 3 bytes of images + N x frames x n_mels x 2 of mel (the default world: ~0.5 GB) -
meant for the embedded world and CPU-sized subsets, not the paper-scale datasets.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from contracts.errors import DataError
from contracts.image_prep import prepare_tile, random_dihedral, to_model_input
from core.config import Sat2SoundConfig, to_dict
from core.data.dataset import ZoomChoice, check_zoom
from core.data.layouts import open_rows, row_dict
from core.data.rows import RowDecoder

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when decoding changes what the arrays hold: old caches then miss and are rebuilt
_META_ARRAYS = ("rows", "lat", "lon", "month", "hour", "audio_source", "caption_source", "meta_mask")


@dataclass
class _Decoded:
    views: np.ndarray  # (Z, S, S, 3) uint8
    mel: np.ndarray  # (T, F) float32
    sample_id: str
    audio_caption: str
    image_captions: list[str]  # one per zoom
    meta: Any
    extra: dict[str, Any]


def _jsonable(value: Any) -> Any:
    """Pass-through values as they survive the JSON cache, so a fresh build equals a cached load."""
    return json.loads(json.dumps(value, default=str))


class FeatureTable:
    """Decoded split: images (N, Z, S, S, 3) uint8, mel (N, frames, n_mels) float16, metadata and text.

    Build with ``FeatureTable.build``; draw batches with ``batch`` (same keys and dtypes as ``collate``).
    ``subset`` gives a view on some rows without copying the arrays.
    """

    def __init__(self, arrays: dict[str, np.ndarray], text: dict[str, Any], info: dict[str, Any],
                 positions: np.ndarray | None = None, folder: Path | None = None):
        self._arrays = arrays
        self.folder = folder  # the cache folder the arrays are memory-mapped from, or None (in memory)
        self._text = text
        self.info = info
        self.zooms: tuple[int, ...] = tuple(info["zooms"])
        self.gsd: float = float(info["gsd"])
        self.imagery: str = info["imagery"]
        self.kind: str = info["kind"]
        self.split: str = info["split"]
        self.fingerprint: str = info["fingerprint"]
        self.mean = tuple(info["mean"])
        self.std = tuple(info["std"])
        n = arrays["rows"].shape[0]
        self._pos = np.arange(n, dtype=np.int64) if positions is None else np.asarray(positions, dtype=np.int64)

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, path: str | Path, split: str, cfg: Sat2SoundConfig, cache_dir: str | Path | None = None,
              progress: bool = True, *, imagery: str | None = None, use_mel_features: bool = True,
              workers: int = 0) -> FeatureTable:
        """Decode every row of ``split`` once (or load the cached result); ``workers`` threads decode (0 = up to 2)."""
        reader = open_rows(path, split)
        decoder = RowDecoder(reader, cfg, imagery=imagery, use_mel_features=use_mel_features)
        info = {
            "version": FORMAT_VERSION, "split": reader.location.split, "kind": reader.kind,
            "imagery": decoder.imagery, "gsd": decoder.gsd, "zooms": list(decoder.zooms),
            "image_size": cfg.image.image_size, "audio": to_dict(cfg.audio),
            "use_mel_features": decoder.use_mel_features, "mean": list(cfg.image.mean), "std": list(cfg.image.std),
            "extra_columns": decoder.extra_columns,
        }
        keyed = {k: v for k, v in info.items() if k not in ("mean", "std")}
        info["fingerprint"] = hashlib.sha256(
            json.dumps({"files": reader.file_stats(), **keyed}, sort_keys=True).encode()).hexdigest()
        info["source"] = str(reader.location.root)
        info["n"] = len(reader)
        if cache_dir is not None:
            folder = Path(cache_dir) / f"{info['split']}-{info['fingerprint'][:20]}"
            if (folder / "info.json").is_file():
                try:
                    return cls.load(folder)
                except DataError as exc:  # derived data: rebuild rather than stop the run
                    logger.warning("rebuilding the feature cache: %s", exc)
                    shutil.rmtree(folder, ignore_errors=True)
            return cls._decode_all(reader, decoder, cfg, info, progress, workers, folder)
        return cls._decode_all(reader, decoder, cfg, info, progress, workers, None)

    @classmethod
    def _decode_all(cls, reader, decoder: RowDecoder, cfg: Sat2SoundConfig, info: dict[str, Any], progress: bool,
                    workers: int, folder: Path | None) -> FeatureTable:
        n, size = len(reader), cfg.image.image_size
        zooms = decoder.zooms
        shapes = {"images": ((n, len(zooms), size, size, 3), np.uint8),
                  "mel": ((n, cfg.audio.n_frames, cfg.audio.n_mels), np.float16)}
        tmp = None
        if folder is not None:
            tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            big = {k: np.lib.format.open_memmap(tmp / f"{k}.npy", mode="w+", dtype=dt, shape=shape)
                   for k, (shape, dt) in shapes.items()}
        else:
            big = {k: np.zeros(shape, dtype=dt) for k, (shape, dt) in shapes.items()}
        meta = {
            "rows": np.arange(n, dtype=np.int64),
            "lat": np.zeros(n, np.float32), "lon": np.zeros(n, np.float32),
            "month": np.zeros(n, np.float32), "hour": np.zeros(n, np.float32),
            "audio_source": np.zeros(n, np.int64), "caption_source": np.zeros(n, np.int64),
            "meta_mask": np.zeros((n, 5), np.float32),
        }
        text: dict[str, Any] = {"sample_id": [None] * n, "audio_caption": [None] * n,
                                "image_caption": {str(z): [None] * n for z in zooms}, "extra": [None] * n}

        def decode(job: tuple[int, dict[str, Any]]) -> _Decoded:
            index, row = job
            sample = decoder.sample_id(row, index)
            caption = decoder.audio_caption(row, sample, index)
            m = decoder.meta(row, sample, index)
            tile = decoder.tile(row, sample, index)
            views = np.stack([prepare_tile(tile, z, size, decoder.imagery) for z in zooms])
            mel = decoder.mel(row, sample, index, None)
            return _Decoded(views, mel, sample, caption, [decoder.image_caption(row, z) for z in zooms], m,
                            _jsonable(decoder.extra(row)))

        threads = workers if workers > 0 else min(2, os.cpu_count() or 1)
        try:
            with ThreadPoolExecutor(max_workers=threads) as pool, \
                    tqdm(total=n, desc=f"decoding {info['split']}", unit="row", disable=not progress) as bar:
                for start, table in reader.chunks(decoder.columns):
                    jobs = [(start + j, row_dict(table, j)) for j in range(table.num_rows)]
                    for (index, _), d in zip(jobs, pool.map(decode, jobs)):
                        big["images"][index] = d.views
                        big["mel"][index] = d.mel.astype(np.float16)
                        for key in ("lat", "lon", "month", "hour", "audio_source", "caption_source", "meta_mask"):
                            meta[key][index] = getattr(d.meta, key)
                        text["sample_id"][index] = d.sample_id
                        text["audio_caption"][index] = d.audio_caption
                        for z, cap in zip(zooms, d.image_captions):
                            text["image_caption"][str(z)][index] = cap
                        text["extra"][index] = d.extra
                        bar.update(1)
        except BaseException:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        if tmp is None:
            return cls({**big, **meta}, text, info)
        for arr in big.values():
            arr.flush()
        del big
        for key, arr in meta.items():
            np.save(tmp / f"{key}.npy", arr)
        (tmp / "text.json").write_text(json.dumps(text))
        (tmp / "info.json").write_text(json.dumps(info, indent=1))  # written last: marks a complete table
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished the same table first
            shutil.rmtree(tmp, ignore_errors=True)
        return cls.load(folder)

    @classmethod
    def load(cls, folder: str | Path) -> FeatureTable:
        """Open a cached table (images and mel memory-mapped, the rest in memory)."""
        folder = Path(folder)
        try:
            info = json.loads((folder / "info.json").read_text())
            if info.get("version") != FORMAT_VERSION:
                raise DataError(f"feature table format {info.get('version')} is not {FORMAT_VERSION}; delete it",
                                path=folder)
            arrays = {k: np.load(folder / f"{k}.npy", mmap_mode="r") for k in ("images", "mel")}
            arrays.update({k: np.load(folder / f"{k}.npy") for k in _META_ARRAYS})
            text = json.loads((folder / "text.json").read_text())
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"cached feature table is incomplete or corrupt ({exc}); delete it", path=folder) from None
        return cls(arrays, text, info, folder=folder)

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return int(self._pos.shape[0])

    def subset(self, indices: Sequence[int] | np.ndarray) -> FeatureTable:
        """A view on some rows (positions in this table), sharing the arrays."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"subset index out of range for {len(self)} rows")
        return FeatureTable(self._arrays, self._text, self.info, self._pos[idx], self.folder)

    def array(self, name: str) -> np.ndarray:
        """One per-row array for the rows of this view: rows (split row index), lat, lon, month, hour,
        audio_source, caption_source, meta_mask, images, mel."""
        if name not in self._arrays:
            raise KeyError(f"no array {name!r}; have {', '.join(self._arrays)}")
        return self._arrays[name][self._pos]

    @property
    def sample_ids(self) -> list[str]:
        return [self._text["sample_id"][i] for i in self._pos]

    @property
    def audio_captions(self) -> list[str]:
        return [self._text["audio_caption"][i] for i in self._pos]

    def image_captions(self, zoom: int) -> list[str]:
        return [self._text["image_caption"][str(zoom)][i] for i in self._pos]

    @property
    def extras(self) -> list[dict[str, Any]]:
        return [self._text["extra"][i] for i in self._pos]

    def batch(self, indices: Sequence[int] | np.ndarray, zoom: ZoomChoice = 1, rng: np.random.Generator | None = None,
              jitter: float = 0.0, flip_rotate: bool = False) -> dict[str, Any]:
        """The batch ``collate`` would make of these rows' items (centre-crop audio), with optional random zoom
        (per row), random turns and mirrors of the views (``flip_rotate``) and colour jitter drawn from ``rng``."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            raise ValueError("cannot make an empty batch")
        pos = self._pos[idx]
        zoom = check_zoom(zoom, self.zooms)
        if zoom == "random" or jitter > 0 or flip_rotate:
            rng = rng if rng is not None else np.random.default_rng()
        if zoom == "random":
            zi = rng.integers(0, len(self.zooms), size=pos.size)
        else:
            zi = np.full(pos.size, self.zooms.index(zoom))
        views = self._arrays["images"][pos, zi]
        if flip_rotate:
            views = random_dihedral(views, rng)
        image = to_model_input(views, self.mean, self.std, jitter=jitter, rng=rng)
        zooms = np.asarray(self.zooms, dtype=np.int64)[zi]
        a = self._arrays
        return {
            "image": torch.from_numpy(image),
            "mel": torch.from_numpy(np.asarray(a["mel"][pos], dtype=np.float32)),
            "meta_mask": torch.from_numpy(np.asarray(a["meta_mask"][pos], dtype=np.float32)),
            "gsd": torch.full((pos.size,), self.gsd, dtype=torch.float32),
            "lat": torch.from_numpy(a["lat"][pos].astype(np.float32)),
            "lon": torch.from_numpy(a["lon"][pos].astype(np.float32)),
            "month": torch.from_numpy(a["month"][pos].astype(np.float32)),
            "hour": torch.from_numpy(a["hour"][pos].astype(np.float32)),
            "index": torch.from_numpy(a["rows"][pos].astype(np.int64)),
            "zoom": torch.from_numpy(zooms),
            "audio_source": torch.from_numpy(a["audio_source"][pos].astype(np.int64)),
            "caption_source": torch.from_numpy(a["caption_source"][pos].astype(np.int64)),
            "sample_id": [self._text["sample_id"][i] for i in pos],
            "audio_caption": [self._text["audio_caption"][i] for i in pos],
            "image_caption": [self._text["image_caption"][str(z)][i] for z, i in zip(zooms.tolist(), pos)],
            "extra": [self._text["extra"][i] for i in pos],
        }

    def batches(self, batch_size: int, zoom: ZoomChoice = 1, *, shuffle: bool = False,
                rng: np.random.Generator | None = None, jitter: float = 0.0,
                drop_last: bool = False) -> Iterator[dict[str, Any]]:
        """Consecutive batches over the whole table (shuffled with ``rng`` when asked)."""
        if batch_size <= 0:
            raise ValueError("batch_size must be positive")
        order = np.arange(len(self))
        if shuffle:
            rng = rng if rng is not None else np.random.default_rng()
            order = rng.permutation(order)
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for s in range(0, stop, batch_size):
            yield self.batch(order[s:s + batch_size], zoom, rng, jitter)
