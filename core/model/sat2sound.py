"""The Sat2Sound model: image(+metadata), audio and text towers meeting in one codebook-aligned embedding space."""

from __future__ import annotations

import math

import torch
from torch import nn

from core.config import Sat2SoundConfig
from core.model.audio_encoder import build_audio_encoder
from core.model.codebook import CodebookHead, Encoded, query_map
from core.model.image_encoder import ImageEncoder
from core.model.metadata import MetadataTokens
from core.model.text_backbone import TextBackbone, get_text_backbone
from core.model.transformer import Encoder

LOGIT_PAIRS = ("image_audio", "image_audiocap", "audio_audiocap", "image_composed", "image_imagecap")
META_KEYS = ("lat", "lon", "month", "hour", "audio_source", "caption_source", "meta_mask")


class Sat2Sound(nn.Module):
    def __init__(self, cfg: Sat2SoundConfig, text_backbone: TextBackbone | None = None):
        super().__init__()
        self.cfg = cfg
        m = cfg.model
        d = m.codebook.dim
        self.image_encoder = ImageEncoder(cfg.image, m.image, d)
        self.metadata = (MetadataTokens(d, m.fusion.meta_hidden, m.fusion.drop_prob, m.fusion.meta_fields)
                         if m.fusion.use_metadata else None)
        self.fusion = Encoder(d, m.fusion.layers, m.fusion.heads, norm_first=m.fusion.norm_first,
                              hidden=m.fusion.ffn_hidden, eps=m.fusion.ln_eps)
        self.audio_encoder = build_audio_encoder(cfg.audio, m.audio)
        self.image_query = query_map(d, d)
        self.audio_query = query_map(m.audio.width, d)
        self.text_query = query_map(m.text.width, d)  # shared by audio captions and image captions
        self.head = CodebookHead(m.codebook)
        self.logit_scale = nn.ParameterDict(
            {k: nn.Parameter(torch.tensor(cfg.train.logit_scale_init)) for k in LOGIT_PAIRS}
        )
        # Frozen and shipped by a package: kept outside the module tree so it is not in the state dict.
        self._text_backbone = text_backbone

    # ------------------------------------------------------------------------------------------- text backbone
    @property
    def text_backbone(self) -> TextBackbone:
        if self._text_backbone is None:
            text = self.cfg.model.text
            self._text_backbone = get_text_backbone(text.backbone, text.max_tokens, text.path,
                                                    expected_width=text.width)
        return self._text_backbone

    # -------------------------------------------------------------------------------------------------- towers
    def image_tokens(
        self, image: torch.Tensor, zoom: torch.Tensor, gsd: torch.Tensor, meta: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Fused image tokens (B, P [+5], d) before the query map, and their pad mask (None without metadata)."""
        scale = zoom.to(torch.float32) * gsd.to(torch.float32)
        tokens = self.image_encoder(image, scale)
        pad = None
        if self.metadata is not None and meta is not None:
            meta_tokens, meta_pad = self.metadata(meta)
            tokens = torch.cat([tokens, meta_tokens], dim=1)
            patch_pad = torch.zeros(tokens.shape[0], tokens.shape[1] - meta_pad.shape[1], dtype=torch.bool,
                                    device=tokens.device)
            pad = torch.cat([patch_pad, meta_pad], dim=1)
        fused = self.fusion(tokens, pad)
        if pad is not None and self.cfg.model.fusion.zero_padded:
            # the published model's fusion runs torch's eval fast path, which returns padded positions as zeros
            fused = fused * (~pad).unsqueeze(-1).to(fused.dtype)
        return fused, pad

    def encode_image(
        self, image: torch.Tensor, zoom: torch.Tensor, gsd: torch.Tensor, meta: dict[str, torch.Tensor] | None = None
    ) -> Encoded:
        tokens, pad = self.image_tokens(image, zoom, gsd, meta)
        return self.head(self.image_query(tokens), pad if self.cfg.model.fusion.mask_codebook else None)

    def encode_audio(self, mel: torch.Tensor) -> Encoded:
        return self.head(self.audio_query(self.audio_encoder(mel)))

    def encode_text_states(self, states: torch.Tensor, pad_mask: torch.Tensor) -> Encoded:
        return self.head(self.text_query(states), pad_mask)

    def encode_text(self, texts: list[str]) -> Encoded:
        states, pad = self.text_backbone.encode(list(texts))
        device = self.text_query[1].weight.device
        return self.encode_text_states(states.to(device), pad.to(device))

    # ------------------------------------------------------------------------------------------------ training
    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """Normalised embeddings of the four views of a batch (the loader's batch dict)."""
        meta = {k: batch[k] for k in META_KEYS if k in batch} if self.metadata is not None else None
        if meta is not None and len(meta) != len(META_KEYS):
            meta = None
        image = self.encode_image(batch["image"], batch["zoom"], batch["gsd"], meta)
        audio = self.encode_audio(batch["mel"])
        n = len(batch["audio_caption"])
        text = self.encode_text(list(batch["audio_caption"]) + list(batch["image_caption"]))
        return {
            "image": image.embedding,
            "audio": audio.embedding,
            "audio_caption": text.embedding[:n],
            "image_caption": text.embedding[n:],
        }

    def scale(self, pair: str) -> torch.Tensor:
        """exp of the learnable log logit scale, clamped at 100 like CLIP."""
        return self.logit_scale[pair].clamp(max=math.log(100.0)).exp()


def build_model(cfg: Sat2SoundConfig, text_backbone: TextBackbone | None = None) -> Sat2Sound:
    return Sat2Sound(cfg, text_backbone)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
