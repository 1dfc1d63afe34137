"""A user's own recording as a query: any format, rate, length and channel count works; every bad file is one clear
error (never a crash or a hang)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile as sf

from contracts.errors import DataError
from core.data.audio_io import load_query_clip


def _tone(rate: int, seconds: float, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 440.0 * t).astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


@pytest.mark.parametrize("rate, seconds, channels, fmt", [
    (96000, 3.0, 2, "WAV"),  # high rate, stereo
    (8000, 2.0, 1, "WAV"),  # telephone rate
    (44100, 7.0, 6, "FLAC"),  # 5.1 surround
    (48000, 2.5, 2, "OGG"),
    (44100, 2.0, 2, "MP3"),
    (22050, 1 / 22050, 1, "WAV"),  # a single sample
])
def test_any_rate_length_channels_and_format_gives_the_models_input(tiny_cfg, tmp_path, rate, seconds, channels, fmt):
    path = tmp_path / f"clip.{fmt.lower()}"
    sf.write(path, _tone(rate, seconds, channels), rate, format=fmt)
    wave = load_query_clip(path, tiny_cfg.audio)
    assert wave.shape == (tiny_cfg.audio.n_samples,) and wave.dtype == np.float32 and np.isfinite(wave).all()
    if seconds >= tiny_cfg.audio.clip_seconds:
        assert 0.1 < np.abs(wave).max() <= 1.0  # the tone survives resampling and mixing down
        spectrum = np.abs(np.fft.rfft(wave))
        peak_hz = np.argmax(spectrum) * tiny_cfg.audio.sample_rate / wave.size
        assert abs(peak_hz - 440.0) < 5.0


def test_a_ten_minute_clip_decodes_only_its_centre_window(tiny_cfg, tmp_path):
    path = tmp_path / "long.wav"
    rate = 16000
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as f:
        for minute in range(10):  # minute m holds the level 0.01 (m + 1); the centre (5:00) opens minute 6
            f.write(np.full(rate * 60, 0.01 * (minute + 1) if minute != 5 else 0.5, dtype=np.float32))
    start = time.perf_counter()
    wave = load_query_clip(path, tiny_cfg.audio)
    assert time.perf_counter() - start < 5.0
    assert wave.shape == (tiny_cfg.audio.n_samples,)
    # the window straddles 5:00: the end of minute 5 (0.05) and the start of minute 6 (0.5), nothing else
    assert np.median(wave[: wave.size // 4]) == pytest.approx(0.05, abs=2e-3)
    assert np.median(wave[-wave.size // 4:]) == pytest.approx(0.5, abs=2e-3)


def _bad_files(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("these are not the samples you are looking for\n" * 50)
    good = tmp_path / "good.wav"
    sf.write(good, _tone(16000, 3.0), 16000)
    truncated = tmp_path / "truncated.flac"
    sf.write(tmp_path / "whole.flac", _tone(16000, 3.0), 16000, format="FLAC")
    truncated.write_bytes((tmp_path / "whole.flac").read_bytes()[:60])
    header_only = tmp_path / "header_only.wav"
    header_only.write_bytes(good.read_bytes()[:44])
    nan = tmp_path / "nan.wav"
    wave = _tone(16000, 6.0)
    wave[1000:] = np.nan
    sf.write(nan, wave, 16000, subtype="FLOAT")
    return {"missing": (tmp_path / "nothing.ogg", "not found"), "empty": (empty, "empty"),
            "not audio": (text, "cannot decode"), "truncated": (truncated, "cannot decode"),
            "no samples": (header_only, "no samples"), "NaN samples": (nan, "NaN or infinite")}


@pytest.mark.parametrize("case", ["missing", "empty", "not audio", "truncated", "no samples", "NaN samples"])
def test_every_bad_file_is_one_clear_error_naming_it(tiny_cfg, tmp_path, case):
    path, message = _bad_files(tmp_path)[case]
    with pytest.raises(DataError, match=message) as exc:
        load_query_clip(path, tiny_cfg.audio)
    assert str(path) in str(exc.value)


def test_a_header_claiming_zero_channels_and_a_headerless_file_are_refused(tiny_cfg, tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, _tone(16000, 1.0), 16000, subtype="PCM_16")
    zero = tmp_path / "zero_channels.wav"
    data = bytearray(good.read_bytes())
    data[22:24] = (0).to_bytes(2, "little")  # the RIFF fmt chunk's channel count
    zero.write_bytes(bytes(data))
    raw = tmp_path / "raw.wav"
    raw.write_bytes(np.zeros(1000, dtype=np.int16).tobytes())  # samples but no RIFF header
    for path in (zero, raw):
        with pytest.raises(DataError, match="cannot decode"):
            load_query_clip(path, tiny_cfg.audio)
