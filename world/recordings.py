"""Real recordings of the world's sound sources, from two Debian packages: a curated catalogue, split into
material for building the world (``source``) and clips that nothing may learn from (``held_out``).

Packages (either may be absent; its clips are then left out and ``missing_packages()`` names it):

- ``megaglest-data``: the landscape ambience loops of the MegaGlest tilesets
  (``/usr/share/games/megaglest/tilesets/*/sounds/``). The package's copyright file puts every data file under
  CC BY-SA 3.0 Unported (``Files: *``, copyright The Glest Team and The MegaGlest Team); the tilesets carry no
  licence files of their own, and its AUTHORS file names tileset authors and a few sound credits, kept per clip.
  Many tilesets share their loops through symbolic links; each distinct file is listed once, under the tileset
  that holds the real file.
- ``openttd-opensfx``: the OpenSFX base sounds, 73 entries of one ``.cat`` file (world.opensfx reads it; two are
  empty placeholders). Each entry's name carries its title, credits and licence (CC0 1.0, CC BY 3.0 or
  CC BY-SA 3.0); the licence and credit of a clip are taken from that notice.

How the mapping was checked. Every candidate was decoded and its spectrogram rendered (matplotlib, 20 s windows,
then zoomed windows of 1.7-8 s) and looked at; a file name or title alone was not taken on trust:

- birdsong: the day loops of autumn, birch_forest, dark_forest, fernland and spring show frequency-modulated
  syllables and phrases at 2-10 kHz; birch_forest's night loop is one bird singing (repeated down-swept harmonic
  notes and whistles), not insects; OpenSFX's two "Tropical: Bird" clips are tonal bird calls at 3-4 and 8 kHz.
- insects: the night loops of autumn, dark_forest, fernland and mediterran are steady narrow bands at 3-7 kHz
  (cricket and cicada choruses), desert2's night is one cricket's regular chirps, and mediterran's day loop is
  pulsed cicada bands at 4.5-5 and 8-12 kHz.
- rain: broadband noise with drop ticks (birch_forest's rain also carries bird calls: sources rain + birdsong).
- wind: low-passed gusty noise below about 2 kHz (winter, winter_forest; OpenSFX "Wind", "Heavy wind").
- owl: low hoots under 1 kHz. livestock: harmonic crowing, clucking, mooing, bleating and neighing (rooster,
  chicken, cow; OpenSFX "Sheep", "Cow", "Horse").
- train (steam whistle and chuffing, diesel horn, metro hum, a pass-by), aircraft (propeller planes, jets, a
  helicopter), traffic (bus and truck pull-aways; one also sounds an air horn: traffic + horns), horns (a car
  horn), construction (jackhammer, circular saw, metal hammering), bells (a level-crossing bell's repeated
  strikes).

Left out as not honestly one of the sources: the wolf howls (not dogs barking), the hawk's scream (a raptor
call, not birdsong), desert2's "rain" (thunder rumbles that decay to silence, no rain), desert2's day loop (a
steady low rumble that could be wind or machinery), the hell tileset, MegaGlest's core water sounds (half-second
splashes, neither a stream nor surf), ship and ferry horns (not car horns), "Applause" and "Oooh sound" (no
chatter; the world's crowd is people talking), the chainsaw and tree falls (forestry), and the Toyland mixes.
Twelve sources have real clips; leaves, surf, stream, siren, tractor, crowd, dogs, frogs and gulls have none.

Split. Clips made from the same original recording share an ``origin`` and always fall in the same split: the
two MegaGlest wind loops are one recording encoded twice, and OpenSFX edits three originals twice (wind, steam
train, truck pull-away). A cross-correlation of every pair of catalogued clips (first 20 s, mono at 8 kHz) finds
exactly these four pairs above 0.9 and every other pair below 0.16. Per primary source, the origins are
ranked by a fixed hash and the first round(n/3) (at least one) are held out where a source has two or more
origins; a source with one origin (owl, horns, bells) keeps it as source material only and has no held-out
clip. The split is computed over the whole catalogue below, not over what is installed, so a clip never changes
sides between machines.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from contracts.errors import DataError
from world.opensfx import CatEntry, read_index, read_wav
from world.sources import SOURCES, check_source

log = logging.getLogger(__name__)

MEGAGLEST = "megaglest-data"
OPENSFX = "openttd-opensfx"
PACKAGES: tuple[str, ...] = (MEGAGLEST, OPENSFX)
MEGAGLEST_ROOT = Path("/usr/share/games/megaglest")
OPENSFX_CAT = Path("/usr/share/games/openttd/baseset/opensfx/opensfx.cat")

SOURCE_SPLIT = "source"
HELD_OUT_SPLIT = "held_out"
SPLITS: tuple[str, ...] = (SOURCE_SPLIT, HELD_OUT_SPLIT)
_SPLIT_SALT = "sat2sound-real-recordings-v1"

_MG_LICENCE = "CC-BY-SA-3.0"
_MG_TEAM = "MegaGlest data, (c) The Glest Team and The MegaGlest Team"
_TITI = "Titus Tscharntke (titi)"
_LICENCE_IDS = {
    "Creative Commons Zero 1.0": "CC0-1.0",
    "Creative Commons Attribution 3.0": "CC-BY-3.0",
    "Creative Commons Attribution 3.0 Unported": "CC-BY-3.0",
    "Creative Commons Attribution-ShareAlike 3.0 Unported": "CC-BY-SA-3.0",
}


@dataclass(frozen=True)
class _Known:
    """One curated clip: where it is (a file under the MegaGlest root, or an OpenSFX title), what it sounds like
    (primary source first), which original recording it comes from, and (MegaGlest) whom to credit."""

    package: str
    name: str
    sources: tuple[str, ...]
    origin: str
    credit: str = ""


def _mg(name: str, sources: tuple[str, ...], credit: str, origin: str = "") -> _Known:
    return _Known(MEGAGLEST, f"tilesets/{name}", sources, origin or f"megaglest:{name}", f"{credit}; {_MG_TEAM}")


def _sfx(title: str, sources: tuple[str, ...], origin: str = "") -> _Known:
    return _Known(OPENSFX, title, sources, f"opensfx:{origin or title}")


_KNOWN: tuple[_Known, ...] = (
    _mg("autumn/sounds/sunny_day.ogg", ("birdsong",), f"Elimnator (soundbible.com); autumn tileset by {_TITI}"),
    _mg("birch_forest/sounds/day.ogg", ("birdsong",), f"birch_forest tileset by {_TITI}"),
    _mg("birch_forest/sounds/night.ogg", ("birdsong",), f"birch_forest tileset by {_TITI}"),
    _mg("dark_forest/sounds/day.ogg", ("birdsong",), "dark_forest tileset"),
    _mg("fernland/sounds/day.ogg", ("birdsong",), f"fernland tileset by {_TITI}"),
    _mg("spring/sounds/day.ogg", ("birdsong",), "dobroide (spring ambience); spring tileset by Philipp Tscharntke"),
    _mg("autumn/sounds/nightime.ogg", ("insects",), f"Elimnator (soundbible.com); autumn tileset by {_TITI}"),
    _mg("dark_forest/sounds/night.ogg", ("insects",), "dark_forest tileset"),
    _mg("fernland/sounds/night.ogg", ("insects",), f"fernland tileset by {_TITI}"),
    _mg("mediterran/sounds/night.ogg", ("insects",), f"mediterran tileset by {_TITI}"),
    _mg("mediterran/sounds/desertday.ogg", ("insects",),
        f"Elimnator (soundbible.com, the desert day sound); mediterran tileset by {_TITI}"),
    _mg("desert2/sounds/night.ogg", ("insects",), f"desert2 tileset by Idanwin and {_TITI}"),
    _mg("autumn/sounds/rain.ogg", ("rain",), f"autumn tileset by {_TITI}"),
    _mg("birch_forest/sounds/rain.ogg", ("rain", "birdsong"), f"birch_forest tileset by {_TITI}"),
    _mg("dark_forest/sounds/rain.ogg", ("rain",), "dark_forest tileset"),
    _mg("winter/sounds/wind.ogg", ("wind",), f"winter tileset by {_TITI}", origin="megaglest:winter-wind"),
    _mg("winter_forest/sounds/wind.ogg", ("wind",), "winter_forest tileset", origin="megaglest:winter-wind"),
    _mg("autumn/sounds/owl.ogg", ("owl",), f"autumn tileset by {_TITI}"),
    _mg("autumn/sounds/rooster.ogg", ("livestock",), f"autumn tileset by {_TITI}"),
    _mg("birch_forest/sounds/chicken.wav", ("livestock",), f"birch_forest tileset by {_TITI}"),
    _mg("pine_peat/sounds/mudchute_cow_1.ogg", ("livestock",), f"pine_peat tileset by Trappin, modified by {_TITI}"),
    _sfx("Tropical: Bird (1)", ("birdsong",)),
    _sfx("Tropical: Bird (2)", ("birdsong",)),
    _sfx("Wind", ("wind",), origin="wind1.wav"),
    _sfx("Heavy wind", ("wind",), origin="wind1.wav"),
    _sfx("Sheep", ("livestock",)),
    _sfx("Cow", ("livestock",)),
    _sfx("Horse", ("livestock",)),
    _sfx("Steam train station departure", ("train",), origin="steam train horn 01.wav"),
    _sfx("Steam engine going in tunnel", ("train",), origin="steam train horn 01.wav"),
    _sfx("Diesel/electric train station departure", ("train",)),
    _sfx("Maglev train station departure", ("train",)),
    _sfx("Monorail train station departure", ("train",)),
    _sfx("Propeller plane start", ("aircraft",)),
    _sfx("Early jet take off", ("aircraft",)),
    _sfx("Helicopter", ("aircraft",)),
    _sfx("Mach 1+ Jet take off", ("aircraft",)),
    _sfx("Modern jet take off", ("aircraft",)),
    _sfx("Toyland: Propeller plane take off", ("aircraft",)),
    _sfx("Truck/old bus start, pull away", ("traffic",), origin="file0375.mp3"),
    _sfx("Truck/old bus start, pull away with horn", ("traffic", "horns"), origin="file0375.mp3"),
    _sfx("Modern bus start", ("traffic",)),
    _sfx("Old bus start", ("traffic",)),
    _sfx("Modern car horn", ("horns",)),
    _sfx("Jackhammer", ("construction",)),
    _sfx("Sawmill", ("construction",)),
    _sfx("Building bridge", ("construction",)),
    _sfx("Level crossing", ("bells",)),
)


@dataclass(frozen=True)
class RealClip:
    """One real recording: where it is, what it is, who made it under which licence, its split and format.

    ``entry`` is the OpenSFX title for a clip inside the ``.cat`` file at ``path`` (None for a plain file).
    ``sources`` lists every world source it clearly holds, the one it stands for first.
    """

    key: str
    package: str
    path: Path
    entry: str | None
    sources: tuple[str, ...]
    origin: str
    licence: str
    credit: str
    split: str
    seconds: float
    sample_rate: int
    channels: int

    @property
    def source(self) -> str:
        """The world source this clip is material for."""
        return self.sources[0]


def _held_out_origins() -> frozenset[str]:
    origins: dict[str, set[str]] = {}
    for known in _KNOWN:
        origins.setdefault(known.sources[0], set()).add(known.origin)
    held: set[str] = set()
    for source, group in origins.items():
        if len(group) < 2:
            continue
        ranked = sorted(group, key=lambda o: hashlib.sha256(f"{_SPLIT_SALT}\0{source}\0{o}".encode()).hexdigest())
        held.update(ranked[:max(1, round(len(group) / 3))])
    return frozenset(held)


_HELD_OUT = _held_out_origins()


def _split_of(known: _Known) -> str:
    return HELD_OUT_SPLIT if known.origin in _HELD_OUT else SOURCE_SPLIT


@functools.lru_cache(maxsize=4)
def _cat_entries(cat: Path) -> dict[str, CatEntry]:
    entries: dict[str, CatEntry] = {}
    for entry in read_index(cat):
        entries.setdefault(entry.title, entry)
    return entries


def _opensfx_credit(entry: CatEntry) -> str:
    credit = entry.notice.split("License:")[0].strip()
    return f"{credit} OpenSFX base sounds for OpenTTD".strip()


def _probe(data: Path | io.BytesIO, path: Path) -> tuple[float, int, int]:
    """(seconds, sample rate, channels) of a sound file, read from its header."""
    try:
        info = sf.info(data)
    except sf.SoundFileError as exc:
        raise DataError(f"cannot read the audio format of a recording: {exc}", path=path) from exc
    return info.frames / info.samplerate, int(info.samplerate), int(info.channels)


def _megaglest_clip(known: _Known, root: Path) -> RealClip | None:
    path = root / known.name
    if not path.is_file():
        log.warning("megaglest-data is installed but %s is missing; that clip is left out", path)
        return None
    return RealClip(f"megaglest:{known.name}", MEGAGLEST, path, None, known.sources, known.origin, _MG_LICENCE,
                    known.credit, _split_of(known), *_probe(path, path))


def _opensfx_clip(known: _Known, cat: Path) -> RealClip | None:
    entry = _cat_entries(cat).get(known.name)
    if entry is None:
        log.warning("%s holds no entry titled %r; that clip is left out", cat, known.name)
        return None
    licence = _LICENCE_IDS.get(entry.licence, entry.licence)
    return RealClip(f"opensfx:{known.name}", OPENSFX, cat, known.name, known.sources, known.origin, licence,
                    _opensfx_credit(entry), _split_of(known), *_probe(io.BytesIO(read_wav(cat, entry)), cat))


def missing_packages(*, megaglest_root: Path | None = None, opensfx_cat: Path | None = None) -> list[str]:
    """The packages whose data is not on this machine (their clips are absent from the catalogue)."""
    root = MEGAGLEST_ROOT if megaglest_root is None else Path(megaglest_root)
    cat = OPENSFX_CAT if opensfx_cat is None else Path(opensfx_cat)
    missing = []
    if not (root / "tilesets").is_dir():
        missing.append(MEGAGLEST)
    if not cat.is_file():
        missing.append(OPENSFX)
    return missing


@functools.lru_cache(maxsize=8)
def _catalogue(root: Path, cat: Path) -> tuple[RealClip, ...]:
    missing = missing_packages(megaglest_root=root, opensfx_cat=cat)
    clips: list[RealClip] = []
    for known in _KNOWN:
        if known.package in missing:
            continue
        clip = _megaglest_clip(known, root) if known.package == MEGAGLEST else _opensfx_clip(known, cat)
        if clip is not None:
            clips.append(clip)
    return tuple(clips)


def catalogue(*, megaglest_root: Path | None = None, opensfx_cat: Path | None = None) -> list[RealClip]:
    """Every curated clip that is installed here, in catalogue order (the default paths are where the Debian
    packages put their data; the arguments point elsewhere, e.g. at a copy)."""
    root = MEGAGLEST_ROOT if megaglest_root is None else Path(megaglest_root)
    cat = OPENSFX_CAT if opensfx_cat is None else Path(opensfx_cat)
    return list(_catalogue(root, cat))


def clips_for(source: str, split: str, clips: Sequence[RealClip] | None = None) -> list[RealClip]:
    """The installed clips that stand for ``source`` (their first source) in ``split``, sorted by key."""
    check_source(source)
    if split not in SPLITS:
        raise DataError(f"unknown recording split {split!r}; expected one of {', '.join(SPLITS)}", field="split")
    pool = catalogue() if clips is None else clips
    return sorted((c for c in pool if c.source == source and c.split == split), key=lambda c: c.key)


def decode_clip(clip: RealClip, sample_rate: int, *, start: float = 0.0, seconds: float | None = None) -> np.ndarray:
    """Decode a clip (or the window ``start`` .. ``start + seconds`` of it, clipped to its length) as float32 mono
    at ``sample_rate``: channels are averaged, the rate changed with a polyphase filter. The result has
    ceil(n * sample_rate / clip.sample_rate) samples for the n decoded."""
    if int(sample_rate) != sample_rate or sample_rate < 1000:
        raise DataError(f"sample rate must be an integer of at least 1000 Hz, got {sample_rate}", field="sample_rate")
    if not (start >= 0 and math.isfinite(start)) or (seconds is not None and not seconds > 0):
        raise DataError(f"bad clip window: start {start}, seconds {seconds}", field="seconds")
    data = clip.path if clip.entry is None else io.BytesIO(read_wav(clip.path, _cat_entries(clip.path)[clip.entry]))
    try:
        with sf.SoundFile(data) as f:
            rate = f.samplerate
            first = min(round(start * rate), f.frames)
            count = f.frames - first if seconds is None else min(round(seconds * rate), f.frames - first)
            f.seek(first)
            x = f.read(count, dtype="float32", always_2d=True).mean(axis=1)
    except sf.SoundFileError as exc:
        raise DataError(f"cannot decode recording {clip.key}: {exc}", path=clip.path) from exc
    if rate != sample_rate:
        g = math.gcd(rate, int(sample_rate))
        x = resample_poly(x, int(sample_rate) // g, rate // g)
    return np.ascontiguousarray(x, dtype=np.float32)


def describe(clips: Sequence[RealClip] | None = None, *, per_clip: bool = False) -> str:
    """A Markdown table for the README: per source, the clips and seconds of each split (``per_clip``: one row
    per clip with its licence and credit instead), then the sources without real clips and missing packages."""
    pool = catalogue() if clips is None else list(clips)
    if per_clip:
        lines = ["| clip | sources | split | seconds | licence | credit |", "|---|---|---|---:|---|---|"]
        lines += [f"| {c.key} | {', '.join(c.sources)} | {c.split} | {c.seconds:.1f} | {c.licence} | {c.credit} |"
                  for c in pool]
    else:
        lines = ["| source | source clips | source seconds | held-out clips | held-out seconds |",
                 "|---|---:|---:|---:|---:|"]
        for s in SOURCES:
            parts = [[c for c in pool if c.source == s and c.split == split] for split in SPLITS]
            if any(parts):
                cells = [f"{len(p)} | {sum(c.seconds for c in p):.1f}" for p in parts]
                lines.append(f"| {s} | {' | '.join(cells)} |")
    absent = [s for s in SOURCES if not any(c.source == s for c in pool)]
    if absent:
        lines += ["", f"No real recordings for: {', '.join(absent)}."]
    missing = missing_packages() if clips is None else []
    if missing:
        lines += ["", f"Not installed (their clips are left out): {', '.join(missing)}."]
    return "\n".join(lines)
