"""One raw row of the schema -> decoded fields. Shared by ``SoundscapeDataset`` and ``FeatureTable`` so both
produce the same numbers, and torch-free so decoding can run in threads or on the device.

Media cells arrive as Hugging Face ``{bytes, path}`` structs (bytes may be null, path relative to the dataset
folder or absolute), as raw binary, or as a path string. Errors name the file (the shard, and the media name
inside it or the external path), the field and the sample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from contracts.errors import ConfigError, DataError
from contracts.image_prep import decode_image, gsd_for, zooms_for
from core.config import Sat2SoundConfig
from core.data.audio_io import load_clip
from core.data.layouts import IMAGE_COLUMNS, MEDIA_COLUMNS, RowReader
from core.data.logmel_numpy import check_audio_config, log_mel_numpy
from core.data.metadata import SampleMeta, sample_metadata

# Columns the decoder turns into item fields; every other non-media column is passed through in ``extra``.
_CONSUMED = {"sample_id", "source", "audio_caption", "audio_caption_source", "latitude", "longitude", "date",
             "date_recorded"}


def choose_imagery(columns: Sequence[str], preferred: str, requested: str | None = None) -> str:
    """Which tile column to read: the one asked for, else the config's, else the only one the dataset has.

    SoundingEarth ships only Google Earth tiles, so a config that prefers Bing still reads it without edits;
    a folder with several tile kinds and none matching is an error that lists them.
    """
    have = [kind for col, kind in IMAGE_COLUMNS.items() if col in columns]
    if requested is not None:
        if requested not in have:
            raise DataError(f"no {requested}_image column; this dataset has imagery: {', '.join(have) or 'none'}")
        return requested
    if preferred in have:
        return preferred
    if len(have) == 1:
        return have[0]
    raise DataError(f"no {preferred}_image column and several other imagery kinds ({', '.join(have)}); "
                    "choose one with imagery=")


class RowDecoder:
    """Decodes the rows of one split for one config and imagery kind."""

    def __init__(self, reader: RowReader, cfg: Sat2SoundConfig, *, imagery: str | None = None,
                 use_mel_features: bool = True):
        check_audio_config(cfg.audio)
        self.reader = reader
        self.cfg = cfg
        self.kind = reader.kind
        self.imagery = choose_imagery(reader.columns, cfg.image.imagery, imagery)
        self.image_column = f"{self.imagery}_image"
        self.gsd = gsd_for(self.imagery)
        self.zooms: tuple[int, ...] = tuple(z for z in cfg.image.zooms if z in zooms_for(self.imagery))
        if not self.zooms:
            raise ConfigError(f"none of the configured zooms {cfg.image.zooms} exist for {self.imagery} imagery "
                              f"(it has {zooms_for(self.imagery)})")
        self.caption_columns = {z: f"llava_caption_{self.imagery}_zl{z}" for z in self.zooms}
        self.use_mel_features = use_mel_features and "mel_features" in reader.columns
        self.extra_columns = [c for c in reader.columns
                              if c not in _CONSUMED and c not in MEDIA_COLUMNS and not c.startswith("llava_caption_")]
        wanted = {"sample_id", "audio", "audio_caption", "latitude", "longitude", self.image_column,
                  "source", "audio_caption_source", "date", "date_recorded", *self.caption_columns.values(),
                  *self.extra_columns}
        if self.use_mel_features:
            wanted.add("mel_features")
        self.columns = [c for c in reader.columns if c in wanted]
        self.bases = self._bases()

    def _bases(self) -> list[Path]:
        bases = [self.reader.location.root]
        for f in self.reader.location.files:
            for p in (f.parent, f.parent.parent):
                if p not in bases:
                    bases.append(p)
        return bases

    # ------------------------------------------------------------------ fields
    def sample_id(self, row: Mapping[str, object], index: int) -> str:
        value = row.get("sample_id")
        if value is None or not str(value).strip():
            raise DataError("empty sample_id", path=self.reader.file_of(index), field="sample_id",
                            sample=f"row {index}")
        return str(value)

    def audio_caption(self, row: Mapping[str, object], sample: str, index: int) -> str:
        text = row.get("audio_caption")
        if text is None or not str(text).strip():
            raise DataError("empty audio caption", path=self.reader.file_of(index), field="audio_caption",
                            sample=sample)
        return str(text).strip()

    def image_caption(self, row: Mapping[str, object], zoom: int) -> str:
        text = row.get(self.caption_columns.get(zoom, ""))
        return str(text).strip() if text is not None else ""

    def meta(self, row: Mapping[str, object], sample: str, index: int) -> SampleMeta:
        return sample_metadata(row, kind=self.kind, sample=sample, path=self.reader.file_of(index))

    def extra(self, row: Mapping[str, object]) -> dict[str, object]:
        """Pass-through columns as plain Python values (numeric lists as lists, not arrays: JSON-able, and
        ``value or []`` works on them)."""
        out = {}
        for c in self.extra_columns:
            value = row.get(c)
            out[c] = value.tolist() if isinstance(value, np.ndarray) else value
        return out

    # ------------------------------------------------------------------ media
    def media(self, value: object, field: str, sample: str, index: int) -> tuple[bytes | Path, str]:
        """A media cell -> (bytes or a resolved path, the name to use in errors)."""
        shard = self.reader.file_of(index)
        if isinstance(value, Mapping):
            data, inner = value.get("bytes"), value.get("path")
            if data:
                return bytes(data), f"{shard} [{inner or 'embedded bytes'}]"
            if inner:
                path = self._resolve(str(inner))
                return path, str(path)
            raise DataError(f"{field} cell has neither bytes nor a path", path=shard, field=field, sample=sample)
        if isinstance(value, bytes | bytearray | memoryview):
            if not len(value):
                raise DataError(f"{field} is empty", path=shard, field=field, sample=sample)
            return bytes(value), f"{shard} [embedded bytes]"
        if isinstance(value, str) and value.strip():
            path = self._resolve(value.strip())
            return path, str(path)
        raise DataError(f"{field} is missing", path=shard, field=field, sample=sample)

    def _resolve(self, name: str) -> Path:
        p = Path(name)
        if p.is_absolute():
            return p
        for base in self.bases:
            if (base / p).is_file():
                return base / p
        return self.bases[0] / p  # does not exist: the decoder's error names this path

    def tile(self, row: Mapping[str, object], sample: str, index: int) -> np.ndarray:
        """The native tile, RGB uint8 (H, W, 3)."""
        source, name = self.media(row.get(self.image_column), self.image_column, sample, index)
        return decode_image(source, name_for_errors=name, field=self.image_column, sample=sample)

    def mel(self, row: Mapping[str, object], sample: str, index: int, rng: np.random.Generator | None) -> np.ndarray:
        """Log-mel (frames, n_mels) float32: the shipped mel_features if their shape fits the config, else audio."""
        if self.use_mel_features:
            views = self.mel_views(row.get("mel_features"))
            if views is not None:
                return views[int(rng.integers(len(views))) if rng is not None else 0]
        if "audio" not in row or row.get("audio") is None:
            raise DataError("audio is missing", path=self.reader.file_of(index), field="audio", sample=sample)
        source, name = self.media(row.get("audio"), "audio", sample, index)
        wave = load_clip(source, self.cfg.audio, rng, name_for_errors=name, field="audio", sample=sample)
        return log_mel_numpy(wave, self.cfg.audio)

    def mel_views(self, value: object) -> np.ndarray | None:
        """Shipped features as (views, frames, n_mels) when their trailing shape matches the config, else None."""
        if value is None:
            return None
        try:
            arr = np.array(value, dtype=np.float32)  # a writable copy (Arrow buffers are read-only)
        except (TypeError, ValueError):  # ragged or non-numeric: not usable features
            return None
        frames, n_mels = self.cfg.audio.n_frames, self.cfg.audio.n_mels
        if arr.ndim < 2 or arr.shape[-2:] != (frames, n_mels) or arr.size == 0:
            return None
        return arr.reshape(-1, frames, n_mels)
