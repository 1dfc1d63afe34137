"""CPU latency of one forward at batch 1, with ONNX Runtime and with PyTorch, at a given thread count.

On a small shared machine single timings are noisy, so a figure is the minimum over a few rounds of the median of
many runs (the least disturbed round), after a warm-up. The thread count is set per measurement (ORT session
options; torch.set_num_threads, restored afterwards).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def time_calls(fn: Callable[[], Any], *, warmup: int = 10, runs: int = 50, rounds: int = 3) -> float:
    """Milliseconds per call: min over ``rounds`` of the median of ``runs`` timed calls."""
    for _ in range(warmup):
        fn()
    medians = []
    for _ in range(max(1, rounds)):
        ts = []
        for _ in range(max(1, runs)):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        medians.append(float(np.median(ts)))
    return 1e3 * min(medians)


def ort_latency(path: str | Path, feed: dict[str, np.ndarray], threads: int, **kw: int) -> float:
    """ms per batch-1 run of an ONNX graph with ``threads`` intra-op threads."""
    from export.onnx_export import onnx_session

    sess = onnx_session(path, threads=threads)
    names = {i.name for i in sess.get_inputs()}
    feed = {k: v for k, v in feed.items() if k in names}
    return time_calls(lambda: sess.run(None, feed), **kw)


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
