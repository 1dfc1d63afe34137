"""Export wrappers: each Sat2Sound tower as an nn.Module with plain tensor inputs and outputs and fixed names.

Export targets (ONNX, Core ML, TFLite) need a forward of positional tensors, not dicts or dataclasses, and a device
needs stable input/output names to feed. Each wrapper here is that contract: ``INPUTS``/``OUTPUTS`` name the tensors
in forward order, ``example_inputs`` makes a batch of well-formed values for tracing and parity checks.

Towers:
- ``image``: normalised image + zoom/GSD + the five metadata fields and their mask -> ``embedding`` (B, d).
- ``image_grounding``: the same, plus ``patch_scores`` (B, n_patches, M) for grounding maps (codebook head only).
- ``audio``: log-mel (B, frames, n_mels) -> ``embedding``.
- ``audio_wave``: raw mono wave (B, n_samples) -> ``embedding``, with the log-mel front end inside the graph.
- ``text``: token ids + attention mask -> ``embedding``; the frozen MiniLM, the text query map and the codebook
  head in one graph, so a device needs only the tokenizer.

Metadata semantics: every image tower takes all metadata inputs. ``meta_mask`` (B, 5) says which fields are given
(1) and which are missing (0), in the order of ``contracts.schema.META_FIELDS``; a model trained without metadata
ignores them (they are still graph inputs, so one app works with both).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from contracts.artifacts import ALL_TOWERS
from contracts.schema import AUDIO_SOURCES, CAPTION_SOURCES, IMAGERY_GSD_M, META_FIELDS
from core.data.audio_frontend import LogMel
from core.model.transformer import MASK_BIAS

if TYPE_CHECKING:
    from core.config import Sat2SoundConfig

IMAGE_INPUTS = ("image", "zoom", "gsd", "lat", "lon", "month", "hour", "audio_source", "caption_source", "meta_mask")


class Tower(nn.Module):
    """Base of the wrappers: holds the (eval-mode) model. ``named_outputs`` makes forward return {output name:
    tensor}: TFLite signatures take their output names from a returned dict (and their input names from keyword
    arguments)."""

    INPUTS: tuple[str, ...] = ()
    OUTPUTS: tuple[str, ...] = ("embedding",)
    named_outputs: bool = False

    def __init__(self, model: nn.Module):
        super().__init__()
        if model.training:
            raise ValueError("export needs the model in eval mode (metadata dropout and batch norm statistics)")
        self.model = model

    def result(self, *tensors: torch.Tensor):
        if self.named_outputs:
            return dict(zip(self.OUTPUTS, tensors))
        return tensors[0] if len(tensors) == 1 else tensors


class ImageTower(Tower):
    """Image (+ metadata) -> L2-normalised embedding (and, with ``with_scores``, the patch-code scores)."""

    INPUTS = IMAGE_INPUTS
    OUTPUTS = ("embedding",)

    def __init__(self, model: nn.Module, with_scores: bool = False):
        super().__init__(model)
        self.with_scores = with_scores
        self.n_patches = model.cfg.image.n_patches
        if with_scores:
            if model.cfg.model.codebook.head != "codebook":
                raise ValueError("patch scores need the codebook head; this model uses the global head")
            self.OUTPUTS = ("embedding", "patch_scores")

    def forward(self, image: torch.Tensor, zoom: torch.Tensor, gsd: torch.Tensor, lat: torch.Tensor,
                lon: torch.Tensor, month: torch.Tensor, hour: torch.Tensor, audio_source: torch.Tensor,
                caption_source: torch.Tensor, meta_mask: torch.Tensor):
        meta = None
        if self.model.metadata is not None:
            meta = {"lat": lat, "lon": lon, "month": month, "hour": hour, "audio_source": audio_source,
                    "caption_source": caption_source, "meta_mask": meta_mask}
        enc = self.model.encode_image(image, zoom, gsd, meta)
        if self.with_scores:
            return self.result(enc.embedding, enc.scores[:, : self.n_patches])
        return self.result(enc.embedding)


class AudioTower(Tower):
    """Log-mel (B, frames, n_mels) in dB -> L2-normalised embedding."""

    INPUTS = ("mel",)
    OUTPUTS = ("embedding",)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.result(self.model.encode_audio(mel).embedding)


class AudioWaveTower(AudioTower):
    """Mono wave (B, n_samples) at the config's sample rate -> embedding; the log-mel is computed in the graph."""

    INPUTS = ("wave",)

    def __init__(self, model: nn.Module):
        super().__init__(model)
        self.logmel = LogMel(model.cfg.audio).eval()

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return super().forward(self.logmel(wave))


