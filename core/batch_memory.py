"""How much memory one training step needs, estimated from the config before any data is read.

``sat2sound train`` and ``sat2sound distill`` call :func:`check_batch_room` before they read a row (the training
split's size comes from its files' footers, :func:`count_train_rows`, since a run cuts a batch larger than the split
down to it): a step the machine cannot hold is refused at once with one line naming ``--batch-size``, the estimate
and the available memory (``contracts.durability.check_room``: refused above half of MemAvailable), instead of a
MemoryError or the OOM killer minutes later.

The estimate is computed, not measured: the float32 tensors autograd keeps for the backward pass, counted from the
config's sizes, tower by tower, per sample:

- a transformer layer keeps ``ACT_PER_WIDTH`` (10) tensors of tokens x width (two LayerNorms' inputs and outputs,
  q, k, v, the attention output, its projection, the residual) plus two of tokens x hidden (the MLP's first linear
  and its GELU), and ``ACT_PER_SCORE`` (2) tensors of heads x tokens x keys (scores and softmax; an HTSAT stage
  attends within windows, so keys = window**2 there);
- the image ViT and its projector, the metadata fusion, the audio tower (transformer or HTSAT, stage by stage), the
  query maps (LayerNorm, Linear, GELU, LayerNorm: 5 tensors of tokens x width) and the codebook head (its tokens x
  codebook-size scores, ``ACT_PER_CODE`` = 1 per view: ``core.model.token_max`` keeps only the winning tokens for
  backward, but the scores are materialised) for the image, the audio and (teacher training only) both captions,
  whose frozen backbone states are read from the precomputed cache;
- the inputs (the image and the log-mel, twice each for their normalised copies);
- plus, once per step, the in-batch contrastive logits: ``len(LOGIT_PAIRS)`` pairs x batch**2 x ``ACT_PER_LOGIT``
  (4: logits, softmax, soft targets, their gradient) - the term that grows with the square of the batch.

The sum times 4 bytes is multiplied by ``SAFETY`` (1.25) for what the count leaves out: activation gradients alive
during the backward pass, temporaries and the allocator's slack. Measured against the peak RSS rise of one real
forward and backward step on CPU (default preset at batch 128, tiny at 1024 and 4096), the unscaled count came to
0.8-1.16x of it, so with ``SAFETY`` the estimate was above the real peak each time; per tower it is 1.07-1.68x the
bytes autograd saves (``torch.autograd.graph.saved_tensors_hooks``; ``tests/test_train_batch_room.py`` checks
this for the tiny and published-tiny towers). The fixed part (weights, gradients, AdamW's two moments, the data
tables) does not follow from ``--batch-size`` and is left out: ``check_room`` keeps half of the memory for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from contracts.durability import check_room
from contracts.errors import Sat2SoundError

if TYPE_CHECKING:
    from core.config import Sat2SoundConfig

BYTES = 4  # float32 training
ACT_PER_WIDTH = 10
ACT_PER_SCORE = 2
ACT_PER_CODE = 1
ACT_PER_LOGIT = 4
N_LOGIT_PAIRS = 5  # core.model.sat2sound.LOGIT_PAIRS (not imported: this module stays torch-free)
SAFETY = 1.25


def encoder_elements(tokens: int, width: int, layers: int, heads: int, hidden: int, keys: int | None = None) -> int:
    """Float32 elements a pre-/post-norm transformer of ``layers`` blocks keeps for backward, per sample."""
    keys = tokens if keys is None else keys
    return layers * (tokens * (ACT_PER_WIDTH * width + 2 * hidden) + ACT_PER_SCORE * heads * tokens * keys)


def _query_map(tokens: int, in_dim: int, d: int) -> int:
    return tokens * (2 * in_dim + 3 * d)


def _audio(cfg: Sat2SoundConfig) -> tuple[int, int, int]:
    """(elements per sample, output tokens, output width) of the audio tower."""
    a, enc = cfg.audio, cfg.model.audio
    inputs = 2 * a.n_frames * a.n_mels
    if enc.kind == "htsat":
        h = enc.htsat
        grid = h.spec_size // h.patch
        total = inputs + 3 * h.spec_size * h.spec_size + ACT_PER_WIDTH * grid * grid * h.embed_dim
        tokens = width = 0
        for i, (depth, heads) in enumerate(zip(h.depths, h.heads, strict=False)):
            res, width = grid // 2**i, h.embed_dim * 2**i
            window = min(res, h.window)
            tokens = res * res
            total += encoder_elements(tokens, width, depth, heads, int(width * h.mlp_ratio), keys=window * window)
        return total, tokens, width
    tokens = (a.n_frames // enc.time_patch) * (a.n_mels // min(enc.freq_patch, a.n_mels))
    body = encoder_elements(tokens, enc.width, enc.depth, enc.heads, int(enc.width * enc.mlp_ratio))
    return inputs + 2 * tokens * enc.width + body, tokens, enc.width


def tower_elements(cfg: Sat2SoundConfig) -> dict[str, int]:
    """Per-sample float32 elements kept for backward, by tower: image (ViT, projector, fusion, query map, codebook
    head), audio (tower, query map, codebook head) and text (both captions' query map and codebook head)."""
    m, im = cfg.model, cfg.image
    d, codes = m.codebook.dim, m.codebook.size
    patches = (im.image_size // im.patch_size) ** 2
    vit = encoder_elements(patches, m.image.width, m.image.depth, m.image.heads, int(m.image.width * m.image.mlp_ratio))
    projector = patches * (2 * m.image.projector_hidden + d)
    fused = patches + (len(m.fusion.meta_fields) if m.fusion.use_metadata else 0)
    fusion = encoder_elements(fused, d, m.fusion.layers, m.fusion.heads, m.fusion.ffn_hidden or 4 * d)
    image = (2 * 3 * im.image_size ** 2 + patches * m.image.width + vit + projector + fusion
             + _query_map(fused, d, d) + ACT_PER_CODE * fused * codes)
    audio_body, audio_tokens, audio_width = _audio(cfg)
    audio = audio_body + _query_map(audio_tokens, audio_width, d) + ACT_PER_CODE * audio_tokens * codes
    text_tokens = 2 * m.text.max_tokens
    text = text_tokens * m.text.width + _query_map(text_tokens, m.text.width, d) + ACT_PER_CODE * text_tokens * codes
    return {"image": image, "audio": audio, "text": text}


def step_bytes(cfg: Sat2SoundConfig, batch: int, *, text: bool = True) -> int:
    """Estimated peak bytes of one training step's activations at ``batch`` samples (``SAFETY`` included);
    ``text=False`` for distillation, whose caption embeddings are the teacher's cached targets."""
    parts = tower_elements(cfg)
    per_sample = parts["image"] + parts["audio"] + (parts["text"] if text else 0)
    logits = N_LOGIT_PAIRS * ACT_PER_LOGIT * batch * batch
    return int(SAFETY * BYTES * (batch * per_sample + logits))


def count_train_rows(data_dir: str | Path) -> int | None:
    """Rows of the training split from its files' metadata (Parquet footers, Arrow record counts), no row read;
    None where they cannot be counted (the run's own reading then says why)."""
    from core.data.layouts import open_rows  # pyarrow: imported only when a run starts

    try:
        return len(open_rows(data_dir, "train"))
    except (Sat2SoundError, OSError, ValueError):
        return None


def check_batch_room(cfg: Sat2SoundConfig, *, rows: int | None = None, text: bool = True,
                     available_memory: int | None = None) -> int:
    """Refuse (ConfigError naming --batch-size) a batch whose step would not fit in memory; returns the estimate.

    The batch judged is the one a run trains on: the requested one, cut to the training split's ``rows`` when the
    split is smaller (as ``TrainingRun._set_sizes`` does); with ``rows`` unknown, the requested one."""
    asked = cfg.train.batch_size
    batch = asked if rows is None else max(1, min(asked, rows))
    need = step_bytes(cfg, batch, text=text)
    what = f"--batch-size {asked:,}" + (f" (cut to the split's {batch:,} rows)" if batch != asked else "")
    check_room(f"{what} on preset {cfg.name}: one training step", memory=need, available_memory=available_memory)
    return need
