"""What a latency pass covers: the towers, models, runtimes and sections, how long each item is timed, and the
targets its figures are checked against."""

from __future__ import annotations

from compress.latency import Budget
from contracts.artifacts import QUANTIZED_TOWERS, Tower

TOWERS: tuple[Tower, ...] = QUANTIZED_TOWERS
ROLES: tuple[str, ...] = ("teacher", "student")
RUNTIMES: tuple[str, ...] = ("torch", "torch-int8", "ort", "ort-int8", "litert", "litert-int8")
RUNTIME_LABELS = {"torch": "PyTorch fp32", "torch-int8": "PyTorch int8 (dynamic)", "ort": "ORT fp32",
                  "ort-int8": "ORT int8", "litert": "LiteRT fp32", "litert-int8": "LiteRT int8"}
SECTIONS: tuple[str, ...] = ("towers", "gallery", "e2e")

FULL = Budget()
QUICK = Budget(warmup_calls=2, warmup_s=0.02, run_s=0.15, min_runs=5, max_runs=300, hard_s=1.0, floor_runs=3)

DEFAULT_GALLERY_SIZES = (10_000, 100_000)
QUICK_GALLERY_SIZES = (1_000, 10_000)

# The paper's retrieval-based synthesis: 0.5 s on CPU with a 130M-parameter model.
PAPER_SYNTHESIS_MS = 500.0
PAPER_PARAMS = 130_000_000
# The product's latency and size targets.
TARGET_IMAGE_INT8_MS = 10.0  # int8 student image tower, p50 at 1 thread
TARGET_E2E_MS = 25.0  # location -> clip bytes, p50 (20x faster than the paper's 0.5 s)
TARGET_DEVICE_MB = 15.0  # model files for the device
