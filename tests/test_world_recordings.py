"""Real recordings: the OpenTTD .cat reader, the catalogue of MegaGlest and OpenSFX clips, its split, decoding.

The reader's own tests run everywhere on a small catalogue written here; the tests of the real clips skip (saying
which package to install) where megaglest-data or openttd-opensfx is not installed.
"""

from __future__ import annotations

import io
import math
import struct

import numpy as np
import pytest
import soundfile as sf

from contracts.errors import DataError
from world.opensfx import read_catalogue, read_index, read_wav
from world.recordings import (
    HELD_OUT_SPLIT,
    MEGAGLEST,
    OPENSFX,
    OPENSFX_CAT,
    SOURCE_SPLIT,
    SPLITS,
    catalogue,
    clips_for,
    decode_clip,
    describe,
    missing_packages,
)
from world.sources import SOURCES

# Sources with at least one real clip, per package and with both installed.
MIN_SOURCES = {MEGAGLEST: 6, OPENSFX: 9, "both": 12}
LICENCES = {"CC0-1.0", "CC-BY-3.0", "CC-BY-SA-3.0"}
# The held-out clips, pinned: a clip must never change sides (that would leak held-out audio into training).
HELD_OUT = {
    "megaglest:tilesets/birch_forest/sounds/day.ogg", "megaglest:tilesets/fernland/sounds/day.ogg",
    "megaglest:tilesets/mediterran/sounds/night.ogg", "megaglest:tilesets/desert2/sounds/night.ogg",
    "megaglest:tilesets/dark_forest/sounds/rain.ogg", "megaglest:tilesets/pine_peat/sounds/mudchute_cow_1.ogg",
    "opensfx:Tropical: Bird (2)", "opensfx:Wind", "opensfx:Heavy wind", "opensfx:Cow",
    "opensfx:Steam train station departure", "opensfx:Steam engine going in tunnel", "opensfx:Helicopter",
    "opensfx:Mach 1+ Jet take off", "opensfx:Truck/old bus start, pull away",
    "opensfx:Truck/old bus start, pull away with horn", "opensfx:Sawmill",
}


def _require(*packages: str) -> None:
    missing = [p for p in packages if p in missing_packages()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install {' '.join(missing)})")


