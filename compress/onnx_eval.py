"""Retrieval figures of exported towers run with ONNX Runtime, the way a device would compute them.

The quality gate of `sat2sound quantize` and the compress report score int8 towers with these functions, and the
fp32 reference with the same code on the fp32 graphs, so a difference is the quantization and nothing else.
Protocol: the benchmarks' (core/metrics.py): zoom 1 (or the first zoom), every metadata field the data has,
I2A / A2I (image vs audio) and I2T (image vs its own caption at that zoom), R@10% and median rank.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from compress.onnx_feeds import audio_feed, image_feed, text_feed
from core.metrics import retrieval_report
from export.ort_session import onnx_session, session_feed

if TYPE_CHECKING:
    from core.config import Sat2SoundConfig

EVAL_BATCH = 64


class OrtTowers:
    """ORT sessions for a set of tower files (opened on first use)."""

    def __init__(self, paths: dict[str, str | Path], threads: int = 1):
        self.paths = {k: Path(v) for k, v in paths.items()}
        self.threads = threads
        self._sessions: dict[str, Any] = {}

    def __contains__(self, tower: str) -> bool:
        return tower in self.paths

    def session(self, tower: str) -> Any:
        if tower not in self._sessions:
            self._sessions[tower] = onnx_session(self.paths[tower], threads=self.threads)
        return self._sessions[tower]

    def run(self, tower: str, feed: dict[str, np.ndarray]) -> np.ndarray:
        sess = self.session(tower)
        return sess.run(["embedding"], session_feed(sess, feed))[0]


def eval_zoom(cfg: Sat2SoundConfig) -> int:
    return 1 if 1 in cfg.image.zooms else int(cfg.image.zooms[0])


def embed_with_ort(towers: OrtTowers, table: Any, cfg: Sat2SoundConfig, *, zoom: int,
                   text_fallback: Callable[[list[str]], np.ndarray] | None = None,
                   batch_size: int = EVAL_BATCH, progress: bool = False,
                   desc: str = "ORT embeddings") -> dict[str, np.ndarray]:
    """image (all metadata), audio, audio_caption, image_caption embeddings (N, d) of a table at ``zoom``.

    Without a text tower, ``text_fallback`` (e.g. the PyTorch model's text path) embeds the captions.
    """
    n = len(table)
    image, audio, audio_texts, image_texts = [], [], [], []
    bar = tqdm(total=n, desc=desc, unit="sample", disable=not progress, leave=False)
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        batch = table.batch(idx, zoom=zoom, rng=None, jitter=0.0)
        image.append(towers.run("image", image_feed(batch)))
        audio.append(towers.run("audio", audio_feed(batch)) if "audio" in towers else None)
        audio_texts.extend(batch["audio_caption"])
        image_texts.extend(batch["image_caption"])
        bar.update(len(idx))
    bar.close()
    out = {"image": np.concatenate(image).astype(np.float32)}
    if all(a is not None for a in audio):
        out["audio"] = np.concatenate(audio).astype(np.float32)
    out["audio_caption"] = embed_texts_with_ort(towers, cfg, audio_texts, text_fallback, batch_size)
    out["image_caption"] = embed_texts_with_ort(towers, cfg, image_texts, text_fallback, batch_size)
    return out


def embed_texts_with_ort(towers: OrtTowers, cfg: Sat2SoundConfig, texts: list[str],
                         fallback: Callable[[list[str]], np.ndarray] | None, batch_size: int) -> np.ndarray:
    if "text" not in towers:
        if fallback is None:
            raise ValueError("no text tower and no fallback to embed captions with")
        return np.asarray(fallback(texts), dtype=np.float32)
    parts = [towers.run("text", text_feed(cfg, [t or " " for t in texts[s:s + batch_size]]))
             for s in range(0, len(texts), batch_size)]
    return np.concatenate(parts).astype(np.float32)


def retrieval_figures(emb: dict[str, np.ndarray]) -> dict[str, float]:
    """I2A / A2I / I2T R@10% and median ranks (core/metrics.py protocol) from embeddings."""
    out: dict[str, float] = {"n": int(emb["image"].shape[0])}
    if "audio" in emb:
        i2a = retrieval_report(emb["image"], emb["audio"])
        a2i = retrieval_report(emb["audio"], emb["image"])
        out.update(i2a_r10=i2a["r10"], i2a_mr=i2a["mr"], a2i_r10=a2i["r10"], a2i_mr=a2i["mr"])
    i2t = retrieval_report(emb["image"], emb["image_caption"])
    out.update(i2t_r10=i2t["r10"], i2t_mr=i2t["mr"])
    return out


def cosine_parity(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Mean and minimum cosine between matching rows (int8 vs fp32 embeddings of the same inputs)."""
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    c = (a * b).sum(axis=1)
    return {"mean": float(c.mean()), "min": float(c.min())}


def torch_text_fallback(model: Any) -> Callable[[list[str]], np.ndarray]:
    """Caption embeddings through a PyTorch model's (frozen) text path."""

    def embed(texts: list[str]) -> np.ndarray:
        from compress.teacher_targets import embed_texts

        model.eval()
        model.text_backbone.precompute(texts, progress=False)
        return embed_texts(model, list(texts))

    return embed
