"""Reading a released Lightning ``.ckpt`` safely: ``torch.load(weights_only=True, mmap=True)`` and nothing else.

A ``.ckpt`` is a pickle. Only plain containers, numbers, strings and tensors are accepted; a file that needs any
other object to unpickle is refused, never executed. What the import needs from it: ``state_dict`` and
``hyper_parameters`` (sat_type, metadata_type, codebook size...). Everything else in the file (optimizer state,
scheduler, callbacks, loop counters) is training state and is listed, not read.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from contracts.artifacts import sha256_file
from contracts.errors import CheckpointError
from contracts.schema import META_FIELDS

# the authors' sat_type -> (the preset family, the ground sample distance they use)
SAT_TYPES: dict[str, str] = {"bingmap": "bingmap", "sentinel": "sentinel", "googleEarth": "soundingearth"}
# the authors' metadata_type words -> our metadata fields
META_WORDS: dict[str, str] = {"latlong": "latlon", "month": "month", "time": "hour", "asource": "audio_source",
                              "tsource": "caption_source"}


@dataclass
class AuthorsCheckpoint:
    path: Path
    sha256: str
    size_bytes: int
    state: dict[str, torch.Tensor]
    hparams: dict[str, Any]
    other_entries: list[str]  # top-level entries besides state_dict and hyper_parameters (training state)

    @property
    def sat_family(self) -> str:
        return SAT_TYPES[self.hparams["sat_type"]]

    @property
    def meta_fields(self) -> tuple[str, ...]:
        """Our metadata fields for the checkpoint's ``metadata_type`` (empty: no metadata fusion)."""
        return parse_metadata_type(str(self.hparams.get("metadata_type", "none")), self.path)


def parse_metadata_type(value: str, path: Path) -> tuple[str, ...]:
    if value == "none":
        return ()
    words = value.split("_")
    unknown = [w for w in words if w not in META_WORDS]
    if unknown:
        raise CheckpointError(f"{path}: hyper_parameters.metadata_type {value!r} has unknown part(s) {unknown}; "
                              f"known: {', '.join(META_WORDS)} or 'none'")
    fields = {META_WORDS[w] for w in words}
    return tuple(f for f in META_FIELDS if f in fields)


def read_authors_checkpoint(path: str | Path) -> AuthorsCheckpoint:
    """Load and check the file's outer layout; a CheckpointError names the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist (expected a released Sat2Sound .ckpt file)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as exc:
        detail = str(exc).splitlines()
        hint = next((line.strip() for line in detail if "GLOBAL" in line or "Unsupported" in line), detail[0][:160])
        raise CheckpointError(f"{path} needs objects other than tensors and plain values to unpickle, which this "
                              f"import refuses to run ({hint})") from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(f"{path} cannot be read as a PyTorch checkpoint (truncated or another format?): "
                              f"{first}") from None
    if not isinstance(data, dict) or "state_dict" not in data:
        raise CheckpointError(f"{path} is not a Lightning checkpoint: it has no 'state_dict' entry")
    state = data["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: 'state_dict' is not a mapping of names to tensors")
    hparams = data.get("hyper_parameters")
    if not isinstance(hparams, dict):
        raise CheckpointError(f"{path} has no 'hyper_parameters' dict: the import reads sat_type and metadata_type "
                              "from it")
    sat = hparams.get("sat_type")
    if sat not in SAT_TYPES:
        raise CheckpointError(f"{path}: hyper_parameters.sat_type is {sat!r}; a released Sat2Sound checkpoint has "
                              f"one of {', '.join(SAT_TYPES)}")
    ckpt = AuthorsCheckpoint(path=path, sha256=sha256_file(path), size_bytes=path.stat().st_size, state=state,
                             hparams=hparams, other_entries=sorted(k for k in data if k not in
                                                                   ("state_dict", "hyper_parameters")))
    ckpt.meta_fields  # noqa: B018 - validates metadata_type now, with the file's name in the message
    return ckpt