def _wav(seconds: float, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    t = np.arange(int(seconds * rate)) / rate
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return bytes([len(raw)]) + raw


def _cat(entries: list[tuple[str, bytes, str]]) -> bytes:
    """A catalogue in the OpenSFX layout: (offset | bit 31, size) pairs, then name, WAV, separator, file name."""
    table_len = 8 * len(entries)
    body, pairs = b"", []
    for name, wav, filename in entries:
        pairs.append(((table_len + len(body)) | 0x8000_0000, len(wav)))
        body += _string(name) + wav + b"\0" + _string(filename)
    return b"".join(struct.pack("<II", *p) for p in pairs) + body


@pytest.fixture
def small_cat(tmp_path):
    path = tmp_path / "small.cat"
    path.write_bytes(_cat([('"Tone". By nobody. License: Creative Commons Zero 1.0.', _wav(0.5), "src/a.wav"),
                           ('"Longer tone". License: Creative Commons Attribution 3.0 Unported.', _wav(1.0),
                            "src/b.wav")]))
    return path


def test_the_cat_reader_reads_names_file_names_and_wavs(small_cat):
    entries = read_index(small_cat)
    assert [(e.index, e.title, e.filename) for e in entries] == [(0, "Tone", "src/a.wav"),
                                                                 (1, "Longer tone", "src/b.wav")]
    assert [e.licence for e in entries] == ["Creative Commons Zero 1.0", "Creative Commons Attribution 3.0 Unported"]
    assert entries[0].notice.startswith("By nobody.")
    for (entry, wav), seconds in zip(read_catalogue(small_cat), (0.5, 1.0)):
        x, rate = sf.read(io.BytesIO(wav))
        assert wav == read_wav(small_cat, entry) and rate == 8000 and len(x) == int(seconds * 8000)


@pytest.mark.parametrize("keep", [4, 20, 100, 9000, -1], ids=["table", "first-name", "in-wav", "2nd-wav", "end"])
def test_the_cat_reader_refuses_a_truncated_copy(small_cat, tmp_path, keep):
    data = small_cat.read_bytes()
    cut = tmp_path / "cut.cat"
    cut.write_bytes(data[:keep])
    with pytest.raises(DataError, match=r"truncated|longer than the file") as err:
        read_index(cut)
    assert str(cut) in str(err.value)


@pytest.mark.parametrize("content", [
    b"", b"just some text, not a catalogue\n", _wav(0.1),
    struct.pack("<II", 0x8000_0008, 64) + bytes(range(64)),  # a flagged table, then no name and WAV
    struct.pack("<II", 0x8000_0007, 0) + b"\0" * 16,  # a table that is not whole (offset, size) pairs
], ids=["empty", "text", "wav", "flag-then-junk", "ragged-table"])
def test_the_cat_reader_refuses_a_file_of_another_kind(tmp_path, content):
    path = tmp_path / "foreign.cat"
    path.write_bytes(content)
    with pytest.raises(DataError, match="not a readable OpenTTD sound catalogue"):
        read_index(path)


def test_the_cat_reader_names_a_file_that_is_not_there(tmp_path):
    with pytest.raises(DataError, match="cannot open"):
        read_index(tmp_path / "absent.cat")


def test_the_installed_opensfx_catalogue_reads_whole_and_a_truncated_copy_does_not(tmp_path):
    _require(OPENSFX)
    entries = read_index(OPENSFX_CAT)
    assert len(entries) == 73 and sum(e.wav_size == 44 for e in entries) == 2  # two empty placeholders
    assert all(e.licence and e.filename.endswith(".wav") for e in entries)
    cut = tmp_path / "opensfx.cat"
    with OPENSFX_CAT.open("rb") as f:
        cut.write_bytes(f.read(300_000))
    with pytest.raises(DataError, match="truncated"):
        read_index(cut)


def test_the_catalogue_maps_real_clips_to_world_sources():
    clips = catalogue()
    installed = [p for p in (MEGAGLEST, OPENSFX) if p not in missing_packages()]
    if not installed:
        assert clips == []
        pytest.skip(f"neither {MEGAGLEST} nor {OPENSFX} is installed")
    assert {c.package for c in clips} == set(installed)
    assert len({c.source for c in clips}) >= MIN_SOURCES["both" if len(installed) == 2 else installed[0]]
    for c in clips:
        assert c.sources and set(c.sources) <= set(SOURCES) and len(set(c.sources)) == len(c.sources)
        assert c.licence in LICENCES and c.credit, c.key
        assert c.seconds > 0.5 and c.sample_rate >= 11025 and c.channels in (1, 2), c.key
        assert (c.entry is None) == (c.package == MEGAGLEST)
    assert len({c.key for c in clips}) == len(clips)


def test_the_split_is_disjoint_grouped_by_origin_and_pinned():
    clips = catalogue()
    if not clips:
        pytest.skip(f"neither {MEGAGLEST} nor {OPENSFX} is installed")
    assert {c.key for c in clips if c.split == HELD_OUT_SPLIT} == {k for k in HELD_OUT if k in {c.key for c in clips}}
    sides: dict[str, set[str]] = {}
    for c in clips:
        assert c.split in SPLITS
        sides.setdefault(c.origin, set()).add(c.split)
    assert all(len(s) == 1 for s in sides.values())  # one original recording never straddles the split
    for source in {c.source for c in clips}:
        parts = [clips_for(source, split) for split in SPLITS]
        assert not {c.key for c in parts[0]} & {c.key for c in parts[1]}
        assert sorted(c.key for p in parts for c in p) == sorted(c.key for c in clips if c.source == source)
    assert [c.key for c in catalogue()] == [c.key for c in clips]  # same order and sides on every call


def test_the_split_does_not_depend_on_what_else_is_installed(tmp_path):
    _require(MEGAGLEST, OPENSFX)
    full = {c.key: c.split for c in catalogue()}
    alone = catalogue(opensfx_cat=tmp_path / "absent.cat")
    assert missing_packages(opensfx_cat=tmp_path / "absent.cat") == [OPENSFX]
    assert alone and all(c.package == MEGAGLEST and full[c.key] == c.split for c in alone)
    other = catalogue(megaglest_root=tmp_path)
    assert missing_packages(megaglest_root=tmp_path) == [MEGAGLEST]
    assert other and all(c.package == OPENSFX and full[c.key] == c.split for c in other)


def test_describe_tabulates_each_mapped_source_and_each_clip():
    clips = catalogue()
    if not clips:
        pytest.skip(f"neither {MEGAGLEST} nor {OPENSFX} is installed")
    rows = [line for line in describe(clips).splitlines() if line.startswith("| ") and "clips" not in line]
    assert sorted(row.split(" | ")[0][2:] for row in rows) == sorted({c.source for c in clips})
    assert [s for s in SOURCES if s not in {c.source for c in clips}][0] in describe(clips)
    per_clip = describe(clips, per_clip=True).splitlines()
    assert [line.split(" | ")[0][2:] for line in per_clip[2:2 + len(clips)]] == [c.key for c in clips]


@pytest.mark.parametrize("key", ["megaglest:tilesets/autumn/sounds/rooster.ogg",
                                 "megaglest:tilesets/birch_forest/sounds/chicken.wav", "opensfx:Cow"])
def test_load_clip_is_finite_mono_float32_at_the_asked_rate(key):
    _require(MEGAGLEST if key.startswith("megaglest") else OPENSFX)
    clip = next(c for c in catalogue() if c.key == key)
    x = decode_clip(clip, 16000, start=0.25, seconds=1.0)
    assert x.dtype == np.float32 and x.ndim == 1 and len(x) == 16000
    assert np.isfinite(x).all() and float(np.sqrt(np.mean(x * x))) > 0 and np.abs(x).max() <= 1.5
    whole = decode_clip(clip, 16000, seconds=60.0)  # longer than the clip: clipped to its length
    assert len(whole) == math.ceil(round(clip.seconds * clip.sample_rate) * 16000 / clip.sample_rate)


def test_clips_for_checks_its_arguments():
    with pytest.raises(DataError, match="unknown sound source"):
        clips_for("dragons", SOURCE_SPLIT, [])
    with pytest.raises(DataError, match="unknown recording split"):
        clips_for("rain", "train", [])
    assert clips_for("rain", HELD_OUT_SPLIT, []) == []


def test_load_clip_refuses_a_bad_rate_or_window():
    _require(OPENSFX)
    clip = next(c for c in catalogue() if c.package == OPENSFX)
    for kwargs in ({"sample_rate": 0}, {"sample_rate": 16000.5}, {"sample_rate": 16000, "seconds": 0.0},
                   {"sample_rate": 16000, "start": -1.0}):
        with pytest.raises(DataError):
            decode_clip(clip, **kwargs)
