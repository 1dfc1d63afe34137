"""Word -> its best codebook concept -> that concept's score on every image patch -> a grid x grid heat map.

Exactly the paper's recipe: token-level text scores against the codebook pick one code per word; the image's raw
token-code scores (kept by the codebook head) give that code's score on each of the grid x grid patches; the words'
maps are averaged. Special tokens and function words are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from contracts.errors import ConfigError
from contracts.image_prep import normalise
from core.checkpoint import Loaded

SKIP_WORDS = frozenset({
    "[CLS]", "[SEP]", "[PAD]", "a", "an", "the", "of", "and", "or", "in", "on", "at", "to", "with", "from", "by",
    "is", "are", "be", "can", "could", "we", "one", "you", "hear", "heard", "sound", "sounds", "some", "this", "that",
    ",", ".", "!", "?", "'", "-",
})


@dataclass
class Grounding:
    heat: np.ndarray  # (grid, grid) float32, the averaged patch scores
    words: list[dict] = field(default_factory=list)  # token, code, its (grid, grid) map's max


@torch.no_grad()
def ground_text(loaded: Loaded, view: np.ndarray, zoom: int, gsd: float, text: str,
                meta: dict[str, torch.Tensor] | None = None) -> Grounding:
    """``view``: the model's input view (S, S, 3) uint8."""
    model, cfg = loaded.model, loaded.cfg
    if not hasattr(model.head, "codebook"):
        raise ConfigError("this checkpoint is the global-pooling baseline: it has no codebook, so no grounding")
    if not text or not text.strip():
        raise ConfigError("the grounding text is empty")
    x = torch.from_numpy(normalise(view[None], cfg.image.mean, cfg.image.std))
    tokens, pad = model.image_tokens(x, torch.tensor([zoom]), torch.tensor([gsd]), meta)
    image_scores = model.head.token_scores(model.image_query(tokens), pad)[0, : cfg.image.n_patches]  # (P, M)
    states, tpad = model.text_backbone.encode([text.strip()])
    text_scores = model.head.token_scores(model.text_query(states), tpad)[0]  # (T, M)
    pieces = model.text_backbone.tokens(text.strip())
    maps, words = [], []
    for t, piece in enumerate(pieces[: text_scores.shape[0]]):
        if piece in SKIP_WORDS or piece.lstrip("#") in SKIP_WORDS:
            continue
        code = int(text_scores[t].argmax())
        m = image_scores[:, code].reshape(cfg.image.grid, cfg.image.grid).numpy()
        maps.append(m)
        words.append({"token": piece, "code": code, "max": float(m.max())})
    if not maps:
        raise ConfigError(f"no content word to ground in {text!r}")
    return Grounding(np.mean(maps, axis=0).astype(np.float32), words)


def upsample(heat: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of a grid map to size x size (Pillow, float mode)."""
    from PIL import Image

    return np.asarray(Image.fromarray(heat.astype(np.float32), mode="F").resize((size, size), Image.BILINEAR))


def patch_relevance(cover: np.ndarray, classes: list[int], grid: int) -> np.ndarray:
    """Share of each patch's pixels whose land-cover class is one of ``classes`` -> (grid, grid)."""
    h = cover.shape[0] - cover.shape[0] % grid
    c = np.isin(cover[:h, :h], classes).astype(np.float32)
    b = h // grid
    return c.reshape(grid, b, grid, b).mean(axis=(1, 3))
