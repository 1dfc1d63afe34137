"""The published text backbone: a frozen FLAN-T5 encoder loaded from a local folder (nothing is downloaded).

Sat2Sound encodes every caption with the encoder half of ``google/flan-t5-large`` (transformers
``T5EncoderModel``, 1024 wide), in full precision. Its captions are tokenised by the model's own tokenizer (the
sentencepiece pieces plus a closing ``</s>``, no start token), padded on the right to the longest caption of the batch
and truncated at 512 tokens; the encoder gets ``input_ids`` and ``attention_mask`` and its ``last_hidden_state`` is
used as it is (no normalisation, no projection). The same happens here; the states of each caption are kept without
the padding (so they do not depend on the batch) and cached as float32, like the authors' full precision.

The folder is a Hugging Face model folder: ``config.json`` (``model_type`` "t5"), the weights (``*.safetensors`` or
``pytorch_model.bin``; a full T5 checkpoint is fine, its decoder is ignored) and the tokenizer (``tokenizer.json``
and/or ``spiece.model`` with ``tokenizer_config.json``). Every problem with it is a one-line ``ConfigError``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contracts.errors import ConfigError
from core.model.text_backbone import TextBackbone, check_width, set_offline, weight_files

TOKENIZER_FILES = ("tokenizer.json", "spiece.model")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def check_t5_folder(path: str | Path) -> Path:
    """The resolved folder, once it exists and holds a config, weights and a tokenizer; ConfigError otherwise."""
    if not str(path or "").strip():
        raise ConfigError("the flan-t5 backbone needs a local folder: text.path / --text-encoder DIR")
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise ConfigError(f"FLAN-T5 folder {folder} does not exist")
    if not (folder / "config.json").is_file():
        raise ConfigError(f"FLAN-T5 folder {folder} has no config.json")
    if not weight_files(folder):
        raise ConfigError(f"FLAN-T5 folder {folder} has no weights (*.safetensors or *.bin)")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ConfigError(f"FLAN-T5 folder {folder} has no tokenizer ({' or '.join(TOKENIZER_FILES)})")
    return folder


def read_t5_config(folder: Path) -> Any:
    """``config.json`` as a ``T5Config``, after checking that it describes a T5 model."""
    try:
        raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"FLAN-T5 folder {folder}: config.json does not read ({_first_line(exc)})") from exc
    kind = raw.get("model_type") if isinstance(raw, dict) else None
    if kind != "t5":
        raise ConfigError(f"FLAN-T5 folder {folder} holds a {kind!r} model (config.json model_type), not 't5'")
    from transformers import T5Config

    try:
        return T5Config.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # any malformed field: the message names the folder
        raise ConfigError(f"FLAN-T5 folder {folder}: config.json is not a T5 config ({_first_line(exc)})") from exc


class FlanT5Backbone(TextBackbone):
    """A frozen ``T5EncoderModel`` and its tokenizer from ``path``; states (B, T, d_model) cached per caption."""

    name = "flan-t5"
    state_dtype = np.float32

    def __init__(self, path: str | Path, max_tokens: int = 512, batch_size: int = 16,
                 cache_dir: str | Path | None = None, expected_width: int | None = None):
        super().__init__(max_tokens=max_tokens, batch_size=batch_size, cache_dir=cache_dir)
        set_offline()
        self.path = check_t5_folder(path)
        config = read_t5_config(self.path)
        self.width = int(config.d_model)
        check_width(f"FLAN-T5 folder {self.path}", self.width, expected_width)
        self.tokenizer = self._load_tokenizer(config)
        self.model = self._load_encoder(config)

    def _load_tokenizer(self, config: Any) -> Any:
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        except Exception as exc:  # a broken or foreign tokenizer file
            raise ConfigError(f"FLAN-T5 folder {self.path}: the tokenizer does not load ({_first_line(exc)})") from exc
        if len(tokenizer) > config.vocab_size:
            raise ConfigError(f"FLAN-T5 folder {self.path}: the tokenizer has {len(tokenizer)} tokens but the model "
                              f"only {config.vocab_size} embeddings")
        return tokenizer

    def _load_encoder(self, config: Any) -> Any:
        """The encoder in float32, frozen; weights that do not load, or leave encoder parameters unset, stop here.

        Eager attention (T5's original implementation): the SDPA path gives the same numbers but does not lower to
        ONNX with ``torch.onnx.export(dynamo=True)`` (torch 2.13: a view of a non-contiguous tensor in the
        decomposition), and the exporters trace ``backbone.model``.
        """
        from transformers import T5EncoderModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # our one-line error replaces transformers' load report
        try:
            model, info = T5EncoderModel.from_pretrained(self.path, config=config, local_files_only=True,
                                                         dtype=torch.float32, attn_implementation="eager",
                                                         output_loading_info=True)
        except Exception as exc:  # corrupt file, shape mismatch, unreadable pickle...
            raise ConfigError(f"FLAN-T5 folder {self.path}: the weights do not load ({_first_line(exc)})") from exc
        finally:
            hf_logging.set_verbosity(verbosity)
        missing = sorted(info.get("missing_keys") or [])
        if missing:
            raise ConfigError(f"FLAN-T5 folder {self.path}: the weights lack {len(missing)} encoder tensors "
                              f"(e.g. {missing[0]})")
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        return model

    def _forward(self, tok: Any) -> torch.Tensor:
        """As the authors call it: input ids and attention mask in, ``last_hidden_state`` out."""
        return self.model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).last_hidden_state
