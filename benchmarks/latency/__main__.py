"""``python -m benchmarks.latency``: the latency pass (benchmarks.latency.cli), user errors as one line."""

from __future__ import annotations

import sys

from benchmarks.latency.cli import main
from contracts.errors import run_guarded

if __name__ == "__main__":
    sys.exit(run_guarded("python -m benchmarks.latency", main))
