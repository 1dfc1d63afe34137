"""The one loader: ``open_dataset(path, split, cfg)`` reads GeoSound, SoundingEarth and the embedded world alike.

Rows are read lazily (one Parquet row group at a time, Arrow memory-mapped) and decoded per item: tile ->
centre crop for the zoom -> bicubic resize -> (turns, mirrors, colour jitter when training) -> ImageNet
normalisation; audio -> mono, resample, crop (random when training, centred otherwise) or zero-pad -> log-mel.
Randomness comes from a generator seeded by (seed, epoch, row), so a run is reproducible whatever the DataLoader
worker count.
For many epochs on CPU, ``core.data.features.FeatureTable`` decodes every row once instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler
from tqdm import tqdm

from contracts.errors import ConfigError
from contracts.image_prep import prepare_tile, random_dihedral, to_model_input
from core.config import Sat2SoundConfig
from core.data.layouts import RowReader, open_rows, row_dict
from core.data.rows import RowDecoder

ZoomChoice = int | str  # a zoom level, or "random" (uniform over the dataset's zooms, per item)

TENSOR_FLOAT_KEYS = ("gsd", "lat", "lon", "month", "hour")
TENSOR_LONG_KEYS = ("index", "zoom", "audio_source", "caption_source")
LIST_KEYS = ("sample_id", "audio_caption", "image_caption", "extra")


def check_zoom(zoom: ZoomChoice, zooms: Sequence[int]) -> ZoomChoice:
    """A zoom the data has, or "random"; anything else is a ConfigError listing the choices."""
    if isinstance(zoom, str):
        if zoom == "random":
            return zoom
        raise ConfigError(f"zoom must be one of {list(zooms)} or 'random', got {zoom!r}")
    if isinstance(zoom, bool) or int(zoom) != zoom or int(zoom) not in zooms:
        raise ConfigError(f"zoom must be one of {list(zooms)} or 'random', got {zoom!r}")
    return int(zoom)


class SoundscapeDataset(Dataset):
    """Items: dict(index, sample_id, image (3,S,S), zoom, gsd, mel (frames, n_mels), audio_caption, image_caption,
    lat, lon, month, hour, audio_source, caption_source, meta_mask (5,), extra). Batch them with ``collate``."""

    def __init__(self, reader: RowReader, cfg: Sat2SoundConfig, *, zoom: ZoomChoice = 1, train: bool = False,
                 jitter: float | None = None, imagery: str | None = None, use_mel_features: bool = True,
                 seed: int = 0):
        self.reader = reader
        self.cfg = cfg
        self.decoder = RowDecoder(reader, cfg, imagery=imagery, use_mel_features=use_mel_features)
        self.zoom = check_zoom(zoom, self.decoder.zooms)
        self.train = bool(train)
        if jitter is None:
            jitter = cfg.image.colour_jitter if train else 0.0
        self.jitter = float(jitter)
        self.seed = int(seed)
        self.epoch = 0

    # ------------------------------------------------------------------ description
    @property
    def kind(self) -> str:
        """'geosound' or 'soundingearth' (decided from the columns)."""
        return self.reader.kind

    @property
    def imagery(self) -> str:
        return self.decoder.imagery

    @property
    def gsd(self) -> float:
        return self.decoder.gsd

    @property
    def zooms(self) -> tuple[int, ...]:
        return self.decoder.zooms

    @property
    def split(self) -> str:
        return self.reader.location.split

    @property
    def path(self) -> Path:
        return self.reader.location.root

    def __len__(self) -> int:
        return len(self.reader)

    def set_epoch(self, epoch: int) -> None:
        """Change the random draws (crop, zoom, jitter) for a new epoch; call it in every worker's copy."""
        self.epoch = int(epoch)

    def _rng(self, index: int) -> np.random.Generator | None:
        if not (self.train or self.zoom == "random" or self.jitter > 0):
            return None
        return np.random.default_rng([self.seed, self.epoch, index])

    # ------------------------------------------------------------------ items
    def __getitem__(self, index: int) -> dict[str, Any]:
        if index < 0:
            index += len(self)
        dec = self.decoder
        row = self.reader.row(index, dec.columns)
        rng = self._rng(index)
        sample = dec.sample_id(row, index)
        audio_caption = dec.audio_caption(row, sample, index)
        meta = dec.meta(row, sample, index)
        zoom = int(dec.zooms[rng.integers(len(dec.zooms))]) if self.zoom == "random" else int(self.zoom)
        view = prepare_tile(dec.tile(row, sample, index), zoom, self.cfg.image.image_size, dec.imagery)
        if self.train and self.cfg.image.flip_rotate:
            view = random_dihedral(view, rng)
        image = to_model_input(view, self.cfg.image.mean, self.cfg.image.std, jitter=self.jitter, rng=rng)
        mel = dec.mel(row, sample, index, rng if self.train else None)
        return {
            "index": index,
            "sample_id": sample,
            "image": torch.from_numpy(image),
            "zoom": zoom,
            "gsd": dec.gsd,
            "mel": torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32)),
            "audio_caption": audio_caption,
            "image_caption": dec.image_caption(row, zoom),
            "lat": meta.lat,
            "lon": meta.lon,
            "month": meta.month,
            "hour": meta.hour,
            "audio_source": meta.audio_source,
            "caption_source": meta.caption_source,
            "meta_mask": torch.from_numpy(meta.meta_mask),
            "extra": dec.extra(row),
        }

    def check(self, media: bool = False, progress: bool = False) -> int:
        """Decode every row's metadata and captions (and media when asked); return the row count or raise DataError."""
        dec = self.decoder
        cols = dec.columns if media else [c for c in dec.columns if c not in ("audio", "mel_features",
                                                                                dec.image_column)]
        n = 0
        with tqdm(total=len(self), desc=f"checking {self.split}", unit="row", disable=not progress) as bar:
            for start, table in self.reader.chunks(cols):
                for j in range(table.num_rows):
                    if media:
                        self[start + j]
                    else:
                        row = row_dict(table, j)
                        sample = dec.sample_id(row, start + j)
                        dec.audio_caption(row, sample, start + j)
                        dec.meta(row, sample, start + j)
                    n += 1
                    bar.update(1)
        return n


