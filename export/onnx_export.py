"""ONNX export of one tower (single file, no external data, named inputs/outputs, dynamic batch), and running it.

``torch.onnx.export(dynamo=True)`` with opset 20, dynamic shapes keyed by the forward's argument names, traced with
a batch-2 example so the batch dimension is not specialised to 1. Graphs run on ONNX Runtime's CPU provider through
``export.ort_session.onnx_session`` (the session every build-side check uses).

The dynamo exporter names intermediate values after the aten ops they come from, so a graph with an
``nn.Embedding`` already holds a value called ``embedding``; asking for an output of that name would produce an
invalid model (duplicate definition). The graph is therefore exported with automatic names and then renamed:
clashing intermediates move aside, the outputs take the tower's names.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from contracts.durability import naming
from contracts.faults import fault_point
from export.ort_session import onnx_session
from export.towers import build_tower, export_arguments, tower_inputs, tower_outputs

if TYPE_CHECKING:
    from core.config import Sat2SoundConfig

DEFAULT_OPSET = 20


def _rename_io(program: Any, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> None:
    """Give the graph's inputs/outputs the tower's names, moving aside intermediates that already use them."""
    graph = program.model.graph
    wanted = set(inputs) | set(outputs)
    io_values = {id(v) for v in list(graph.inputs) + list(graph.outputs)}
    for node in graph:
        for value in node.outputs:
            if value.name in wanted and id(value) not in io_values:
                value.name = f"{value.name}__inner"
    if len(graph.outputs) != len(outputs):
        raise RuntimeError(f"exported graph has {len(graph.outputs)} outputs, expected {len(outputs)} ({outputs})")
    for value, name in zip(graph.outputs, outputs):
        value.name = name
    for value, name in zip(graph.inputs, inputs):
        value.name = name


def export_onnx(model: torch.nn.Module, cfg: Sat2SoundConfig, tower: str, path: str | Path, *,
                dynamic_batch: bool = True, opset: int = DEFAULT_OPSET, module: torch.nn.Module | None = None) -> Path:
    """Export ``tower`` ("image" | "image_grounding" | "audio" | "audio_wave" | "text") of ``model`` to ``path``.

    One self-contained .onnx file (weights inside). With ``dynamic_batch`` the first axis of every input and
    output is the symbolic ``batch``; otherwise the graph is fixed to batch 1. Written atomically. ``module``: a
    ready module with the wrapper's positional inputs (a PT2E-converted tower, compress/pt2e.py) instead of the
    wrapper built from ``model``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = module if module is not None else build_tower(model, tower)
    names_in, names_out = tower_inputs(tower), tower_outputs(tower)
    args, dynamic_shapes = export_arguments(cfg, tower, dynamic_batch)
    # the exporter warns once per missing torchvision op (nms, roi_align...): not ops this model has
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(wrapper, args, None, dynamo=True, external_data=False, opset_version=opset,
                                    dynamic_shapes=dynamic_shapes, verbose=False)
    _rename_io(program, names_in, names_out)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with naming(path):  # a full disk names the tower file
            program.save(tmp, external_data=False)
        fault_point("export.file")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def as_numpy_inputs(inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)) for k, v in inputs.items()}


def run_onnx(path: str | Path, inputs: Mapping[str, Any], *, output: str = "embedding",
             session: Any | None = None) -> np.ndarray:
    """Run an exported tower with ONNX Runtime on named inputs (numpy arrays or tensors); returns ``output``."""
    sess = session or onnx_session(path)
    wanted = [i.name for i in sess.get_inputs()]
    feed = as_numpy_inputs({k: inputs[k] for k in wanted})
    return sess.run([output], feed)[0]
