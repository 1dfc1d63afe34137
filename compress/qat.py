"""Quantization-aware training of one tower with torchao's ``prepare_qat_pt2e``: for when PTQ misses the gate.

    program  = torch.export.export(tower of a copy of the student)
    prepared = prepare_qat_pt2e(program.module(), quantizer(is_qat=True))   fake-quant on linear / conv
    warm-up forwards (no gradient)        the moving-average observers start from real ranges, not from zero
    train: loss = 1 - cos(prepared(x), fp32 tower(x))                       self-distillation to the fp32 student
    -> the same Pt2eTower that PTQ gives, converted and lowered by compress/pt2e_lower.py

The fp32 student is the target, not the labels: int8 should reproduce the student (which already maps into the
teacher's space), so the loss needs no captions or teacher. The codebook and the text query map stay frozen (they
are the teacher's, shared by every model of the family); only the tower's own weights move, with a small learning
rate (AdamW, 1e-5 by default). QAT trains static int8 only (the dynamic scheme fake-quantizes no activation).
The text tower (frozen MiniLM) is not trained here: QAT applies to the image and audio towers.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from compress.pt2e import Pt2eTower, as_args, head_nodes_annotated, make_quantizer, tower_program
from contracts.errors import ConfigError, DataError
from export.towers import build_tower

if TYPE_CHECKING:
    from core.config import Sat2SoundConfig

QAT_TOWERS: tuple[str, ...] = ("image", "audio", "audio_wave", "image_grounding")
FROZEN = ("head.", "text_query", "text_backbone")  # parameter names that QAT leaves alone


@dataclass(frozen=True)
class QatConfig:
    """How a tower is fine-tuned: epochs over ``batches``, AdamW at ``lr``, ``warmup_batches`` observer-only
    forwards first."""

    epochs: int = 1
    lr: float = 1e-5
    warmup_batches: int = 4
    seed: int = 0


def _trainable(prepared: torch.nn.Module) -> list[torch.nn.Parameter]:
    params = []
    for name, p in prepared.named_parameters():
        frozen = any(f in name for f in FROZEN)
        p.requires_grad_(not frozen)
        if not frozen:
            params.append(p)
    return params


def qat_pt2e_tower(model: torch.nn.Module, cfg: Sat2SoundConfig, tower: str, batches: list[dict[str, Any]],
                   qat: QatConfig, *, progress: bool = False) -> Pt2eTower:
    """Fine-tune a fake-quantized copy of ``tower`` on ``batches`` (training data: feeds keyed by input name)."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    if tower not in QAT_TOWERS:
        raise ConfigError(f"QAT trains the image and audio towers; the {tower} tower keeps post-training int8")
    if qat.epochs < 1:
        raise ConfigError(f"--qat must be at least 1 epoch (got {qat.epochs})")
    if not batches:
        raise DataError(f"QAT needs training data for the {tower} tower; the training set is empty")
    torch.manual_seed(qat.seed)
    work = copy.deepcopy(model).eval()  # the exported module shares storage with the model it came from
    reference = build_tower(model, tower).eval()
    program = tower_program(work, cfg, tower)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_qat_pt2e(program.module(), make_quantizer("static", qat=True))
    bad = head_nodes_annotated(prepared)
    if bad:
        raise ConfigError(f"{len(bad)} node(s) of the codebook head were annotated for int8 ({bad[:3]}); refusing")
    with torch.no_grad():  # warm-up: the observers see real ranges before the first step
        for batch in batches[: qat.warmup_batches]:
            prepared(*as_args(batch, tower))
    params = _trainable(prepared)
    if not params:
        raise ConfigError(f"the {tower} tower has no trainable weights outside the frozen head")
    opt = torch.optim.AdamW(params, lr=qat.lr, weight_decay=0.0)
    rng = np.random.default_rng(qat.seed)
    losses: list[float] = []
    bar = tqdm(total=qat.epochs * len(batches), desc=f"QAT {tower}", unit="batch", disable=not progress,
               leave=False)
    for _ in range(qat.epochs):
        for i in rng.permutation(len(batches)):
            args = as_args(batches[i], tower)
            with torch.no_grad():
                target = reference(*args)
            out = prepared(*args)
            out = out[0] if isinstance(out, (tuple, list)) else out
            loss = (1.0 - torch.nn.functional.cosine_similarity(out, target, dim=-1)).mean()
            if not torch.isfinite(loss):
                raise ConfigError(f"QAT of the {tower} tower diverged (loss {loss.item()}); try a lower learning rate")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.item()))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.5f}")
    bar.close()
    from torchao.quantization.pt2e import move_exported_model_to_eval

    move_exported_model_to_eval(prepared)
    for p in prepared.parameters():
        p.requires_grad_(False)
    samples = sum(int(as_args(b, tower)[0].shape[0]) for b in batches)
    first = float(np.mean(losses[: max(1, len(batches))]))
    last = float(np.mean(losses[-max(1, len(batches)):]))
    info = {"qat": {"epochs": qat.epochs, "lr": qat.lr, "batches": len(batches), "samples": samples,
                    "loss": "1 - cos(int8 fake-quant, fp32 student)", "first_epoch_loss": round(first, 6),
                    "last_epoch_loss": round(last, 6), "frozen": list(FROZEN)}}
    return Pt2eTower(tower=tower, scheme="static", prepared=prepared, qat_epochs=qat.epochs,
                     calibration_samples=samples, info=info)
