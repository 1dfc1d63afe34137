"""Towers at batch 1, per model, runtime and thread count: a callable per case, its embedding checked against
PyTorch fp32 of the same model (cosine), and the timing table with speed-ups over the teacher's PyTorch fp32."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks.latency.models import tower_file
from compress.latency import Budget, measure, ort_call

if TYPE_CHECKING:
    from benchmarks.latency.models import ModelEntry


def example_feed(cfg: Any, tower: str) -> dict[str, Any]:
    """Batch-1 inputs of a tower (torch tensors): every metadata field given, a real caption for text."""
    from export.towers import example_inputs

    return example_inputs(cfg, tower, 1, seed=1)


@contextlib.contextmanager
def quiet_torch_quantization() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def torch_int8_tower(model: Any, tower: str) -> Any:
    """The tower wrapper with every nn.Linear dynamically quantized to int8 (torch.ao.quantization.quantize_dynamic;
    deprecated in torch 2.13 but working). The codebook head has no Linear, so it stays float as in every int8 file."""
    import torch

    from export.towers import build_tower

    with quiet_torch_quantization():
        return torch.ao.quantization.quantize_dynamic(build_tower(model, tower), {torch.nn.Linear},
                                                      dtype=torch.qint8)


class Case:
    """One tower of one model on one runtime: builds a callable per thread count, and its embedding."""

    def __init__(self, entry: ModelEntry, tower: str, runtime: str, work: Path, run: Path | None):
        from export.towers import tower_inputs

        self.entry, self.tower, self.runtime = entry, tower, runtime
        self.feed = example_feed(entry.cfg, tower)
        self.names = tower_inputs(tower)
        self.file: Path | None = None
        self.file_source = "in memory"
        self._module: Any = None
        if runtime in ("torch", "torch-int8"):
            from export.towers import build_tower

            self._module = build_tower(entry.model, tower) if runtime == "torch" else torch_int8_tower(entry.model,
                                                                                                      tower)
            self.file_source = "in memory" if runtime == "torch" else "in memory (quantize_dynamic, Linear -> int8)"
        else:
            self.file, self.file_source = tower_file(entry, tower, runtime, work, run)

    @property
    def bytes(self) -> int | None:
        return self.file.stat().st_size if self.file is not None else None

    def callable(self, threads: int) -> Callable[[], np.ndarray]:
        """A no-argument call of the tower at batch 1 with ``threads`` threads, returning the (1, d) embedding."""
        if self._module is not None:
            import torch

            torch.set_num_threads(threads)
            args = tuple(self.feed[k] for k in self.names)
            module = self._module

            def run_torch() -> np.ndarray:
                with torch.inference_mode():
                    return module(*args).numpy()

            return run_torch
        from export.onnx_export import as_numpy_inputs

        feed = as_numpy_inputs(self.feed)
        if self.runtime.startswith("ort"):
            run_ort = ort_call(self.file, feed, threads, ["embedding"])
            return lambda: run_ort()[0]
        from mobile_app.runtime import LiteRtTower

        tower = LiteRtTower(self.file, self.names, "embedding", threads)
        return lambda: tower.run(feed)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def bench_towers(models: dict[str, ModelEntry], towers: tuple[str, ...], runtimes: tuple[str, ...],
                 threads: tuple[int, ...], budget: Budget, work: Path, run: Path | None,
                 progress: bool = True) -> list[dict[str, Any]]:
    """Time every (tower, model, runtime) at every thread count; a case that cannot run is recorded with why."""
    import torch
    from tqdm.auto import tqdm

    plan = [(t, role, rt) for t in towers for role in models for rt in runtimes
            if not (t == "text" and role == "student")]
    rows: list[dict[str, Any]] = []
    before = torch.get_num_threads()
    reference: dict[tuple[str, str], np.ndarray] = {}
    bar = tqdm(plan, desc="towers", unit="case", disable=not progress)
    try:
        for tower, role, runtime in bar:
            bar.set_postfix_str(f"{tower} {role} {runtime}")
            entry = models[role]
            row: dict[str, Any] = {"tower": tower, "role": role, "runtime": runtime, "trained": entry.trained,
                                   "threads": {}}
            try:
                case = Case(entry, tower, runtime, work, run)
                row.update(file=str(case.file) if case.file else None, file_source=case.file_source,
                           bytes=case.bytes)
                for t in threads:
                    fn = case.callable(t)
                    out = fn()
                    if runtime == "torch" and (role, tower) not in reference:
                        reference[(role, tower)] = out
                    if "cosine_to_torch_fp32" not in row and (role, tower) in reference:
                        row["cosine_to_torch_fp32"] = cosine(out, reference[(role, tower)])
                    row["threads"][str(t)] = measure(fn, budget)
                    del fn
            except Exception as exc:  # a runtime that is missing or fails here is a finding, not a crash
                row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
            rows.append(row)
    finally:
        torch.set_num_threads(before)
        bar.close()
    return rows


def speedups(rows: list[dict[str, Any]], threads: tuple[int, ...]) -> None:
    """Add to each row, per thread count, its speed-up over the teacher's PyTorch fp32 of the same tower."""
    base = {(r["tower"], t): r["threads"][t]["p50_ms"] for r in rows if r["role"] == "teacher"
            and r["runtime"] == "torch" and "error" not in r for t in r["threads"]}
    for r in rows:
        r["speedup_vs_teacher_torch_fp32"] = {
            str(t): round(base[(r["tower"], str(t))] / r["threads"][str(t)]["p50_ms"], 3)
            for t in threads if (r["tower"], str(t)) in base and str(t) in r.get("threads", {})}
