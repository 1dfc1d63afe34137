"""Artifact kinds, the file names inside artifact folders, tower names, and the fingerprint of a file.

Every stage writes one self-describing folder whose ``manifest.json`` names its kind; consumers check the kind and
the fingerprints before they use a folder. The names here are the only spelling of each.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from enum import StrEnum
from pathlib import Path

from contracts.errors import ConfigError, Sat2SoundError


class ArtifactKind(StrEnum):
    """The ``kind`` recorded in each artifact's manifest (or report)."""

    WORLD = "sat2sound-world"
    MODEL = "sat2sound-model"  # a teacher checkpoint (any preset)
    STUDENT = "sat2sound-student"
    INT8 = "sat2sound-int8"
    EXPORT = "sat2sound-export"
    BUNDLE = "sat2sound-bundle"
    EVALUATION = "sat2sound-evaluation"
    COMPRESS_REPORT = "sat2sound-compress-report"
    LATENCY = "sat2sound-latency"


# Files of a checkpoint folder (teacher, student, int8 source): no pickles anywhere.
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "manifest.json"  # every artifact folder has one
QUANT_FILE = "quantization.json"  # an int8 folder: what was quantized, how, and the quality gate's figures
WORLD_FILE = "world.json"  # a world folder's build record


class Tower(StrEnum):
    """The model's towers as exported and quantized (each one file per target)."""

    IMAGE = "image"  # image + metadata fusion + codebook head -> place embedding
    IMAGE_GROUNDING = "image_grounding"  # image tower returning per-patch code scores (grounding heat maps)
    AUDIO = "audio"  # log-mel in
    AUDIO_WAVE = "audio_wave"  # waveform in, the log-mel front end inside the graph
    TEXT = "text"  # token ids in (MiniLM + query map + head)


ALL_TOWERS: tuple[Tower, ...] = tuple(Tower)
EXPORTED_TOWERS: tuple[Tower, ...] = (Tower.IMAGE, Tower.AUDIO, Tower.AUDIO_WAVE, Tower.TEXT)  # export's default
QUANTIZED_TOWERS: tuple[Tower, ...] = (Tower.IMAGE, Tower.AUDIO, Tower.TEXT)  # quantize's and the benchmarks' set
RETRIEVAL_TOWERS: tuple[Tower, ...] = (Tower.IMAGE, Tower.AUDIO)  # the two that image->audio retrieval compares


def parse_towers(values: str | Iterable[str] | None, *, allowed: Sequence[str] = ALL_TOWERS,
                 default: Sequence[str] = EXPORTED_TOWERS) -> tuple[str, ...]:
    """Tower names from repeated and/or comma-separated values, in the order given, each once (none: ``default``);
    a name outside ``allowed`` is a ConfigError that lists the allowed ones."""
    if isinstance(values, str):
        values = [values]
    names = [v.strip().lower() for item in values or () for v in str(item).split(",") if v.strip()]
    names = names or [str(t) for t in default]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise ConfigError(f"unknown tower(s) {', '.join(map(repr, unknown))}; known towers: {', '.join(allowed)}")
    return tuple(dict.fromkeys(names))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (never the whole file at once)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes | bytearray | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def read_json(path: str | Path, error: type[Sat2SoundError], *, what: str = "") -> dict:
    """A JSON object from ``path``; a missing, unreadable or malformed file is ``error`` naming the path."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{what or path} is missing ({path})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path} is unreadable: {exc}") from None
    if not isinstance(data, dict):
        raise error(f"{path} is unreadable: expected a JSON object, found {type(data).__name__}")
    return data
