"""The strict mapping from the authors' ``state_dict`` keys to this project's model.

Every key of a released checkpoint meets exactly one of three fates, and the import stops if any key meets none:
- **mapped**: copied into one tensor of our model (``RULES``: a regular expression and our key template);
- **derived**: a deterministic buffer our model computes itself (the Swin windows' relative-position index and
  shift masks): checked equal to ours, not copied;
- **dropped on purpose** (``DROPPED``, each with its reason): training-only state that inference never reads.
And every tensor of our model must be filled, by a mapped key or, for the few training-only scalars that an older
checkpoint may lack, by the value the authors initialise it with (listed in the import report).

``MAPPING_VERSION`` goes into every imported checkpoint's manifest; change it whenever a rule changes.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from dataclasses import dataclass

from core.config import HTSATConfig
from core.model.htsat import DERIVED_BUFFERS, unused_authors_keys

MAPPING_VERSION = "1"

AUDIO_PREFIX = "audio_encoder.model.audio_enc."
_VIT = r"satmae_backbone\.backbone\."
_META = r"sat_encoder\.meta_fuser\.meta_embed\."
_FUSION = r"sat_encoder\.meta_fuser\.transformer_encoder\.layers\.(\d+)\."
_WB = r"(weight|bias)"

# (authors' key, as a full-match regular expression) -> our key (a re.sub template)
RULES: tuple[tuple[str, str], ...] = (
    # SatMAE ViT-B/16 (timm layout) and the 768 -> 1024 -> 1024 projector
    (_VIT + r"patch_embed\.proj\." + _WB, r"image_encoder.patch_embed.\1"),
    (_VIT + r"blocks\.(\d+)\.(norm1|norm2|attn\.qkv|attn\.proj)\." + _WB, r"image_encoder.encoder.blocks.\1.\2.\3"),
    (_VIT + r"blocks\.(\d+)\.mlp\.fc1\." + _WB, r"image_encoder.encoder.blocks.\1.mlp.0.\2"),
    (_VIT + r"blocks\.(\d+)\.mlp\.fc2\." + _WB, r"image_encoder.encoder.blocks.\1.mlp.2.\2"),
    (r"satmae_backbone\.projector\.linear1\." + _WB, r"image_encoder.projector.0.\1"),
    (r"satmae_backbone\.projector\.linear2\." + _WB, r"image_encoder.projector.2.\1"),
    # metadata MLPs and source embeddings
    (_META + r"location_fc\.fc1\." + _WB, r"metadata.latlon.0.\1"),
    (_META + r"location_fc\.fc2\." + _WB, r"metadata.latlon.2.\1"),
    (_META + r"month_fc\.fc1\." + _WB, r"metadata.month.0.\1"),
    (_META + r"month_fc\.fc2\." + _WB, r"metadata.month.2.\1"),
    (_META + r"time_fc\.fc1\." + _WB, r"metadata.hour.0.\1"),
    (_META + r"time_fc\.fc2\." + _WB, r"metadata.hour.2.\1"),
    (_META + r"audio_source_fc\.source_embed\.weight", r"metadata.audio_source.weight"),
    (_META + r"caption_source_fc\.source_embed\.weight", r"metadata.caption_source.weight"),
    # torch.nn.TransformerEncoder (post-norm): in_proj = q, k, v stacked, as our qkv
    (_FUSION + r"self_attn\.in_proj_" + _WB, r"fusion.blocks.\1.attn.qkv.\2"),
    (_FUSION + r"self_attn\.out_proj\." + _WB, r"fusion.blocks.\1.attn.proj.\2"),
    (_FUSION + r"linear1\." + _WB, r"fusion.blocks.\1.mlp.0.\2"),
    (_FUSION + r"linear2\." + _WB, r"fusion.blocks.\1.mlp.2.\2"),
    (_FUSION + r"(norm1|norm2)\." + _WB, r"fusion.blocks.\1.\2.\3"),
    # HTSAT: our tower keeps the authors' names below their prefix
    (re.escape(AUDIO_PREFIX) + r"(.+)", r"audio_encoder.\1"),
    # the codebook and the three query maps (same Sequential indices)
    (r"fdt\.space_dict", r"head.codebook"),
    (r"fdt\.img_query_model\.q_map\.(\d)\." + _WB, r"image_query.\1.\2"),
    (r"fdt\.audio_query_model\.q_map\.(\d)\." + _WB, r"audio_query.\1.\2"),
    (r"fdt\.txt_query_model\.q_map\.(\d)\." + _WB, r"text_query.\1.\2"),
    # contrastive temperatures (training only, but ours have the same meaning)
    (r"logit_scale_ia", r"logit_scale.image_audio"),
    (r"logit_scale_it", r"logit_scale.image_audiocap"),
    (r"logit_scale_at", r"logit_scale.audio_audiocap"),
    (r"logit_scale_i_at", r"logit_scale.image_composed"),
    (r"logit_scale_fdt", r"logit_scale.image_imagecap"),
)
_COMPILED = tuple((re.compile(pattern), template) for pattern, template in RULES)


@functools.cache
def dropped(htsat: HTSATConfig) -> tuple[tuple[str, str], ...]:
    """Authors' key globs that are not imported, and why (the HTSAT's unused parts depend on its depths)."""
    return (
        ("logit_scale_it_a", "training-only temperature that the authors' loss never reads"),
        ("*.num_batches_tracked", "BatchNorm's update counter: training-only"),
        *((AUDIO_PREFIX + pattern, "an HTSAT part the frame-level output never uses")
          for pattern in unused_authors_keys(htsat)),
    )


DERIVED: tuple[str, ...] = tuple(AUDIO_PREFIX + pattern for pattern in DERIVED_BUFFERS
                                 if not pattern.endswith("num_batches_tracked"))

# our training-only scalars that a checkpoint may lack, and the authors' initial value for them: log(1 / 0.07)
INITIALISED_IF_ABSENT: dict[str, float] = {"logit_scale.image_composed": 2.6592600369262695}


@dataclass(frozen=True)
class Fate:
    kind: str  # "mapped" | "derived" | "dropped" | "unknown"
    target: str = ""  # our key (mapped, derived)
    reason: str = ""  # why it is dropped


def fate(key: str, htsat: HTSATConfig | None = None) -> Fate:
    """What happens to one authors' key (``htsat``: the audio tower's sizes, published ones by default). Dropped and
    derived rules are tried before the mapping rules."""
    for pattern, reason in dropped(htsat or HTSATConfig()):
        if fnmatch.fnmatchcase(key, pattern):
            return Fate("dropped", reason=reason)
    for pattern in DERIVED:
        if fnmatch.fnmatchcase(key, pattern):
            return Fate("derived", target="audio_encoder." + key[len(AUDIO_PREFIX):])
    hits = [(rx, template) for rx, template in _COMPILED if rx.fullmatch(key)]
    if len(hits) > 1:  # a rule table bug, not a user error
        raise AssertionError(f"{key} matches {len(hits)} mapping rules")
    if not hits:
        return Fate("unknown")
    rx, template = hits[0]
    return Fate("mapped", target=rx.sub(template, key))
