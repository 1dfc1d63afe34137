"""Import a released Sat2Sound ``.ckpt`` into this project's self-describing checkpoint folder.

    sat2sound import bingmap_withmeta.ckpt --text-encoder ~/models/flan-t5-large --out runs/published-bingmap

Steps: read the file safely (``published.reader``); pick the architecture from its ``hyper_parameters`` (sat type ->
``published-<sat>-<meta|nometa>`` preset; codebook and text widths read off the tensors); check the FLAN-T5 folder
(a T5 encoder of the text query map's width; nothing is downloaded); map every tensor strictly
(``published.keymap``); write config + safetensors + manifest (the source file's SHA-256, the mapping version and
the key report) atomically. Any failure leaves no output folder behind.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from contracts.errors import CheckpointError
from core.checkpoint import save_checkpoint
from core.config import PUBLISHED_SATS, Sat2SoundConfig, get_preset, published_preset_name
from core.model import build_model
from core.model.text_backbone import get_text_backbone
from published.keymap import INITIALISED_IF_ABSENT, MAPPING_VERSION, fate
from published.reader import AuthorsCheckpoint, read_authors_checkpoint

log = logging.getLogger(__name__)
_FUSION_LAYER = re.compile(r"sat_encoder\.meta_fuser\.transformer_encoder\.layers\.(\d+)\.")


@dataclass
class ImportReport:
    source: str
    sha256: str
    mapping_version: str
    preset: str
    keys: int = 0
    mapped: int = 0
    derived: int = 0
    dropped: dict[str, str] = field(default_factory=dict)  # authors' key -> reason
    initialised: dict[str, float] = field(default_factory=dict)  # our key -> the value it was given
    filled: int = 0  # our tensors filled from the file
    ours: int = 0  # our tensors in all

    @property
    def coverage(self) -> float:
        """Share of the file's tensors that were mapped, checked or dropped on purpose (1.0 or the import fails)."""
        return (self.mapped + self.derived + len(self.dropped)) / max(self.keys, 1)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "coverage": self.coverage}


def architecture_for(ckpt: AuthorsCheckpoint, text_encoder: Path, base: Sat2SoundConfig | None = None
                     ) -> Sat2SoundConfig:
    """Our config for the file: the published preset of its sat type (or ``base``'s sizes), with the metadata
    fields, fusion depth, codebook and text widths the file itself has."""
    fields = ckpt.meta_fields
    with_meta = bool(fields)
    if base is None:
        base = get_preset(published_preset_name(ckpt.sat_family, with_meta))
    state = ckpt.state
    for key in ("fdt.space_dict", "fdt.txt_query_model.q_map.1.weight"):
        if key not in state:
            raise CheckpointError(f"{ckpt.path} has no {key!r}: not a Sat2Sound checkpoint (or not a shared-codebook "
                                  "one)")
    size, dim = state["fdt.space_dict"].shape
    for name, value in (("codebook_size", size), ("codebook_dim", dim), ("fc_dim", dim)):
        said = ckpt.hparams.get(name)
        if isinstance(said, int) and said != int(value):
            raise CheckpointError(f"{ckpt.path}: hyper_parameters.{name} is {said} but fdt.space_dict is "
                                  f"{tuple(state['fdt.space_dict'].shape)}: the file contradicts itself")
    text_width = int(state["fdt.txt_query_model.q_map.1.weight"].shape[1])
    layers = 1 + max((int(m.group(1)) for k in state if (m := _FUSION_LAYER.match(k))), default=-1)
    m = base.model
    return dataclasses.replace(
        base,
        image=dataclasses.replace(base.image, imagery=PUBLISHED_SATS[ckpt.sat_family][0]),
        model=dataclasses.replace(
            m,
            fusion=dataclasses.replace(m.fusion, use_metadata=with_meta, layers=layers if with_meta else 0,
                                       meta_fields=fields or m.fusion.meta_fields),
            codebook=dataclasses.replace(m.codebook, size=int(size), dim=int(dim)),
            text=dataclasses.replace(m.text, backbone="flan-t5", width=text_width,
                                     path=str(Path(text_encoder).expanduser().resolve())),
        ),
    )


