"""Find a split of a dataset folder and read its rows lazily, with pyarrow alone (no ``datasets`` package).

Two layouts hold the one schema (contracts/schema.py):

(a) Parquet shards as the Hugging Face hub publishes them: ``DIR/data/{split}-*.parquet``, ``DIR/{split}/*.parquet``
    or ``DIR/{split}-*.parquet`` (the embedded world writes the first form);
(b) a ``Dataset.save_to_disk`` folder: ``DIR/dataset_dict.json`` + ``DIR/{split}/state.json`` + Arrow IPC *stream*
    files ``data-0000i-of-0000N.arrow``, or one split's folder with ``state.json``.

Split names are matched through ``normalise_split`` (val/valid/dev = validation). Parquet is read one row group
at a time (a tiny cache keeps the last two), Arrow files are memory-mapped, so no split is ever loaded whole.
Anything else is a DataError that says what was expected and what was found.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from contracts.errors import DataError
from contracts.schema import REQUIRED_FIELDS, SPLITS, normalise_split

GEOSOUND, SOUNDINGEARTH = "geosound", "soundingearth"
# Tile column -> imagery kind (the keys of IMAGERY_GSD_M / ZOOM_CROP_FRACTION).
IMAGE_COLUMNS: dict[str, str] = {"bingmap_image": "bingmap", "sentinel_image": "sentinel",
                                 "googleearth_image": "googleearth"}
MEDIA_COLUMNS: frozenset[str] = frozenset({"audio", "mel_features", *IMAGE_COLUMNS})

_SHARD_NAME = re.compile(r"^(?P<split>[A-Za-z]+)(?:[-_.].*)?\.parquet$")
_CACHED_GROUPS = 2
_ARROW_CHUNK_ROWS = 256


@dataclass(frozen=True)
class SplitLocation:
    """Where one split lives: the folder asked for, the layout found and the data files, in order."""

    root: Path
    split: str  # normalised: train / validation / test
    layout: str  # "parquet" | "arrow"
    files: tuple[Path, ...]


def _listing(folder: Path, limit: int = 12) -> str:
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    except OSError:
        return "(unreadable)"
    if not names:
        return "(empty folder)"
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _split_of(name: str) -> str | None:
    try:
        return normalise_split(name)
    except ValueError:
        return None


def _parquet_splits(root: Path) -> dict[str, tuple[Path, ...]]:
    """Every split the Parquet layouts offer, in priority order data/ shards, split folders, root shards."""
    found: dict[str, list[Path]] = {}

    def add_shards(folder: Path) -> None:
        groups: dict[str, list[Path]] = {}
        for f in sorted(folder.glob("*.parquet")):
            m = _SHARD_NAME.match(f.name)
            split = _split_of(m.group("split")) if m else None
            if split:
                groups.setdefault(split, []).append(f)
        for split, files in groups.items():
            found.setdefault(split, files)

    if (root / "data").is_dir():
        add_shards(root / "data")
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        split = _split_of(sub.name)
        files = sorted(sub.glob("*.parquet"))
        if split and files:
            found.setdefault(split, files)
    add_shards(root)
    return {k: tuple(v) for k, v in found.items()}


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path.name} ({exc})", path=path) from None
    if not isinstance(data, dict):
        raise DataError(f"{path.name} is not a JSON object", path=path)
    return data


def _arrow_files(folder: Path) -> tuple[Path, ...]:
    state = _read_json(folder / "state.json")
    names = [f.get("filename") for f in state.get("_data_files") or [] if isinstance(f, dict)]
    files = [folder / n for n in names if n] or sorted(folder.glob("data-*.arrow")) or sorted(folder.glob("*.arrow"))
    if not files:
        raise DataError(f"save_to_disk split folder has no Arrow data files; found: {_listing(folder)}", path=folder)
    for f in files:
        if not f.is_file():
            raise DataError("Arrow data file listed in state.json is missing", path=f)
    return tuple(files)


def available_splits(path: str | Path) -> list[str]:
    """The (normalised) splits a dataset folder holds, in SPLITS order; empty if it is in neither layout."""
    root = Path(path)
    if not root.is_dir():
        return []
    if (root / "dataset_dict.json").is_file():
        names = _read_json(root / "dataset_dict.json").get("splits") or []
        have = {_split_of(str(n)) for n in names} - {None}
    elif (root / "state.json").is_file():
        split = _read_json(root / "state.json").get("_split")
        have = {_split_of(str(split))} - {None} if split else {"(unnamed)"}
    else:
        have = set(_parquet_splits(root))
    return [s for s in SPLITS if s in have] + sorted(have - set(SPLITS))


def find_split(path: str | Path, split: str) -> SplitLocation:
    """Locate ``split`` in a dataset folder in either layout, or raise DataError saying what was expected/found."""
    root = Path(path)
    if not root.exists():
        raise DataError("dataset folder not found", path=root)
    if not root.is_dir():
        raise DataError("expected a dataset folder (Parquet shards or a save_to_disk folder), got a file", path=root)
    try:
        want = normalise_split(split)
    except ValueError as exc:
        raise DataError(str(exc), path=root) from None

    if (root / "dataset_dict.json").is_file():
        names = _read_json(root / "dataset_dict.json").get("splits") or []
        by_split = {_split_of(str(n)): str(n) for n in names}
        if want not in by_split:
            have = ", ".join(map(str, names)) or "none"
            raise DataError(f"no {want!r} split in this save_to_disk folder; it has: {have}", path=root)
        folder = root / by_split[want]
        if not (folder / "state.json").is_file():
            raise DataError(f"split folder {by_split[want]!r} has no state.json; found: "
                            f"{_listing(folder) if folder.is_dir() else '(missing folder)'}", path=folder)
        return SplitLocation(root, want, "arrow", _arrow_files(folder))
    if (root / "state.json").is_file():
        named = _read_json(root / "state.json").get("_split")
        if named and _split_of(str(named)) != want:
            raise DataError(f"this save_to_disk folder holds the {named!r} split, not {want!r}", path=root)
        return SplitLocation(root, want, "arrow", _arrow_files(root))

    splits = _parquet_splits(root)
    if not splits:
        raise DataError(
            "not a dataset folder in the GeoSound/SoundingEarth schema: expected Parquet shards "
            "(data/{split}-*.parquet, {split}/*.parquet or {split}-*.parquet) or a save_to_disk folder "
            f"(dataset_dict.json or state.json); found: {_listing(root)}", path=root)
    if want not in splits:
        raise DataError(f"no {want!r} split; this folder has: {', '.join(s for s in SPLITS if s in splits)}",
                        path=root)
    return SplitLocation(root, want, "parquet", splits[want])


def dataset_kind(columns: Sequence[str]) -> str:
    """GeoSound or SoundingEarth, from the columns (SoundingEarth: Google Earth tiles, date_recorded, no source)."""
    cols = set(columns)
    if "googleearth_image" in cols or ("date_recorded" in cols and "source" not in cols
                                       and not cols & {"bingmap_image", "sentinel_image"}):
        return SOUNDINGEARTH
    return GEOSOUND


def nested_to_numpy(cell: pa.Array) -> np.ndarray | None:
    """A length-1 array of (nested) numeric lists -> ndarray of its regular shape; None if null or ragged."""
    a = cell
    shape: list[int] = []
    while True:
        if isinstance(a.type, pa.ExtensionType):
            a = a.storage
        if not (pa.types.is_list(a.type) or pa.types.is_large_list(a.type) or pa.types.is_fixed_size_list(a.type)):
            break
        if a.null_count:
            return None
        lengths = np.unique(a.value_lengths().to_numpy(zero_copy_only=False))
        if lengths.size > 1:
            return None
        shape.append(int(lengths[0]) if lengths.size else 0)
        a = a.flatten()
    if not (pa.types.is_floating(a.type) or pa.types.is_integer(a.type)) or a.null_count:
        return None
    values = a.to_numpy(zero_copy_only=False)
    return values.reshape(shape) if shape else values


def row_dict(table: pa.Table, index: int) -> dict[str, object]:
    """One row of a table as Python values; nested numeric list columns (mel_features) come back as ndarrays."""
    out: dict[str, object] = {}
    for name in table.column_names:
        col = table.column(name)
        cell = col.slice(index, 1)
        cell = cell.chunk(0) if cell.num_chunks == 1 else pa.concat_arrays(cell.chunks)
        t = cell.type.storage_type if isinstance(cell.type, pa.ExtensionType) else cell.type
        if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            arr = nested_to_numpy(cell)
            out[name] = arr if arr is not None else cell.to_pylist()[0]
        else:
            out[name] = cell.to_pylist()[0]
    return out


class RowReader:
    """Lazy, row-group-aware access to the rows of one split, whatever the layout.

    Safe to hand to DataLoader worker processes: open files and caches are dropped on pickling and after a fork.
    """

    def __init__(self, location: SplitLocation):
        self.location = location
        self._lock = threading.Lock()
        self._reset()
        schemas = [self._schema(i) for i in range(len(location.files))]
        names0 = list(schemas[0].names)
        common = [n for n in names0 if all(n in s.names for s in schemas[1:])]
        for f, s in zip(location.files, schemas):
            missing = [c for c in REQUIRED_FIELDS if c not in s.names]
            if missing:
                raise DataError(f"missing required column(s) {', '.join(missing)}; expected at least "
                                f"{', '.join(REQUIRED_FIELDS)} and an image column; found columns: "
                                f"{', '.join(s.names)}", path=f)
        if not any(c in common for c in IMAGE_COLUMNS):
            raise DataError(f"no image column; expected one of {', '.join(IMAGE_COLUMNS)}; found columns: "
                            f"{', '.join(common)}", path=location.files[0])
        self.columns: list[str] = common
        self.schema: pa.Schema = pa.schema([schemas[0].field(n) for n in common])
        self.kind = dataset_kind(common)
        self._build_index()

    # ------------------------------------------------------------------ process-safety
    def _reset(self) -> None:
        self._pid = os.getpid()
        self._parquet: dict[int, pq.ParquetFile] = {}
        self._arrow: dict[int, pa.Table] = {}
        self._cache: OrderedDict[tuple, pa.Table] = OrderedDict()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for key in ("_lock", "_parquet", "_arrow", "_cache"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._reset()

    def _check_pid(self) -> None:
        if self._pid != os.getpid():
            self._reset()

    # ------------------------------------------------------------------ files
    def _parquet_file(self, i: int) -> pq.ParquetFile:
        self._check_pid()
        pf = self._parquet.get(i)
        if pf is None:
            path = self.location.files[i]
            try:
                pf = pq.ParquetFile(path)
            except (pa.ArrowException, OSError) as exc:
                raise DataError(f"not a readable Parquet file ({exc})", path=path) from None
            self._parquet[i] = pf
        return pf

    def _arrow_table(self, i: int) -> pa.Table:
        self._check_pid()
        table = self._arrow.get(i)
        if table is None:
            path = self.location.files[i]
            try:
                source = pa.memory_map(str(path), "r")
                try:
                    table = pa.ipc.open_stream(source).read_all()
                except pa.ArrowInvalid:
                    source.seek(0)
                    table = pa.ipc.open_file(source).read_all()
            except (pa.ArrowException, OSError) as exc:
                raise DataError(f"not a readable Arrow IPC file ({exc})", path=path) from None
            self._arrow[i] = table
        return table

    def _schema(self, i: int) -> pa.Schema:
        if self.location.layout == "parquet":
            return self._parquet_file(i).schema_arrow
        return self._arrow_table(i).schema

    def _build_index(self) -> None:
        # groups: (file index, row group or arrow slice start, global start, n rows)
        groups: list[tuple[int, int, int, int]] = []
        start = 0
        for i in range(len(self.location.files)):
            if self.location.layout == "parquet":
                meta = self._parquet_file(i).metadata
                for g in range(meta.num_row_groups):
                    n = meta.row_group(g).num_rows
                    if n:
                        groups.append((i, g, start, n))
                        start += n
            else:
                total = self._arrow_table(i).num_rows
                for s in range(0, total, _ARROW_CHUNK_ROWS):
                    n = min(_ARROW_CHUNK_ROWS, total - s)
                    groups.append((i, s, start, n))
                    start += n
        self._groups = groups
        self._starts = [g[2] for g in groups]
        self.num_rows = start

    def __len__(self) -> int:
        return self.num_rows

    @property
    def group_ranges(self) -> list[tuple[int, int]]:
        """(start, stop) global row ranges of the row groups: shuffle within them to keep reads cheap."""
        return [(g[2], g[2] + g[3]) for g in self._groups]

    def file_of(self, index: int) -> Path:
        return self.location.files[self._groups[self._group_of(index)][0]]

    def _group_of(self, index: int) -> int:
        if not 0 <= index < self.num_rows:
            raise IndexError(f"row {index} out of range for {self.num_rows} rows")
        return bisect.bisect_right(self._starts, index) - 1

    def _group_table(self, g: int, columns: tuple[str, ...]) -> pa.Table:
        file_i, key, _, n = self._groups[g]
        cache_key = (g, columns)
        with self._lock:
            self._check_pid()
            table = self._cache.get(cache_key)
            if table is not None:
                self._cache.move_to_end(cache_key)
                return table
        if self.location.layout == "parquet":
            try:
                table = self._parquet_file(file_i).read_row_group(key, columns=list(columns))
            except (pa.ArrowException, OSError) as exc:
                raise DataError(f"cannot read row group {key} ({exc})", path=self.location.files[file_i]) from None
        else:
            table = self._arrow_table(file_i).slice(key, n).select(list(columns))
        with self._lock:
            self._cache[cache_key] = table
            while len(self._cache) > _CACHED_GROUPS:
                self._cache.popitem(last=False)
        return table

    def _columns(self, columns: Sequence[str] | None) -> tuple[str, ...]:
        if columns is None:
            return tuple(self.columns)
        unknown = [c for c in columns if c not in self.columns]
        if unknown:
            raise DataError(f"unknown column(s) {', '.join(unknown)}; found columns: {', '.join(self.columns)}",
                            path=self.location.root)
        return tuple(columns)

    def row(self, index: int, columns: Sequence[str] | None = None) -> dict[str, object]:
        """One row as a dict of Python values (media cells as {bytes, path} dicts, binary or path strings)."""
        g = self._group_of(index)
        table = self._group_table(g, self._columns(columns))
        return row_dict(table, index - self._groups[g][2])

    def chunks(self, columns: Sequence[str] | None = None) -> Iterator[tuple[int, pa.Table]]:
        """(global start row, table) for each row group in order: sequential reads touch every group once."""
        cols = self._columns(columns)
        for g, (_, _, start, _) in enumerate(self._groups):
            yield start, self._group_table(g, cols)

    def file_stats(self) -> list[tuple[str, int, int]]:
        """(name, size, mtime_ns) of every data file: what a cache fingerprint of this split depends on."""
        out = []
        for f in self.location.files:
            st = f.stat()
            out.append((str(f.resolve()), st.st_size, st.st_mtime_ns))
        return out


def open_rows(path: str | Path, split: str) -> RowReader:
    """Find ``split`` under ``path`` and return its RowReader (columns checked against the schema)."""
    return RowReader(find_split(path, split))
