"""Caption sources for a gallery: a dataset folder (its LLaVA image captions), a text file, a CSV, a clip folder,
or the authors' public-demo HDF5 gallery.

Every source becomes a list of ``CaptionRecord``: one per distinct caption text (the content id is the sha1 of the
whitespace-normalised caption, so the same caption from several samples/zooms is one item whose provenance lists
them all), in a deterministic order so ``--limit`` and resumed builds see the same list.

- dataset folder: any layout the one loader reads (core.data.layouts: Parquet shards ``DIR/data/{split}-*.parquet``
  etc., or a ``save_to_disk`` folder); only the id, coordinate and caption columns are read (no images or audio),
  with provenance sample_id, zoom, imagery, lat/lon and split.
- text file: one caption per line (blank lines skipped).
- CSV with a header: a ``caption`` column, optional ``id``, ``audio_path`` (for the import renderer), ``sample_id``,
  ``zoom``, ``lat``/``latitude``, ``lon``/``longitude``, ``split``.
- clip folder (import renderer): ``clips.csv`` as above (audio paths relative to the folder), or audio files with a
  caption in a ``.txt`` file of the same stem.
- HDF5 file (``.h5``/``.hdf5``, gallery/demo_hdf5.py): the public Sat2Sound demo's gallery, one caption per sample
  and zoom (``llava_caption_zl{z}``) with its synthesised clip (``synth_audio_zl{z}``, read lazily by row), provenance
  sample_id, zoom and row.

``zooms`` keeps the captions of those zoom levels only (HDF5 and dataset folders, whose captions have a zoom).
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.errors import DataError
from contracts.schema import SPLITS, normalise_split

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
CLIPS_CSV = "clips.csv"
_CAPTION_COLUMN = re.compile(r"^llava_caption_(?P<imagery>[a-z]+)_zl(?P<zoom>\d+)$")


@dataclass
class CaptionRecord:
    """One distinct caption with where it came from; ``audio_path`` is set for imported clips."""

    id: str
    caption: str
    provenance: list[dict[str, Any]] = field(default_factory=list)
    audio_path: Path | None = None
    origin: str = ""  # "file:row" of its first occurrence, for error messages
    audio_item: tuple[str, int] | None = None  # (dataset, row) of the clip inside the HDF5 file ``audio_path``

    @property
    def first(self) -> dict[str, Any]:
        return self.provenance[0] if self.provenance else {}


def normalise_caption(text: str) -> str:
    """Strip and collapse whitespace: captions that differ only in spacing are the same item."""
    return " ".join(str(text).split())


def caption_id(text: str) -> str:
    """Content id of a caption: sha1 of its normalised text (stable across builds, machines and sources)."""
    return hashlib.sha1(normalise_caption(text).encode("utf-8")).hexdigest()


class _Collector:
    """Deduplicates captions by content id, merging provenance, keeping first-seen order."""

    def __init__(self, keep_audio: bool):
        self.records: dict[str, CaptionRecord] = {}
        self.keep_audio = keep_audio

    def add(self, text: str, provenance: dict[str, Any] | None, origin: str, audio_path: Path | None = None, *,
            audio_item: tuple[str, int] | None = None) -> None:
        caption = normalise_caption(text)
        if not caption:
            return
        cid = caption_id(caption)
        rec = self.records.get(cid)
        if rec is None:
            self.records[cid] = CaptionRecord(cid, caption, [provenance] if provenance else [], audio_path, origin,
                                              audio_item)
            return
        if self.keep_audio and audio_path is not None:
            raise DataError(f"caption repeated with another clip (first at {rec.origin}); a gallery plays one clip "
                            "per caption: drop or reword one of them", path=origin)
        if provenance and provenance not in rec.provenance:
            rec.provenance.append(provenance)


def read_captions(source: str | Path, *, splits: tuple[str, ...] | None = None, imagery: str | None = None,
                  limit: int | None = None, need_audio: bool = False,
                  zooms: tuple[int, ...] | None = None) -> list[CaptionRecord]:
    """Read a caption source (see module doc). ``need_audio``: every record must name an audio file (import)."""
    source = Path(source)
    if limit is not None and limit < 1:
        raise DataError(f"--limit must be at least 1, got {limit}")
    if not source.exists():
        raise DataError("caption source does not exist", path=source)
    hdf5 = source.is_file() and source.suffix.lower() in (".h5", ".hdf5")
    if zooms is not None and not (hdf5 or (source.is_dir() and _dataset_splits(source))):
        raise DataError("--zoom picks captions of an HDF5 gallery or a dataset folder; this source has no zooms",
                        path=source)
    if hdf5:
        if splits is not None or imagery is not None:
            raise DataError("the HDF5 demo gallery has no splits or imagery columns: drop --split/--imagery",
                            path=source)
        from gallery.demo_hdf5 import read_demo_captions

        records = read_demo_captions(source, zooms=zooms, need_audio=need_audio, limit=limit)
    elif source.is_dir():
        if (source / CLIPS_CSV).is_file():
            records = _read_csv(source / CLIPS_CSV, base=source, need_audio=need_audio)
        elif _dataset_splits(source):
            if need_audio:
                raise DataError("the import renderer needs a clips.csv (id,caption,audio_path) or a folder of audio "
                                "files with .txt captions, not a dataset folder", path=source)
            records = _read_dataset(source, splits=splits, imagery=imagery, zooms=zooms)
        elif any(p.suffix.lower() in AUDIO_SUFFIXES for p in source.iterdir()):
            records = _read_clip_folder(source)
        else:
            raise DataError("not a caption source: expected a dataset folder (Parquet shards data/{split}-*.parquet "
                            "or a save_to_disk folder), a clips.csv, or audio files with .txt captions", path=source)
    elif source.suffix.lower() == ".csv":
        records = _read_csv(source, base=source.parent, need_audio=need_audio)
    else:
        if need_audio:
            raise DataError("the import renderer needs a CSV id,caption,audio_path or a clip folder, not a text file",
                            path=source)
        records = _read_text(source)
    if splits is not None:  # dataset shards were already chosen by split; this filters CSV rows with a split column
        records = [r for r in records if any(p.get("split") in splits for p in r.provenance)]
    if not records:
        where = f" in split(s) {', '.join(splits)}" if splits else ""
        raise DataError(f"the caption source holds no captions{where}", path=source)
    return records[:limit] if limit else records


# ------------------------------------------------------------------------------------------------ text and CSV


def _read_text(path: Path) -> list[CaptionRecord]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read captions: {exc}", path=path) from None
    out = _Collector(keep_audio=False)
    for i, line in enumerate(lines, start=1):
        out.add(line, {"line": i}, f"{path}:{i}")
    return list(out.records.values())


def _float(value: str | None, what: str, origin: str) -> float | None:
    if value is None or str(value).strip() == "":
        return None
    try:
        return float(value)
    except ValueError:
        raise DataError(f"{what} {value!r} is not a number", path=origin, field=what) from None


def _read_csv(path: Path, *, base: Path, need_audio: bool) -> list[CaptionRecord]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
            header = [h.strip().lower() for h in (rows[0].keys() if rows else [])]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read CSV: {exc}", path=path) from None
    if not rows:
        raise DataError("the CSV has no rows (a header line and one row per caption are expected)", path=path)
    rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in r.items()} for r in rows]
    if "caption" not in header:
        raise DataError(f"the CSV has no 'caption' column (columns: {', '.join(header)})", path=path)
    if need_audio and "audio_path" not in header:
        raise DataError("the import renderer needs an 'audio_path' column (id,caption,audio_path)", path=path)
    seen_ids: dict[str, int] = {}
    out = _Collector(keep_audio=need_audio)
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        origin = f"{path}:{line}"
        if not row.get("caption"):
            raise DataError("empty caption", path=origin, field="caption")
        row_id = row.get("id") or None
        if row_id is not None:
            if row_id in seen_ids:
                raise DataError(f"duplicate id {row_id!r} (also on line {seen_ids[row_id]})", path=origin, field="id")
            seen_ids[row_id] = line
        prov: dict[str, Any] = {"row": line}
        if row_id is not None:
            prov["id"] = row_id
        for key, alias in (("sample_id", None), ("split", None), ("zoom", None), ("lat", "latitude"),
                           ("lon", "longitude")):
            value = row.get(key) or (row.get(alias) if alias else None)
            if not value:
                continue
            if key in ("lat", "lon"):
                prov[key] = _float(value, key, origin)
            elif key == "zoom":
                prov[key] = int(_float(value, key, origin))
            elif key == "split":
                try:
                    prov[key] = normalise_split(value)
                except ValueError as exc:
                    raise DataError(str(exc), path=origin, field="split") from None
            else:
                prov[key] = value
        audio = None
        if need_audio:
            if not row.get("audio_path"):
                raise DataError("empty audio_path", path=origin, field="audio_path")
            audio = Path(row["audio_path"])
            audio = audio if audio.is_absolute() else base / audio
            if not audio.is_file():
                raise DataError(f"audio file {audio} does not exist", path=origin, field="audio_path",
                                sample=row_id)
        out.add(row["caption"], prov, origin, audio)
    return list(out.records.values())


def _read_clip_folder(folder: Path) -> list[CaptionRecord]:
    out = _Collector(keep_audio=True)
    for audio in sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES):
        txt = audio.with_suffix(".txt")
        if not txt.is_file():
            raise DataError(f"audio file {audio.name} has no caption file {txt.name} beside it", path=audio)
        caption = txt.read_text(encoding="utf-8").strip()
        if not caption:
            raise DataError("empty caption", path=txt)
        out.add(caption, {"id": audio.stem}, str(audio), audio)
    return list(out.records.values())


# ------------------------------------------------------------------------------------------------ dataset folders


def _dataset_splits(root: Path) -> list[str]:
    from core.data.layouts import available_splits

    return [s for s in available_splits(root) if s in SPLITS]


def _read_dataset(root: Path, *, splits: tuple[str, ...] | None, imagery: str | None,
                  zooms: tuple[int, ...] | None = None) -> list[CaptionRecord]:
    """Caption columns of every split (train, validation, test order) through the one loader's layout reader."""
    from core.data.layouts import open_rows

    have = _dataset_splits(root)
    use = [s for s in have if splits is None or s in splits]
    if not use:
        raise DataError(f"no split {', '.join(splits or SPLITS)} in this dataset (it has {', '.join(have)})",
                        path=root)
    out = _Collector(keep_audio=False)
    for split in use:
        reader = open_rows(root, split)
        cols = [(c, m["imagery"], int(m["zoom"])) for c in reader.columns if (m := _CAPTION_COLUMN.match(c))
                and (imagery is None or m["imagery"] == imagery) and (zooms is None or int(m["zoom"]) in zooms)]
        if not cols:
            raise DataError("no llava_caption_<imagery>_zl<zoom> column"
                            + (f" for imagery {imagery!r}" if imagery else "")
                            + (f" for zoom {','.join(map(str, zooms))}" if zooms else ""), path=root)
        extra = [c for c in ("sample_id", "latitude", "longitude") if c in reader.columns]
        for start, table in reader.chunks(columns=extra + [c for c, _, _ in cols]):
            data = table.to_pydict()
            for i in range(table.num_rows):
                base = {"sample_id": data["sample_id"][i], "lat": data["latitude"][i], "lon": data["longitude"][i],
                        "split": split}
                for col, kind, zoom in cols:
                    if data[col][i]:
                        out.add(data[col][i], {**base, "zoom": zoom, "imagery": kind},
                                f"{root} ({split} row {start + i}, {col})")
    return list(out.records.values())