class RowGroupSampler(Sampler[int]):
    """Shuffled order that finishes one row group before the next (groups and rows within them shuffled).

    Parquet is read a row group at a time; a plain random order would read a whole group per item. With this
    sampler each group is read once per epoch (per DataLoader worker). Seeded by (seed, epoch).
    """

    def __init__(self, dataset: SoundscapeDataset, seed: int = 0):
        self.ranges = dataset.reader.group_ranges
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return sum(stop - start for start, stop in self.ranges)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        for g in rng.permutation(len(self.ranges)):
            start, stop = self.ranges[g]
            yield from (int(i) for i in start + rng.permutation(stop - start))


def open_dataset(path: str | Path, split: str, cfg: Sat2SoundConfig, *, zoom: ZoomChoice = 1, train: bool = False,
                 jitter: float | None = None, imagery: str | None = None, use_mel_features: bool = True,
                 seed: int = 0) -> SoundscapeDataset:
    """Open one split of a dataset folder (Parquet shards or save_to_disk) as a torch Dataset.

    zoom: a zoom level of the imagery (1/3/5 Bing and Sentinel, 1 Google Earth) or "random" (uniform per item).
    train: random audio crop and (unless ``jitter`` says otherwise) colour jitter of ``cfg.image.colour_jitter``.
    imagery: tile column to read (default: ``cfg.image.imagery``, or the only imagery the dataset has).
    use_mel_features: use shipped ``mel_features`` when their shape matches the config.
    """
    return SoundscapeDataset(open_rows(path, split), cfg, zoom=zoom, train=train, jitter=jitter, imagery=imagery,
                             use_mel_features=use_mel_features, seed=seed)


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack items into a batch: image (B,3,S,S), mel (B,T,F), meta_mask (B,5) float32; zoom, index, audio_source,
    caption_source long (B,); gsd, lat, lon, month, hour float32 (B,); lists for sample_id, captions and extra."""
    if not items:
        raise ValueError("cannot collate an empty batch")
    batch: dict[str, Any] = {
        "image": torch.stack([it["image"] for it in items]),
        "mel": torch.stack([it["mel"] for it in items]),
        "meta_mask": torch.stack([it["meta_mask"] for it in items]),
    }
    for key in TENSOR_FLOAT_KEYS:
        batch[key] = torch.tensor([float(it[key]) for it in items], dtype=torch.float32)
    for key in TENSOR_LONG_KEYS:
        batch[key] = torch.tensor([int(it[key]) for it in items], dtype=torch.long)
    for key in LIST_KEYS:
        batch[key] = [it[key] for it in items]
    return batch
