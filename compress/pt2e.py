"""int8 in PyTorch with torchao's PT2E flow: quantize a tower once, then lower the same model to every target.

    program  = torch.export.export(tower wrapper, example)           (export/towers.py: the device contract)
    prepared = prepare_pt2e(program.module(), quantizer)              observers on linear / conv weights + inputs
    prepared(calibration batches)                                     the same batches as ORT's static int8
    convert_pt2e(prepared, fold_quantize=True)  -> ONNX (QDQ, ORT fuses it) and Core ML (constexpr int8 weights)
    convert_pt2e(prepared, fold_quantize=False) -> TFLite (litert-torch turns the Q/DQ pairs into int8 tensors)

The quantizer is litert-torch's ``PT2EQuantizer`` (int8 symmetric, per-channel weights), restricted to linear,
addmm and conv (``LinearConvQuantizer``): its default static list also quantizes add / mul / cat, which puts
quantize ops on the metadata's integer tensors (Core ML refuses: "scale fp32, input int32") and adds QDQ pairs
around every residual for no speed on a CPU without VNNI. Schemes:
- ``static``: int8 activations with ranges from calibration (HistogramObserver), int8 weights per channel.
- ``dynamic``: int8 weights per channel, activation ranges computed per call (PlaceholderObserver); lowered, the
  ONNX and Core ML graphs hold int8 weights with float math, TFLite dynamic-range FULLY_CONNECTED.

Kept in float (never annotated): the codebook head and the audio_wave tower's log-mel front end. litert's
``set_module_type`` matches the *string* ``torch.export`` stores in ``nn_module_stack`` (``FLOAT_MODULES``); a class
object silently matches nothing, so ``quantize_pt2e_tower`` checks that the head's nodes really were left alone.

A tower that does not go through ``torch.export`` is a ConfigError naming the op (``export_error``).
QAT lives in compress/qat.py; the per-target lowering in compress/pt2e_lower.py.
"""

from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from contracts.errors import ConfigError, DataError
from export.towers import build_tower, export_arguments, tower_inputs

if TYPE_CHECKING:
    from core.config import Sat2SoundConfig

PT2E_SCHEMES: tuple[str, ...] = ("static", "dynamic")
FLOAT_MODULES: tuple[str, ...] = ("core.model.codebook.CodebookHead", "core.data.audio_frontend.LogMel")
_INT_INPUTS = ("audio_source", "caption_source", "input_ids", "attention_mask")


def _quantizer_class() -> type:
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer

    class LinearConvQuantizer(PT2EQuantizer):
        """litert-torch's PT2EQuantizer with its static patterns cut to linear / addmm / conv (see the docstring)."""

        STATIC_OPS = ["linear", "addmm", "conv"]
        # its conv+bn QAT patterns fail under torch 2.13 (they pass a function to torch.export): conv alone
        STATIC_QAT_ONLY_OPS: list[str] = []

    return LinearConvQuantizer


def make_quantizer(scheme: str, *, qat: bool = False) -> Any:
    """The PT2E quantizer for ``scheme`` ("static" | "dynamic"), codebook head and log-mel left float."""
    from litert_torch.quantize.pt2e_quantizer import get_symmetric_quantization_config

    if scheme not in PT2E_SCHEMES:
        raise ConfigError(f"unknown PT2E scheme {scheme!r}; expected one of {', '.join(PT2E_SCHEMES)}")
    if qat and scheme != "static":
        raise ConfigError("QAT trains static int8 (fake-quantized activations); the dynamic scheme has no QAT")
    quantizer = _quantizer_class()()
    quantizer.set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=qat,
                                                           is_dynamic=scheme == "dynamic"))
    for name in FLOAT_MODULES:
        quantizer.set_module_type(name, None)
    return quantizer


def export_error(tower: str, exc: BaseException) -> ConfigError:
    """A one-line error naming the op that stopped ``torch.export`` (or the exporter's first line)."""
    while exc.__cause__ is not None and "torch.export" in str(exc):  # the ONNX exporter wraps the real error
        exc = exc.__cause__
    text = str(exc)
    found = re.findall(r"(?:aten|prims|torch\.ops)\.[\w.]+|(?<![\w.])[A-Za-z_]\w*::[\w.]+", text)
    op = found[0].rstrip(".") if found else None
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    what = f"the op {op}" if op else "an unsupported construct"
    return ConfigError(f"the {tower} tower does not export with torch.export ({what}): {first[:240]}; int8 "
                       "(PT2E and the ONNX lowering alike) needs a model that torch.export can trace")


def tower_program(model: torch.nn.Module, cfg: Sat2SoundConfig, tower: str, *, dynamic_batch: bool = True,
                  train: bool = False) -> torch.export.ExportedProgram:
    """``torch.export`` of the tower wrapper (batch 2 with a symbolic batch, or batch 1); ConfigError naming the op
    when it does not export."""
    wrapper = build_tower(model, tower)
    if train:
        wrapper.train()
    args, shapes = export_arguments(cfg, tower, dynamic_batch)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.export.export(wrapper, args, dynamic_shapes=shapes)
    except Exception as exc:  # torch.export raises many types (Unsupported, UserError, RuntimeError...)
        raise export_error(tower, exc) from exc


