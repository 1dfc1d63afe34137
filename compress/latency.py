"""The one latency timer: how long a no-argument call takes, and a batch-1 forward in ONNX Runtime or PyTorch.

``measure`` times a call per a ``Budget``: a warm-up, then timed calls until a time box has passed (never fewer
than a minimum nor more than a maximum number), and returns ``stats`` of them (p50, p90, mean, min, count).
``time_calls`` is its fixed-count form: on a small shared machine single timings are noisy, so a figure is the
minimum over a few rounds of the median of many runs (the least disturbed round), after one warm-up.
``ort_latency`` / ``torch_latency`` time a batch-1 forward at a given thread count (ORT session options;
torch.set_num_threads, restored afterwards).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from export.ort_session import onnx_session, session_feed


@dataclass(frozen=True)
class Budget:
    """How long one item is timed: a warm-up (``warmup_calls`` calls and ``warmup_s``, whichever is longer), then
    timed calls until ``run_s`` has passed, never fewer than ``min_runs`` nor more than ``max_runs``. A call so slow
    that ``min_runs`` would overrun the box (PyTorch on 2 threads of a busy 2-core machine took 0.5-1.7 s a call) is
    cut at ``hard_s`` seconds per phase once ``floor_runs`` calls are in; the stats then say ``time_boxed``."""

    warmup_calls: int = 5
    warmup_s: float = 0.3
    run_s: float = 2.0
    min_runs: int = 20
    max_runs: int = 5000
    hard_s: float = 6.0
    floor_runs: int = 5

    @classmethod
    def fixed(cls, runs: int, *, warmup: int = 0) -> Budget:
        """Exactly ``warmup`` untimed calls, then exactly ``runs`` timed ones, however long they take."""
        runs = max(1, runs)
        return cls(warmup_calls=warmup, warmup_s=0.0, run_s=0.0, min_runs=runs, max_runs=runs, hard_s=math.inf,
                   floor_runs=runs)


def stats(ms: list[float] | np.ndarray) -> dict[str, float]:
    """p50 (median), p90, mean, min and count of timings in milliseconds."""
    a = np.asarray(ms, dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    return {"n": int(a.size), "p50_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90)),
            "mean_ms": float(a.mean()), "min_ms": float(a.min())}


def measure(fn: Callable[[], Any], budget: Budget) -> dict[str, Any]:
    """Time ``fn`` per ``budget`` (see Budget); returns ``stats`` of the timed calls."""
    start = time.perf_counter()
    done = 0
    while done < budget.warmup_calls or time.perf_counter() - start < budget.warmup_s:
        fn()
        done += 1
        if done >= 1 and time.perf_counter() - start >= budget.hard_s:
            break
    times: list[float] = []
    start = time.perf_counter()
    boxed = False
    while len(times) < budget.max_runs and (len(times) < budget.min_runs or time.perf_counter() - start < budget.run_s):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
        if len(times) >= budget.floor_runs and time.perf_counter() - start >= budget.hard_s:
            boxed = len(times) < budget.min_runs
            break
    out: dict[str, Any] = stats(times)
    if boxed:
        out["time_boxed"] = True
    return out


def time_calls(fn: Callable[[], Any], *, warmup: int = 10, runs: int = 50, rounds: int = 3) -> float:
    """Milliseconds per call: min over ``rounds`` of the median of ``runs`` timed calls, after ``warmup`` calls."""
    medians = [measure(fn, Budget.fixed(runs, warmup=warmup if r == 0 else 0))["p50_ms"]
               for r in range(max(1, rounds))]
    return min(medians)


def ort_call(path: str | Path, feed: dict[str, np.ndarray], threads: int,
             outputs: list[str] | None = None) -> Callable[[], list[np.ndarray]]:
    """A no-argument batch run of an ONNX graph with ``threads`` intra-op threads, fed the inputs of ``feed`` the
    graph takes; returns ``outputs`` (all when None)."""
    sess = onnx_session(path, threads=threads)
    run_feed = session_feed(sess, feed)
    return lambda: sess.run(outputs, run_feed)


def ort_latency(path: str | Path, feed: dict[str, np.ndarray], threads: int, **kw: int) -> float:
    """ms per batch-1 run of an ONNX graph with ``threads`` intra-op threads."""
    return time_calls(ort_call(path, feed, threads), **kw)


def torch_latency(module: Any, args: tuple, threads: int, **kw: int) -> float:
    """ms per call of ``module(*args)`` under inference mode with ``threads`` torch threads."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            return time_calls(lambda: module(*args), **kw)
    finally:
        torch.set_num_threads(before)
