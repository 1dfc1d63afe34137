"""Query vectors for maps: a text prompt, or an audio file, embedded with the checkpoint's own towers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from contracts.errors import ConfigError
from core.checkpoint import Loaded
from core.data.audio_io import load_query_clip
from core.data.logmel_numpy import log_mel_numpy


@torch.no_grad()
def text_vector(loaded: Loaded, text: str) -> np.ndarray:
    if not text or not text.strip():
        raise ConfigError("the query is empty: give a text such as 'sounds of farm machinery'")
    return loaded.model.encode_text([text.strip()]).embedding[0].numpy().astype(np.float32)


@torch.no_grad()
def audio_vector(loaded: Loaded, path: str | Path) -> np.ndarray:
    """Decode (any length; centre window of the model's clip length), log-mel, audio tower."""
    wave = load_query_clip(path, loaded.cfg.audio)
    mel = torch.from_numpy(log_mel_numpy(wave, loaded.cfg.audio)).unsqueeze(0)
    return loaded.model.encode_audio(mel).embedding[0].numpy().astype(np.float32)


def score_map(embeddings: np.ndarray, vector: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Cosine score of every tile (embeddings are L2-normalised) as a (rows, cols) grid."""
    v = vector / max(float(np.linalg.norm(vector)), 1e-12)
    return (embeddings @ v).reshape(rows, cols)
