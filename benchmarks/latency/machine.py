"""The machine a latency pass ran on: CPU model and flags, cores, library versions and the load average."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

VERSIONED = ("torch", "onnxruntime", "ai-edge-litert", "litert-torch", "numpy", "usearch", "hnswlib", "onnx")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpuinfo_value(key: str) -> str | None:
    """The value of the first ``key: value`` line of /proc/cpuinfo (None where there is no such file or line)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(key):
                return line.split(":", 1)[1]
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform.processor() is empty on most Linux systems)."""
    name = _cpuinfo_value("model name")
    if name is not None:
        return name.strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    flags = _cpuinfo_value("flags")
    return set(flags.split()) if flags is not None else set()


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded to 0.01."""
    return [round(x, 2) for x in os.getloadavg()]


def machine_info(threads: tuple[int, ...]) -> dict[str, Any]:
    flags = cpu_flags()
    return {
        "cpu": cpu_model(), "arch": platform.machine(), "cores": os.cpu_count(), "threads_tested": list(threads),
        "avx2": "avx2" in flags, "vnni": sorted(flags & {"avx512_vnni", "avx_vnni", "amx_int8"}),
        "platform": platform.platform(), "python": platform.python_version(),
        "versions": {d: _version(d) for d in VERSIONED},
        "load_avg_start": load_average(),
    }