def as_args(batch: dict[str, Any], tower: str) -> tuple[torch.Tensor, ...]:
    """A feed (numpy or tensors, keyed by input name) as the wrapper's positional tensors, dtypes as exported."""
    out = []
    for name in tower_inputs(tower):
        value = batch[name]
        t = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(value))
        out.append(t.to(torch.int64) if name in _INT_INPUTS else t.to(torch.float32))
    return tuple(out)


def head_nodes_annotated(gm: torch.fx.GraphModule) -> list[str]:
    """Nodes inside a float-kept module that carry a quantization annotation (must be none)."""
    bad = []
    for node in gm.graph.nodes:
        stack = [str(t) for _, t in node.meta.get("nn_module_stack", {}).values()]
        if any(s in FLOAT_MODULES for s in stack) and "quantization_annotation" in node.meta:
            bad.append(node.name)
    return bad


@dataclass
class Pt2eTower:
    """One tower prepared (observers or fake-quant inserted) and calibrated or trained: what every target's
    converted model comes from (``converted``)."""

    tower: str
    scheme: str
    prepared: torch.fx.GraphModule
    qat_epochs: int = 0
    calibration_samples: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    _converted: dict[bool, torch.fx.GraphModule] = field(default_factory=dict, repr=False)

    def converted(self, fold: bool) -> torch.fx.GraphModule:
        """``convert_pt2e`` of a copy, once per fold setting (True for ONNX / Core ML, False for TFLite), cached.

        convert_pt2e always runs torchao's QAT conv+bn folding, which traces 48 pattern graphs with dynamo whenever
        the graph holds a batch norm (14 s a call on the tiny towers, most of a PTQ). After ``prepare_pt2e`` (no
        QAT) there is no fused conv+bn to fold, so PTQ skips that pass; QAT keeps it."""
        from torchao.quantization.pt2e import quantize_pt2e

        if fold not in self._converted:
            folding = quantize_pt2e._fold_conv_bn_qat
            if not self.qat_epochs:
                quantize_pt2e._fold_conv_bn_qat = lambda m: m
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self._converted[fold] = quantize_pt2e.convert_pt2e(copy.deepcopy(self.prepared),
                                                                       fold_quantize=fold)
            finally:
                quantize_pt2e._fold_conv_bn_qat = folding
        return self._converted[fold]

    def describe(self) -> dict[str, Any]:
        static = self.scheme == "static"
        return {"int8_method": "pt2e", "method": "torchao PT2E", "scheme": self.scheme, "qat_epochs": self.qat_epochs,
                "quantizer": "litert_torch PT2EQuantizer (linear / addmm / conv), torchao prepare_pt2e / "
                             + ("prepare_qat_pt2e" if self.qat_epochs else "convert_pt2e"),
                "weights": "int8 symmetric per channel",
                "activations": "int8 static per tensor (calibrated)" if static else "float (dynamic per call)",
                "float_kept": "codebook head" + (", log-mel front end" if self.tower == "audio_wave" else ""),
                "calibration_samples": self.calibration_samples, **self.info}


def calibrate(prepared: torch.fx.GraphModule, batches: Iterable[dict[str, Any]], tower: str, *,
              progress: bool = False) -> int:
    """Run calibration batches through the observers; returns the number of samples seen (DataError when 0)."""
    seen = 0
    with torch.no_grad():
        for batch in tqdm(list(batches), desc=f"calibrate {tower}", unit="batch", disable=not progress, leave=False):
            args = as_args(batch, tower)
            prepared(*args)
            seen += int(args[0].shape[0])
    if seen == 0:
        raise DataError(f"no calibration samples for the {tower} tower (the calibration set is empty)")
    return seen


def quantize_pt2e_tower(model: torch.nn.Module, cfg: Sat2SoundConfig, tower: str, scheme: str,
                        batches: list[dict[str, Any]], *, progress: bool = False) -> Pt2eTower:
    """PTQ of one tower: export, prepare with the quantizer, calibrate on ``batches`` (static; the dynamic scheme
    runs one batch to settle the graph), check the head stayed float."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    if not batches:
        raise DataError(f"no calibration samples for the {tower} tower (the calibration set is empty)")
    quantizer = make_quantizer(scheme)
    program = tower_program(model, cfg, tower)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_pt2e(program.module(), quantizer)
    bad = head_nodes_annotated(prepared)
    if bad:
        raise ConfigError(f"{len(bad)} node(s) of the codebook head were annotated for int8 ({bad[:3]}); refusing")
    seen = calibrate(prepared, batches if scheme == "static" else batches[:1], tower, progress=progress)
    return Pt2eTower(tower=tower, scheme=scheme, prepared=prepared, calibration_samples=seen)


def count_quantized(gm: torch.fx.GraphModule) -> int:
    """Quantize/dequantize nodes in a converted graph (0 means nothing was quantized)."""
    return sum(1 for n in gm.graph.nodes if n.op == "call_function" and "quantize" in str(n.target))
