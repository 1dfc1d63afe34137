"""Reader for OpenTTD sound catalogues (``.cat``), the container the OpenSFX base sound set ships its clips in.

Layout (all integers little-endian, as written by OpenTTD's ``catcodec`` and read by the game):

- a table of ``count`` pairs of uint32 ``(offset, size)``. The first offset is also the table's length in bytes,
  so ``count = first_offset / 8``; the new format (OpenSFX) sets bit 31 of every offset, the original game's
  catalogue does not (that older format, with its raw-PCM special case, is not read here);
- then, at each offset in turn, one entry: a name record (a length byte that counts the terminating NUL, then the
  NUL-terminated text: OpenSFX puts the quoted title, the credits and the licence notice there), a complete
  RIFF/WAVE file of exactly ``size`` bytes, one separator byte, and a file-name record (same form as the name).

Entries follow each other without gaps; the reader checks that, and that every record lies inside the file, so a
truncated copy or a file of another kind is refused with a DataError that names the file.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from contracts.errors import DataError

_NEW_FORMAT_BIT = 0x8000_0000
_MAX_ENTRIES = 4096
_TITLE_RE = re.compile(r'^"([^"]*)"')
_LICENCE_RE = re.compile(r"License:\s*(.+?)\.?\s*(?:Original is .*)?$")


@dataclass(frozen=True)
class CatEntry:
    """One clip of a catalogue: its name record, file-name record and where its WAV bytes lie in the file."""

    index: int
    name: str
    filename: str
    wav_offset: int
    wav_size: int

    @property
    def title(self) -> str:
        """The quoted title at the start of the name (OpenSFX: ``"Cow". Original ... License: ...``)."""
        m = _TITLE_RE.match(self.name)
        return m.group(1) if m else self.name

    @property
    def notice(self) -> str:
        """The name without its quoted title: credits and licence notice."""
        m = _TITLE_RE.match(self.name)
        return self.name[m.end():].lstrip(". ").strip() if m else ""

    @property
    def licence(self) -> str:
        """The licence the name declares (e.g. ``Creative Commons Zero 1.0``), or '' where it names none."""
        m = _LICENCE_RE.search(self.name)
        return m.group(1).strip() if m else ""


def _fail(path: Path, message: str) -> DataError:
    return DataError(f"not a readable OpenTTD sound catalogue: {message}", path=path)


def _read_exact(f: BinaryIO, n: int, path: Path, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise _fail(path, f"file ends inside {what} (truncated?)")
    return data


def _read_string(f: BinaryIO, path: Path, what: str) -> str:
    (length,) = _read_exact(f, 1, path, what)
    raw = _read_exact(f, length, path, what)
    if length == 0 or raw[-1] != 0:
        raise _fail(path, f"{what} is not a NUL-terminated string")
    try:
        return raw[:-1].decode("utf-8")
    except UnicodeDecodeError:
        return raw[:-1].decode("latin-1")


def _read_table(f: BinaryIO, path: Path, file_size: int) -> list[tuple[int, int]]:
    (first,) = struct.unpack("<I", _read_exact(f, 4, path, "the offset table"))
    if not first & _NEW_FORMAT_BIT:
        raise _fail(path, "no new-format flag in the offset table (original-game catalogues are not supported, "
                          "and other files do not have one)")
    table_len = first & ~_NEW_FORMAT_BIT
    count = table_len // 8
    if table_len % 8 or not 0 < count <= _MAX_ENTRIES:
        raise _fail(path, f"offset table of {table_len} bytes is not a whole number of (offset, size) pairs")
    if table_len > file_size:
        raise _fail(path, f"offset table of {table_len} bytes is longer than the file ({file_size} bytes)")
    f.seek(0)
    pairs = struct.unpack(f"<{2 * count}I", _read_exact(f, table_len, path, "the offset table"))
    table = []
    for i in range(count):
        offset, size = pairs[2 * i], pairs[2 * i + 1]
        if not offset & _NEW_FORMAT_BIT:
            raise _fail(path, f"entry {i} lacks the new-format flag the first entry has")
        table.append((offset & ~_NEW_FORMAT_BIT, size))
    return table


def _check_wav_header(header: bytes, size: int, path: Path, index: int) -> None:
    if header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        raise _fail(path, f"entry {index} does not hold a RIFF/WAVE file")
    (riff_len,) = struct.unpack_from("<I", header, 4)
    if riff_len + 8 != size:
        raise _fail(path, f"entry {index}: the table says {size} bytes, its RIFF header {riff_len + 8}")


def read_index(path: str | Path) -> list[CatEntry]:
    """Every entry of a catalogue, in table order, without reading the audio (each WAV header is checked)."""
    path = Path(path)
    try:
        f = path.open("rb")
    except OSError as exc:
        raise DataError(f"cannot open sound catalogue: {exc.strerror or exc}", path=path) from exc
    with f:
        file_size = path.stat().st_size
        table = _read_table(f, path, file_size)
        entries: list[CatEntry] = []
        expected = table[0][0]
        for i, (offset, size) in enumerate(table):
            if offset != expected:
                raise _fail(path, f"entry {i} starts at byte {offset}, the previous one ends at byte {expected}")
            f.seek(offset)
            name = _read_string(f, path, f"the name of entry {i}")
            wav_offset = f.tell()
            if size < 12 or wav_offset + size > file_size:
                raise _fail(path, f"entry {i} ({size} bytes of audio) runs past the end of the file (truncated?)")
            _check_wav_header(_read_exact(f, 12, path, f"entry {i}"), size, path, i)
            f.seek(wav_offset + size)
            _read_exact(f, 1, path, f"the separator after entry {i}")
            filename = _read_string(f, path, f"the file name of entry {i}")
            expected = f.tell()
            entries.append(CatEntry(i, name, filename, wav_offset, size))
    return entries


def read_wav(path: str | Path, entry: CatEntry) -> bytes:
    """The complete WAV file of one entry (as bytes, ready for ``soundfile.read(io.BytesIO(...))``)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            f.seek(entry.wav_offset)
            data = f.read(entry.wav_size)
    except OSError as exc:
        raise DataError(f"cannot read sound catalogue: {exc.strerror or exc}", path=path) from exc
    if len(data) != entry.wav_size:
        raise _fail(path, f"file ends inside entry {entry.index} (truncated?)")
    _check_wav_header(data[:12], entry.wav_size, path, entry.index)
    return data


def read_catalogue(path: str | Path) -> list[tuple[CatEntry, bytes]]:
    """Every entry with its WAV bytes (the whole catalogue in memory; read_index + read_wav read one at a time)."""
    return [(entry, read_wav(path, entry)) for entry in read_index(path)]
