"""Towers at batch 1: image (+metadata), audio (log-mel in), text (token ids in), per model and runtime.

Each case is one call of the exported (or in-memory) tower, as the device or the build side makes it; the
embedding it returns is checked for shape and unit norm, and its cosine to PyTorch fp32 is recorded in extra_info.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from benchmarks.latency.plan import RUNTIMES, TOWERS
from benchmarks.latency.towers import Case, cosine

_CASES: dict[tuple[str, str, str], Any] = {}


def _case(models: dict[str, Any], tower: str, role: str, runtime: str, opts: Any) -> Case:
    key = (tower, role, runtime)
    if key not in _CASES:
        _CASES[key] = Case(models[role], tower, runtime, opts.work, opts.run)
    return _CASES[key]


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("role", ["teacher", "student"])
@pytest.mark.parametrize("tower", TOWERS)
def test_tower(benchmark: Any, bench_models: dict[str, Any], bench_options: Any, tower: str, role: str,
               runtime: str, threads: int) -> None:
    if tower not in bench_options.towers or runtime not in bench_options.runtimes:
        pytest.skip("not selected (--bench-towers / --bench-runtimes)")
    if role not in bench_models:
        pytest.skip(f"no {role} model for this preset")
    if tower == "text" and role == "student":
        pytest.skip("the student's text tower is the teacher's (copied and frozen)")
    case = _case(bench_models, tower, role, runtime, bench_options)
    reference = _case(bench_models, tower, role, "torch", bench_options).callable(1)()
    fn = case.callable(threads)
    benchmark.group = f"{tower} tower, {threads} thread(s)"
    benchmark.extra_info.update(model=role, runtime=runtime, trained=bench_models[role].trained,
                                file=str(case.file) if case.file else None, bytes=case.bytes)
    out = np.asarray(benchmark(fn))
    d = bench_models[role].cfg.model.codebook.dim
    assert out.shape == (1, d)
    assert np.isfinite(out).all() and abs(float(np.linalg.norm(out)) - 1.0) < 1e-3
    benchmark.extra_info["cosine_to_torch_fp32"] = cosine(out, reference)
    floor = 0.9999 if runtime in ("torch", "ort", "litert") else 0.9  # int8: a sanity floor, the gates live in export
    assert cosine(out, reference) > floor
