"""Calibration data for static int8: real batches, checked against the tower's inputs before ORT sees them.

``--calib`` is either a dataset folder (its train split, else validation, supplies the samples) or an .npz file
of ready inputs keyed by the towers' input names (image, zoom, gsd, lat, lon, month, hour, audio_source,
caption_source, meta_mask / mel / input_ids, attention_mask), for data that was preprocessed elsewhere.

Every batch is checked against the ONNX graph's declared inputs (names, rank, fixed dimensions, one batch size,
numeric dtype, finite values) so that calibration data of the wrong shape is a DataError naming the tower, the
input and both shapes, not a crash deep inside onnxruntime; an empty source is a DataError too.
Image batches cycle through the zoom levels and show every metadata field for half the samples and a random
subset for the rest, so activation ranges cover what the device will feed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from compress.onnx_feeds import audio_feed, image_feed, text_feed
from contracts.errors import DataError
from contracts.schema import META_FIELDS
from export.ort_session import onnx_session

if TYPE_CHECKING:
    from core.config import Sat2SoundConfig

CALIB_SPLITS: tuple[str, ...] = ("train", "validation")


def input_specs(onnx_path: str | Path) -> dict[str, tuple[list[int | None], str]]:
    """name -> (shape with None for symbolic dims, ORT type string) of a graph's inputs."""
    sess = onnx_session(onnx_path)
    return {i.name: ([d if isinstance(d, int) else None for d in i.shape], i.type) for i in sess.get_inputs()}


def _dtype(ort_type: str) -> Any:
    return {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
            "tensor(float16)": np.float16}.get(ort_type, np.float32)


def check_batch(batch: Mapping[str, Any], specs: dict[str, tuple[list[int | None], str]], *, tower: str,
                source: object) -> dict[str, np.ndarray]:
    """The batch restricted to the graph's inputs and cast to their dtypes; DataError when it does not fit."""
    missing = [k for k in specs if k not in batch]
    if missing:
        raise DataError(f"calibration data for the {tower} tower lacks input(s) {', '.join(missing)} "
                        f"(the tower takes {', '.join(specs)})", path=source)
    out: dict[str, np.ndarray] = {}
    sizes = set()
    for name, (shape, ort_type) in specs.items():
        arr = np.asarray(batch[name])
        if arr.dtype.kind not in "biuf":
            raise DataError(f"calibration input {name!r} of the {tower} tower is not numeric ({arr.dtype})",
                            path=source, field=name)
        if arr.ndim != len(shape) or any(want is not None and got != want for got, want in zip(arr.shape, shape)):
            want = "x".join("N" if d is None else str(d) for d in shape)
            raise DataError(f"calibration input {name!r} of the {tower} tower has shape {tuple(arr.shape)}, the "
                            f"graph expects {want}", path=source, field=name)
        if arr.shape[0] == 0:
            raise DataError(f"calibration input {name!r} of the {tower} tower is empty", path=source, field=name)
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise DataError(f"calibration input {name!r} of the {tower} tower holds NaN or inf", path=source,
                            field=name)
        sizes.add(arr.shape[0])
        out[name] = np.ascontiguousarray(arr.astype(_dtype(ort_type), copy=False))
    if len(sizes) > 1:
        raise DataError(f"calibration inputs of the {tower} tower disagree on the batch size ({sorted(sizes)})",
                        path=source)
    return out


class CalibrationBatches:
    """An onnxruntime CalibrationDataReader over checked batches (rewindable; counts what was read)."""

    def __init__(self, batches: list[dict[str, np.ndarray]], specs: dict[str, tuple[list[int | None], str]], *,
                 tower: str, source: object):
        if not batches:
            raise DataError(f"no calibration samples for the {tower} tower", path=source)
        self.batches = [check_batch(b, specs, tower=tower, source=source) for b in batches]
        self.tower, self.source = tower, source
        self._next = 0
        self.batches_read = 0
        self.samples_read = 0

    @property
    def n_samples(self) -> int:
        return sum(next(iter(b.values())).shape[0] for b in self.batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self.batches):
            return None
        batch = self.batches[self._next]
        self._next += 1
        self.batches_read += 1
        self.samples_read += next(iter(batch.values())).shape[0]
        return batch

    def rewind(self) -> None:
        self._next = 0

    def reader(self) -> Any:
        """The same batches as an instance of onnxruntime's CalibrationDataReader (what quantize_static wants)."""
        from onnxruntime.quantization import CalibrationDataReader

        outer = self

        class _Reader(CalibrationDataReader):
            def get_next(self) -> dict[str, np.ndarray] | None:
                return outer.get_next()

            def rewind(self) -> None:
                outer.rewind()

        return _Reader()


