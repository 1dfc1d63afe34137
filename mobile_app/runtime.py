"""On-device inference of the image+metadata tower: ONNX Runtime (default) or LiteRT (``--runtime tflite``).

Both runtimes get the same named numpy inputs (mobile_app.place builds them) and return the (B, d) embedding.
Device-side: onnxruntime or ai_edge_litert, numpy. Never torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Protocol

import numpy as np

from mobile_app.errors import RuntimeChoiceError


def _runtime_module(name: str, missing: str) -> ModuleType:
    """Import an inference runtime (on first use: they are large, and a device has one or the other); a
    RuntimeChoiceError saying ``missing`` when it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise RuntimeChoiceError(missing) from None


@contextmanager
def _loading(runtime: str, path: Path) -> Iterator[None]:
    """Whatever ``runtime`` raises while loading ``path`` (each has its own exception types for an unreadable
    model) becomes one RuntimeChoiceError line naming the file."""
    try:
        yield
    except Exception as exc:
        raise RuntimeChoiceError(f"{runtime} cannot load {path.name}: {str(exc).splitlines()[0]}") from None


class Tower(Protocol):
    name: str

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray: ...


class OrtTower:
    """An ONNX Runtime session over an .ort (mobile format) or .onnx file."""

    name = "onnxruntime"

    def __init__(self, path: Path, inputs: tuple[str, ...], output: str = "embedding", threads: int = 2):
        ort = _runtime_module(
            "onnxruntime", "onnxruntime is not installed on this device; install it or run with --runtime tflite")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        with _loading("onnxruntime", path):
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        have = {i.name for i in self.session.get_inputs()}
        missing = [n for n in inputs if n not in have]
        if missing:
            raise RuntimeChoiceError(f"{path.name} lacks the inputs {missing} the bundle manifest names")
        self.inputs = tuple(i.name for i in self.session.get_inputs())
        self.output = output

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run([self.output], {k: inputs[k] for k in self.inputs})[0]


class LiteRtTower:
    """A LiteRT (TFLite) interpreter over the model's ``serving_default`` signature.

    Inputs are matched by name when the signature names them (the export names them like the ONNX graph), else by
    the tower's input order (converters call positional arguments args_0, args_1, ...). Each input is cast to the
    signature's dtype: LiteRT stores the int64 source indices as int32.
    """

    name = "litert"

    def __init__(self, path: Path, inputs: tuple[str, ...], output: str = "embedding", threads: int = 2):
        litert = _runtime_module("ai_edge_litert.interpreter",
                                 "LiteRT (ai_edge_litert) is not installed on this device; install ai-edge-litert or "
                                 "run with --runtime onnx")
        with _loading("LiteRT", path):
            self.interpreter = litert.Interpreter(model_path=str(path), num_threads=max(1, int(threads)))
            sigs = self.interpreter.get_signature_list()
            if not sigs:
                raise ValueError("the model has no signature")
            self.runner = self.interpreter.get_signature_runner(next(iter(sigs)))
            details = self.runner.get_input_details()
            out_names = list(self.runner.get_output_details())
        self.tower_inputs = tuple(inputs)
        if set(inputs) <= set(details):
            self.names = {n: n for n in inputs}
        elif len(details) == len(inputs):
            self.names = dict(zip(inputs, sorted(details, key=_positional_key)))
        else:
            raise RuntimeChoiceError(f"{path.name} has inputs {sorted(details)}, not the tower's {list(inputs)}")
        self.dtypes = {n: details[self.names[n]]["dtype"] for n in inputs}
        self.output = output if output in out_names else sorted(out_names, key=_positional_key)[0]

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        feed = {self.names[k]: np.ascontiguousarray(inputs[k], dtype=self.dtypes[k]) for k in self.tower_inputs}
        return np.asarray(self.runner(**feed)[self.output])


def _positional_key(name: str) -> tuple[int, str]:
    tail = name.rsplit("_", 1)[-1]
    return (int(tail), name) if tail.isdigit() else (1 << 30, name)


def open_tower(path: Path, runtime: str, inputs: tuple[str, ...], output: str = "embedding",
               threads: int = 2) -> Tower:
    """The tower for ``runtime`` ("onnx" | "tflite") over ``path``."""
    if runtime == "onnx":
        return OrtTower(path, inputs, output, threads)
    if runtime == "tflite":
        return LiteRtTower(path, inputs, output, threads)
    raise RuntimeChoiceError(f"unknown runtime {runtime!r}; expected onnx or tflite")