class TextTower(Tower):
    """Token ids (B, T) + attention mask (B, T) -> embedding: frozen text backbone + text query map + codebook head.

    For MiniLM the BERT embeddings and encoder are called directly with an additive key mask built here, instead of
    through ``BertModel.forward``: its mask helpers emit ops Core ML cannot convert (``new_ones``, ``__and__``), and
    ``-1e4`` (not the float32 minimum) keeps the mask finite in float16. Numerically this is the same model. A
    FLAN-T5 encoder (the published model's) is run block by block the same way, with its relative-position bias
    computed once for the fixed export length (``text.export_tokens``) and kept as a constant.
    """

    INPUTS = ("input_ids", "attention_mask")
    OUTPUTS = ("embedding",)

    def __init__(self, model: nn.Module):
        super().__init__(model)
        backbone = model.text_backbone
        # A registered submodule, so the exporters see its weights; the Sat2Sound state dict is not touched.
        self.bert = backbone.model.eval()
        self.is_t5 = backbone.name == "flan-t5"
        if self.is_t5:
            text = model.cfg.model.text
            length = text.export_tokens or text.max_tokens
            with torch.no_grad():
                bias = self.bert.encoder.block[0].layer[0].SelfAttention.compute_bias(length, length)
            self.register_buffer("t5_position_bias", bias.float(), persistent=False)

    def t5_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        stack = self.bert.encoder
        mask = ((1.0 - attention_mask.to(torch.float32)) * MASK_BIAS)[:, None, None, :]
        hidden = stack.embed_tokens(input_ids)
        for block in stack.block:
            hidden = block(hidden, attention_mask=mask, position_bias=self.t5_position_bias)[0]
        return stack.final_layer_norm(hidden)

    def states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The backbone's last hidden states (B, T, width)."""
        if self.is_t5:
            return self.t5_states(input_ids, attention_mask)
        keep = attention_mask.to(torch.float32)
        hidden = self.bert.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))
        bias = ((1.0 - keep) * MASK_BIAS)[:, None, None, :]
        return self.bert.encoder(hidden, attention_mask=bias).last_hidden_state

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        states = self.states(input_ids, attention_mask)
        return self.result(self.model.encode_text_states(states.float(), attention_mask < 1).embedding)


def build_tower(model: nn.Module, tower: str, *, named_outputs: bool = False) -> Tower:
    """The eval-mode export wrapper for ``tower`` (one of contracts.artifacts.ALL_TOWERS)."""
    wrapper = _build_tower(model, tower)
    wrapper.named_outputs = named_outputs
    return wrapper


def _build_tower(model: nn.Module, tower: str) -> Tower:
    if tower == "image":
        return ImageTower(model).eval()
    if tower == "image_grounding":
        return ImageTower(model, with_scores=True).eval()
    if tower == "audio":
        return AudioTower(model).eval()
    if tower == "audio_wave":
        return AudioWaveTower(model).eval()
    if tower == "text":
        return TextTower(model).eval()
    raise ValueError(f"unknown tower {tower!r}; expected one of {', '.join(ALL_TOWERS)}")


def tower_inputs(tower: str) -> tuple[str, ...]:
    if tower in ("image", "image_grounding"):
        return IMAGE_INPUTS
    return {"audio": AudioTower.INPUTS, "audio_wave": AudioWaveTower.INPUTS, "text": TextTower.INPUTS}[tower]


def tower_outputs(tower: str) -> tuple[str, ...]:
    return ("embedding", "patch_scores") if tower == "image_grounding" else ("embedding",)