# ------------------------------------------------------------------------------------------------ sources


def open_calibration_table(calib: str | Path, cfg: Sat2SoundConfig, *, cache_dir: str | Path | None = None,
                           progress: bool = True) -> Any:
    """The first of the train / validation splits of a dataset folder that has samples."""
    from core.data.features import FeatureTable

    calib = Path(calib)
    errors = []
    for split in CALIB_SPLITS:
        try:
            table = FeatureTable.build(calib, split, cfg, cache_dir=cache_dir, progress=progress)
        except DataError as exc:
            errors.append(str(exc))
            continue
        if len(table):
            return table
        errors.append(f"split {split!r} is empty")
    raise DataError(f"no calibration samples in {calib}: " + "; ".join(errors), path=calib)


def table_batches(table: Any, cfg: Sat2SoundConfig, tower: str, *, n_samples: int = 256, batch_size: int = 32,
                  seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Calibration batches for ``tower`` ("image" | "audio" | "text") from up to ``n_samples`` rows of a table."""
    n = min(len(table), max(1, int(n_samples)))
    if n == 0:
        raise DataError("no calibration samples (the split is empty)")
    rng = np.random.default_rng([seed, 0xCA1B])
    rows = np.sort(rng.choice(len(table), size=n, replace=False))
    zooms = list(table.zooms)
    out = []
    for b, start in enumerate(range(0, n, batch_size)):
        idx = rows[start:start + batch_size]
        zoom = zooms[b % len(zooms)]
        batch = table.batch(idx, zoom=zoom, rng=None, jitter=0.0)
        if tower == "image":
            given = np.ones((len(idx), len(META_FIELDS)), np.float32)
            half = rng.random(len(idx)) < 0.5
            given[half] = (rng.random((int(half.sum()), len(META_FIELDS))) < 0.5).astype(np.float32)
            out.append(image_feed(batch, given))
        elif tower == "audio":
            out.append(audio_feed(batch))
        elif tower == "text":
            texts = [t or " " for t in list(batch["audio_caption"]) + list(batch["image_caption"])]
            out.append(text_feed(cfg, texts))
        else:
            raise ValueError(f"no calibration batches for tower {tower!r}")
    return out


def npz_batches(path: str | Path, names: list[str], *, batch_size: int = 32,
                tower: str = "image") -> list[dict[str, np.ndarray]]:
    """Batches of the arrays in an .npz file named like the tower's inputs."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read calibration file ({exc})", path=path) from None
    if not arrays:
        raise DataError("the calibration file holds no arrays", path=path)
    missing = [k for k in names if k not in arrays]
    if missing:
        raise DataError(f"calibration file lacks input(s) {', '.join(missing)} for the {tower} tower "
                        f"(it holds {', '.join(sorted(arrays))})", path=path)
    lengths = {k: (arrays[k].shape[0] if arrays[k].ndim else 0) for k in names}
    n = min(lengths.values())
    if n == 0:
        raise DataError(f"the calibration file holds no samples for the {tower} tower", path=path)
    return [{k: arrays[k][s:s + batch_size] for k in names} for s in range(0, n, batch_size)]


def calibration_reader(calib: str | Path, onnx_path: str | Path, cfg: Sat2SoundConfig, tower: str, *,
                       table: Any = None, n_samples: int = 256, batch_size: int = 32,
                       seed: int = 0) -> CalibrationBatches:
    """Checked calibration batches for one tower from a dataset folder (``table`` if already open) or an .npz."""
    specs = input_specs(onnx_path)
    calib = Path(calib)
    if calib.is_file():
        batches = npz_batches(calib, list(specs), batch_size=batch_size, tower=tower)
        batches = batches[:max(1, -(-int(n_samples) // batch_size))]
    else:
        if table is None:
            table = open_calibration_table(calib, cfg)
        batches = table_batches(table, cfg, tower, n_samples=n_samples, batch_size=batch_size, seed=seed)
    return CalibrationBatches(batches, specs, tower=tower, source=calib)
