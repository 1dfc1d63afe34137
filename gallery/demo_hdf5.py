"""The authors' public-demo gallery (one HDF5 file) as a caption source: LLaVA captions of each zoom level and the
soundscape clips synthesised from them.

Layout, as ``demos/sat2sound_retrieval.py`` of the authors' repository reads it: equally long datasets, one row
per sample::

    sample_id                 (N,)                      byte strings (the demo decodes each)
    llava_caption_zl{1,3,5}   (N,)                      byte strings: LLaVA's caption of the tile at that zoom
    synth_audio_zl{1,3,5}     (N, channels, samples)    float: the clip made from that caption, 44.1 kHz
    text_embedding_zl{1,3,5}, audio_embedding, audio_raw, audio_caption   the demo's own vectors and the real clip

The demo hands ``synth_audio_zl{z}[i]`` to ``torchaudio.save(..., 44100)``, which wants (channels, samples), so a
row of the audio datasets is one clip, channels first. Also accepted, since other writers of this layout may
differ: (N, samples) mono rows, variable-length (N,) rows of 1-D float arrays, and a ``sample_rate`` attribute on
the audio dataset (or the file) in place of 44.1 kHz. Strings may be fixed-length or variable-length, bytes or str.

Each (sample, zoom) becomes one caption (deduplicated by content like every source; a caption met again, at another
zoom or sample, adds its provenance ``{sample_id, zoom, row}`` and the clip of its first occurrence plays). The
demo's ``text_embedding_zl*`` and ``audio_embedding`` are never read: they live in the authors' space, and the
gallery embeds captions and clips with its own model.

Real demo files are gigabytes, so nothing is loaded whole: listing reads the small caption datasets block by block
(stopping once ``limit`` distinct captions are found), and each clip is read by its row when it is rendered.
h5py is imported on use, so the rest of the gallery never needs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from contracts.errors import DataError
from gallery.captions import CaptionRecord, _Collector, normalise_caption

HDF5_SUFFIXES: tuple[str, ...] = (".h5", ".hdf5")
DEMO_ZOOMS: tuple[int, ...] = (1, 3, 5)
DEMO_SAMPLE_RATE = 44100
SAMPLE_ID = "sample_id"
_BLOCK = 2048  # caption rows read at once while listing


def caption_field(zoom: int) -> str:
    """Dataset holding the LLaVA captions of one zoom level."""
    return f"llava_caption_zl{zoom}"


def audio_field(zoom: int) -> str:
    """Dataset holding the clips synthesised from the captions of one zoom level."""
    return f"synth_audio_zl{zoom}"


def is_hdf5_path(path: str | Path) -> bool:
    """Whether a caption source names an HDF5 file (by its suffix; the content is checked when opened)."""
    return Path(path).suffix.lower() in HDF5_SUFFIXES


def _h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise DataError("reading an HDF5 gallery needs h5py (pip install h5py)") from None
    return h5py


def _open(path: Path) -> Any:
    """The file opened read-only, or a DataError when it is not HDF5 at all."""
    h5py = _h5py()
    if not path.is_file():
        raise DataError("HDF5 gallery does not exist", path=path)
    if not h5py.is_hdf5(str(path)):
        raise DataError("not an HDF5 file (expected the Sat2Sound demo gallery)", path=path)
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"cannot open HDF5 file: {exc}", path=path) from None


def _text(value: Any, path: Path, field: str, sample: object) -> str:
    """One string cell: bytes (UTF-8) or str; numbers (an integer sample id) as their decimal text."""
    if isinstance(value, bytes | np.bytes_):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise DataError("not valid UTF-8 text", path=path, field=field, sample=sample) from None
    if isinstance(value, str | np.integer | int):
        return str(value)
    raise DataError(f"expected a string, got {type(value).__name__}", path=path, field=field, sample=sample)


def _dataset(f: Any, path: Path, name: str, what: str) -> Any:
    import h5py

    obj = f.get(name)
    if not isinstance(obj, h5py.Dataset):
        have = ", ".join(sorted(f.keys())) or "none"
        raise DataError(f"no {what} dataset {name!r}: not a Sat2Sound demo gallery? (datasets: {have})", path=path,
                        field=name)
    return obj


def _check_rows(ds: Any, path: Path, name: str, n: int) -> None:
    if ds.shape[0] != n:
        raise DataError(f"has {ds.shape[0]} rows but {SAMPLE_ID} has {n}: the datasets must be equally long",
                        path=path, field=name)


def _check_strings(ds: Any, path: Path, name: str, n: int) -> None:
    if ds.ndim != 1 or ds.dtype.kind not in "SUO":
        raise DataError(f"expected (N,) strings, got shape {ds.shape} of {ds.dtype}", path=path, field=name)
    _check_rows(ds, path, name, n)


def _check_audio(ds: Any, path: Path, name: str, n: int) -> None:
    """(N, channels, samples) or (N, samples) floats, or (N,) variable-length float rows."""
    import h5py

    vlen = h5py.check_vlen_dtype(ds.dtype)
    if ds.ndim == 1 and vlen is not None and np.dtype(vlen).kind == "f":
        pass
    elif ds.ndim in (2, 3) and ds.dtype.kind == "f":
        if ds.shape[-1] == 0:
            raise DataError(f"clips of 0 samples (shape {ds.shape})", path=path, field=name)
        if ds.ndim == 3 and ds.shape[1] > ds.shape[2]:
            raise DataError(f"shape {ds.shape} looks like (N, samples, channels); expected (N, channels, samples)",
                            path=path, field=name)
    else:
        raise DataError(f"audio of rank {ds.ndim} ({ds.dtype}, shape {ds.shape}): expected float "
                        "(N, channels, samples), (N, samples) or variable-length (N,) rows", path=path, field=name)
    _check_rows(ds, path, name, n)


def read_demo_captions(path: str | Path, *, zooms: tuple[int, ...] | None = None, need_audio: bool = True,
                       limit: int | None = None) -> list[CaptionRecord]:
    """One CaptionRecord per distinct caption of ``llava_caption_zl{z}`` for each zoom (default 1, 3, 5), in row
    order, zooms in the order given within a row. With ``need_audio`` each zoom's ``synth_audio_zl{z}`` must be
    there; a record's clip is ``audio_path`` (this file) at ``audio_item`` (dataset, row). ``limit``: stop reading
    once that many distinct captions are found (the caller slices)."""
    path = Path(path)
    zooms = tuple(zooms) if zooms else DEMO_ZOOMS
    with _open(path) as f:
        ids = _dataset(f, path, SAMPLE_ID, "sample id")
        if ids.ndim != 1 or ids.shape[0] == 0:
            raise DataError(f"expected (N,) sample ids with N > 0, got shape {ids.shape}", path=path, field=SAMPLE_ID)
        n = int(ids.shape[0])
        captions = {}
        clips: dict[int, str] = {}
        for z in zooms:
            captions[z] = _dataset(f, path, caption_field(z), f"zoom {z} caption")
            _check_strings(captions[z], path, caption_field(z), n)
            if need_audio or audio_field(z) in f:
                _check_audio(_dataset(f, path, audio_field(z), f"zoom {z} clip"), path, audio_field(z), n)
                clips[z] = audio_field(z)
        out = _Collector(keep_audio=False)
        for start in range(0, n, _BLOCK):
            stop = min(n, start + _BLOCK)
            block_ids = ids[start:stop]
            block = {z: captions[z][start:stop] for z in zooms}
            for i in range(stop - start):
                row = start + i
                sid = _text(block_ids[i], path, SAMPLE_ID, f"row {row}")
                for z in zooms:
                    text = _text(block[z][i], path, caption_field(z), sid)
                    if not normalise_caption(text):
                        raise DataError(f"empty caption in row {row}", path=path, field=caption_field(z), sample=sid)
                    item = (clips[z], row) if z in clips else None
                    out.add(text, {"sample_id": sid, "zoom": z, "row": row}, f"{path} (row {row}, {caption_field(z)})",
                            path if item else None, audio_item=item)
            if limit is not None and len(out.records) >= limit:
                break
    return list(out.records.values())


def _sample_rate(f: Any, ds: Any, path: Path, name: str) -> int:
    rate = ds.attrs.get("sample_rate", f.attrs.get("sample_rate", DEMO_SAMPLE_RATE))
    try:
        rate = int(np.asarray(rate).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        rate = 0
    if rate <= 0:
        raise DataError(f"sample_rate attribute {rate!r} is not a positive integer", path=path, field=name)
    return rate


def read_demo_clip(path: str | Path, dataset: str, row: int) -> tuple[np.ndarray, int]:
    """One clip of the demo gallery, mixed to mono float32, and its sample rate (44.1 kHz unless the file says).

    A clip holding NaN or infinite samples, or only zeros, is a DataError naming the file, dataset and sample.
    """
    path = Path(path)
    with _open(path) as f:
        ds = _dataset(f, path, dataset, "clip")
        rate = _sample_rate(f, ds, path, dataset)
        data = np.asarray(ds[row], dtype=np.float32)
        sid: object = f"row {row}"
        if SAMPLE_ID in f:
            sid = _text(f[SAMPLE_ID][row], path, SAMPLE_ID, sid)
    if data.ndim not in (1, 2) or data.shape[-1] == 0:
        raise DataError(f"a clip of shape {data.shape}: expected (channels, samples) or (samples,)", path=path,
                        field=dataset, sample=sid)
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise DataError(f"the clip holds {bad} NaN or infinite sample(s)", path=path, field=dataset, sample=sid)
    if not np.any(data):
        raise DataError("the clip is silent (all zeros)", path=path, field=dataset, sample=sid)
    return (data.mean(axis=0, dtype=np.float32) if data.ndim == 2 else data), rate