def example_inputs(cfg: Sat2SoundConfig, tower: str, batch: int = 2, *, seed: int = 0,
                   texts: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Well-formed inputs for ``tower`` in forward order: random image/audio, plausible metadata, real token ids.

    Used both to trace the export (batch 2, so the batch dimension is not specialised) and, with another seed,
    as the held-out batch of the parity checks. Metadata masks vary across the batch so partial metadata is tested.
    """
    g = torch.Generator().manual_seed(seed)
    if tower in ("image", "image_grounding"):
        s = cfg.image.image_size
        zooms = torch.tensor(cfg.image.zooms, dtype=torch.float32)
        gsd = IMAGERY_GSD_M.get(cfg.image.imagery, 0.6)
        mask = (torch.rand(batch, len(META_FIELDS), generator=g) > 0.3).to(torch.float32)
        mask[0] = 1.0
        return {
            "image": torch.randn(batch, 3, s, s, generator=g),
            "zoom": zooms[torch.randint(0, len(zooms), (batch,), generator=g)],
            "gsd": torch.full((batch,), float(gsd)),
            "lat": torch.rand(batch, generator=g) * 180.0 - 90.0,
            "lon": torch.rand(batch, generator=g) * 360.0 - 180.0,
            "month": torch.randint(1, 13, (batch,), generator=g).to(torch.float32),
            "hour": torch.randint(0, 24, (batch,), generator=g).to(torch.float32),
            "audio_source": torch.randint(0, len(AUDIO_SOURCES), (batch,), generator=g),
            "caption_source": torch.randint(0, len(CAPTION_SOURCES), (batch,), generator=g),
            "meta_mask": mask,
        }
    if tower == "audio":
        # log-mel in dB: speech/ambience levels sit roughly between -60 and +20 dB
        mel = torch.randn(batch, cfg.audio.n_frames, cfg.audio.n_mels, generator=g) * 15.0 - 20.0
        return {"mel": mel}
    if tower == "audio_wave":
        return {"wave": torch.randn(batch, cfg.audio.n_samples, generator=g) * 0.1}
    if tower == "text":
        return tokenize(cfg, texts if texts is not None else example_texts(batch, seed=seed))
    raise ValueError(f"unknown tower {tower!r}; expected one of {', '.join(ALL_TOWERS)}")


MAX_BATCH = 4096  # the symbolic batch's upper bound in exported graphs


def export_arguments(cfg: Sat2SoundConfig, tower: str, dynamic_batch: bool = True
                     ) -> tuple[tuple[torch.Tensor, ...], dict[str, dict[int, Any]] | None]:
    """What ``torch.export`` (and the ONNX exporter on it) takes for ``tower``: the positional example inputs
    (batch 2 with a symbolic batch dimension on every input, so it is not specialised; or batch 1, fixed)."""
    names = tower_inputs(tower)
    ex = example_inputs(cfg, tower, 2 if dynamic_batch else 1)
    args = tuple(ex[k] for k in names)
    if not dynamic_batch:
        return args, None
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    return args, {k: {0: batch} for k in names}


EXAMPLE_TEXTS = (
    "birds chirping in a quiet forest", "a car passes by on a wet road", "waves crashing on a sandy beach",
    "church bells ring over the old town square", "wind in the grass", "a busy market with people talking",
    "frogs croaking near a pond at night", "a train rumbles across the bridge",
    "one could hear cows and a tractor on the farm", "rain on a tin roof while thunder rolls in the distance",
)


def example_texts(batch: int, *, seed: int = 0) -> list[str]:
    """``batch`` soundscape captions in a seeded order (repeating when batch > the pool)."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(EXAMPLE_TEXTS), generator=g).tolist()
    return [EXAMPLE_TEXTS[order[i % len(order)]] for i in range(batch)]


def tokenize(cfg: Sat2SoundConfig, texts: list[str]) -> dict[str, torch.Tensor]:
    """Token ids and mask padded to the fixed sequence length every export uses (``text.export_tokens``, or
    ``max_tokens`` when that is 0)."""
    from core.model.text_backbone import get_text_backbone

    text = cfg.model.text
    backbone = get_text_backbone(text.backbone, text.max_tokens, text.path, expected_width=text.width)
    length = text.export_tokens or text.max_tokens
    tok = backbone.tokenizer(list(texts), padding="max_length", truncation=True, max_length=length,
                             return_tensors="pt")
    return {"input_ids": tok["input_ids"].to(torch.int64), "attention_mask": tok["attention_mask"].to(torch.int64)}