def map_state(ckpt: AuthorsCheckpoint, model: torch.nn.Module, report: ImportReport) -> dict[str, torch.Tensor]:
    """Our state dict from the file's, strictly: unknown keys, unfilled tensors and wrong shapes are errors."""
    ours = model.state_dict()
    cfg_htsat = model.cfg.model.audio.htsat
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    problems: list[str] = []
    for key in sorted(ckpt.state):
        tensor = ckpt.state[key]
        f = fate(key, cfg_htsat)
        report.keys += 1
        if f.kind == "unknown" or (f.kind == "mapped" and f.target not in ours):
            unknown.append(key)
        elif f.kind == "dropped":
            report.dropped[key] = f.reason
        elif f.kind == "derived":
            mine = _buffer(model, f.target)
            # ours may keep the same numbers in another layout (a flat index)
            if mine is None or mine.numel() != tensor.numel() or not torch.equal(
                    mine.reshape(-1).to(tensor.dtype), tensor.reshape(-1)):
                problems.append(f"{key} differs from the buffer this architecture computes ({f.target})")
            report.derived += 1
        else:
            if f.target in out:
                raise AssertionError(f"two keys map to {f.target}")  # a rule table bug
            if tuple(tensor.shape) != tuple(ours[f.target].shape):
                problems.append(f"{key} has shape {tuple(tensor.shape)}, this architecture needs "
                                f"{tuple(ours[f.target].shape)} ({f.target})")
                continue
            out[f.target] = tensor.to(ours[f.target].dtype).clone()
            report.mapped += 1
    if unknown and len(unknown) > report.keys // 2:
        raise CheckpointError(f"{ckpt.path} is not a Sat2Sound checkpoint: {len(unknown)} of its {report.keys} "
                              f"tensors are unknown to the mapping (e.g. {unknown[0]})")
    if unknown:
        raise CheckpointError(f"{ckpt.path} has {len(unknown)} tensor(s) the mapping does not know (extra keys, or "
                              f"another architecture): {', '.join(unknown[:5])}")
    if problems:
        raise CheckpointError(f"{ckpt.path}: {len(problems)} tensor(s) do not fit: {'; '.join(problems[:3])}")
    missing = [k for k in ours if k not in out]
    for key in missing:
        if key in INITIALISED_IF_ABSENT:
            out[key] = torch.tensor(INITIALISED_IF_ABSENT[key], dtype=ours[key].dtype)
            report.initialised[key] = INITIALISED_IF_ABSENT[key]
    still = [k for k in missing if k not in report.initialised]
    if still:
        raise CheckpointError(f"{ckpt.path} lacks {len(still)} tensor(s) this architecture needs (missing keys): "
                              f"{', '.join(still[:5])}")
    report.filled, report.ours = len(ours) - len(report.initialised), len(ours)
    return out


def _buffer(model: torch.nn.Module, name: str) -> torch.Tensor | None:
    try:
        return model.get_buffer(name)
    except AttributeError:
        return None


def import_checkpoint(source: str | Path, text_encoder: str | Path, out: str | Path, *,
                      base: Sat2SoundConfig | None = None, force: bool = False) -> ImportReport:
    """Read ``source``, map it, and write our checkpoint folder at ``out``; returns the key report."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise CheckpointError(f"{out} already exists and is not empty; pass --force to replace it")
    ckpt = read_authors_checkpoint(source)
    cfg = architecture_for(ckpt, Path(text_encoder), base)
    text = get_text_backbone(cfg.model.text.backbone, cfg.model.text.max_tokens, cfg.model.text.path,
                             expected_width=cfg.model.text.width)
    report = ImportReport(source=str(ckpt.path), sha256=ckpt.sha256, mapping_version=MAPPING_VERSION,
                          preset=cfg.name)
    model = build_model(cfg, text)
    model.load_state_dict(map_state(ckpt, model, report), strict=True)
    model.eval()
    extra = {"import": {**report.to_dict(), "size_bytes": ckpt.size_bytes, "file": ckpt.path.name,
                        "hyper_parameters": {k: v for k, v in ckpt.hparams.items()
                                             if isinstance(v, str | int | float | bool) or v is None},
                        "training_state_entries": ckpt.other_entries}}
    save_checkpoint(model, cfg, out, extra=extra)
    log.info("imported %s: %d tensors mapped, %d checked, %d dropped (%s); wrote %s", ckpt.path.name, report.mapped,
             report.derived, len(report.dropped), ", ".join(sorted(set(report.dropped.values()))) or "none", out)
    return report
