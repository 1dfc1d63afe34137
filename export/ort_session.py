"""ONNX Runtime on the CPU, the way every build-side check runs a graph: one session helper and an embedding run.

Quantization, calibration, the quality gate and the exporter's parity checks all open their graphs here, so each
of them sees the same runtime settings (CPU provider, a fixed number of threads, warnings off).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def onnx_session(path: str | Path | bytes, threads: int = 1) -> Any:
    """A CPU ORT session of a graph file (or serialized graph bytes); ``threads`` intra-op threads (1 keeps parity
    checks from crowding a small machine)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def session_feed(session: Any, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``feed`` restricted to the inputs the session's graph takes (a tower ignores the others)."""
    names = {i.name for i in session.get_inputs()}
    return {k: v for k, v in feed.items() if k in names}


def run_embeddings(path: str | Path, feeds: list[dict[str, np.ndarray]], output: str = "embedding") -> np.ndarray:
    """``output`` of a graph for every batch in ``feeds``, concatenated."""
    sess = onnx_session(path)
    return np.concatenate([sess.run([output], session_feed(sess, f))[0] for f in feeds])
