"""Audio on the device side: clip decode (what playback costs per tap) and the numpy log-mel (an audio query).

The clip is a procedurally rendered soundscape (gallery.renderers, the demo gallery's renderer) of the preset's
clip length and sample rate, encoded in each gallery clip format.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from core.data.logmel_numpy import log_mel_numpy
from gallery.clips import decode_clip, encode_clip
from gallery.layout import CLIP_FORMATS


@pytest.fixture(scope="module")
def wave(bench_cfg: Any) -> np.ndarray:
    from gallery.captions import CaptionRecord, caption_id
    from gallery.renderers import ProceduralRenderer

    text = "birds singing in a quiet forest with leaves rustling in the wind"
    a = bench_cfg.audio
    return ProceduralRenderer(a.clip_seconds, a.sample_rate).render(CaptionRecord(caption_id(text), text)).wave


@pytest.mark.parametrize("fmt", CLIP_FORMATS)
def test_clip_decode(benchmark: Any, bench_cfg: Any, wave: np.ndarray, fmt: str) -> None:
    data = encode_clip(wave, bench_cfg.audio.sample_rate, fmt)
    benchmark.group = "clip decode"
    benchmark.extra_info.update(bytes=len(data), seconds=len(wave) / bench_cfg.audio.sample_rate)
    decoded, sr = benchmark(decode_clip, data, fmt)
    assert sr == bench_cfg.audio.sample_rate and abs(len(decoded) - len(wave)) <= 1


def test_logmel_numpy(benchmark: Any, bench_cfg: Any, wave: np.ndarray) -> None:
    a = bench_cfg.audio
    benchmark.group = "log-mel"
    mel = benchmark(log_mel_numpy, wave[: a.n_samples], a)
    assert mel.shape == (a.n_frames, a.n_mels) and np.isfinite(mel).all()


def test_logmel_torch(benchmark: Any, bench_cfg: Any, wave: np.ndarray) -> None:
    """The build side's torch front end on the same clip, for comparison (and the same numbers)."""
    import torch

    from core.data.audio_frontend import LogMel

    a = bench_cfg.audio
    torch.set_num_threads(1)  # one thread, like the numpy twin (restored by conftest)
    module = LogMel(a).eval()
    x = torch.from_numpy(np.ascontiguousarray(wave[None, : a.n_samples]))
    benchmark.group = "log-mel"

    def run() -> np.ndarray:
        with torch.inference_mode():
            return module(x)[0].numpy()

    mel = benchmark(run)
    assert mel.shape == (a.n_frames, a.n_mels)
    assert np.abs(mel - log_mel_numpy(wave[: a.n_samples], a)).max() < 0.1  # dB (float32 rounding floor)
