"""The preprocessing the device shares (log-mel, audio decode, tile prep, metadata) never imports torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TORCH_FREE = ["core.data", "core.data.logmel_numpy", "core.data.audio_io", "contracts.image_prep",
              "core.data.metadata", "core.data.layouts", "core.data.rows"]


def test_device_side_modules_do_not_import_torch():
    code = (
        "import sys\n"
        f"for name in {TORCH_FREE!r}:\n"
        "    __import__(name)\n"
        "import numpy as np\n"
        "from core.config import get_preset\n"
        "from core.data.logmel_numpy import log_mel_numpy\n"
        "from contracts.image_prep import prepare_tile, normalise\n"
        "cfg = get_preset('tiny')\n"
        "assert log_mel_numpy(np.zeros(cfg.audio.n_samples, np.float32), cfg.audio).shape == (126, 32)\n"
        "assert prepare_tile(np.zeros((100, 100, 3), np.uint8), 1, 32).shape == (32, 32, 3)\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "print('TORCH:', bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
