"""Feeds for the exported towers (export/towers.py input names and dtypes) made from FeatureTable batches.

Shared by the calibration reader (what the static scheme sees) and the ORT evaluation (what the quality gate
scores), so both feed exactly what a device would: the normalised image, zoom and GSD as float32, the metadata
fields with the mask of the fields given, the log-mel, and token ids padded to the config's max tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from contracts.schema import META_FIELDS

if TYPE_CHECKING:
    from core.config import Sat2SoundConfig

IMAGE_FLOATS = ("image", "zoom", "gsd", "lat", "lon", "month", "hour", "meta_mask")
IMAGE_INTS = ("audio_source", "caption_source")


def _np(x: Any, dtype: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(x), dtype=dtype)


def image_feed(batch: dict[str, Any], given: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Image-tower inputs from a table batch; ``given`` (5,) or (B, 5) masks the fields given (None = all)."""
    feed = {k: _np(batch[k], np.float32) for k in IMAGE_FLOATS}
    feed.update({k: _np(batch[k], np.int64) for k in IMAGE_INTS})
    if given is not None:
        feed["meta_mask"] = feed["meta_mask"] * np.asarray(given, dtype=np.float32)
    return feed


def audio_feed(batch: dict[str, Any]) -> dict[str, np.ndarray]:
    return {"mel": _np(batch["mel"], np.float32)}


def text_feed(cfg: Sat2SoundConfig, texts: list[str]) -> dict[str, np.ndarray]:
    """Token ids and attention mask as the exported text tower takes them (padded to max tokens)."""
    from export.towers import tokenize

    tok = tokenize(cfg, list(texts))
    return {k: _np(v, np.int64) for k, v in tok.items()}


def no_metadata() -> np.ndarray:
    return np.zeros(len(META_FIELDS), np.float32)
