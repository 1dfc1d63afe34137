"""Audio decoding for the front end: any cell or file -> mono float32 at the config rate, then crop or zero-pad.

Torch-free so the device can decode a recorded or bundled clip exactly as training did. soundfile (libsndfile)
reads WAV, FLAC, OGG Vorbis/Opus and MP3; scipy's polyphase filter resamples. The paper takes a random 10 s
window for training and we take the centre one for evaluation (deterministic); shorter clips are zero-padded
at the end.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from contracts.errors import DataError
from core.config import AudioConfig

AudioSource = bytes | bytearray | memoryview | str | Path


def _open_target(source: AudioSource) -> tuple[object, str]:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        if not data:
            raise ValueError("the audio bytes are empty")
        return io.BytesIO(data), "<bytes>"
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no audio file at {path}")
    if path.stat().st_size == 0:
        raise ValueError("the audio file is empty")
    return str(path), str(path)


def _to_mono(data: np.ndarray) -> np.ndarray:
    return data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0].astype(np.float32, copy=False)


def resample(wave: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling (anti-aliased) by the reduced ratio target/orig; float32 out."""
    if orig_rate == target_rate or wave.size == 0:
        return np.asarray(wave, dtype=np.float32)
    g = math.gcd(int(orig_rate), int(target_rate))
    out = resample_poly(np.asarray(wave, dtype=np.float64), int(target_rate) // g, int(orig_rate) // g)
    return out.astype(np.float32)


def _decode(source: AudioSource, window: int | None, rng: np.random.Generator | None,
            target_rate: int) -> tuple[np.ndarray, int]:
    """Decode (all, or only a window of ``window`` output samples when the file is longer) -> (mono, rate)."""
    target, _ = _open_target(source)
    with sf.SoundFile(target) as f:
        rate, total = int(f.samplerate), int(f.frames)
        need = None if window is None else int(math.ceil(window * rate / target_rate)) + 1
        data = None
        if need is not None and 0 < need < total and f.seekable():
            # Long recording: read only the window we keep (aporee clips run for minutes).
            start = _start(total, need, rng)
            f.seek(start)
            data = f.read(need, dtype="float32", always_2d=True)
            if data.shape[0] == 0:  # frame count was an estimate (some MP3s): fall back to a full read
                f.seek(0)
                data = None
        if data is None:
            data = f.read(dtype="float32", always_2d=True)
    if data.shape[0] == 0:
        raise ValueError("the audio has no samples")
    return _to_mono(data), rate


def _start(total: int, n: int, rng: np.random.Generator | None) -> int:
    if total <= n:
        return 0
    return (total - n) // 2 if rng is None else int(rng.integers(0, total - n + 1))


def crop_or_pad(wave: np.ndarray, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Exactly ``n`` samples: a window (random with ``rng``, else centred) of a longer wave; shorter: zero-padded."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.shape[-1] >= n:
        s = _start(wave.shape[-1], n, rng)
        return np.ascontiguousarray(wave[..., s:s + n])
    out = np.zeros(wave.shape[:-1] + (n,), dtype=np.float32)
    out[..., : wave.shape[-1]] = wave
    return out


def load_audio(source: AudioSource, cfg: AudioConfig, *, name_for_errors: object = None,
               field: str | None = "audio", sample: object = None) -> np.ndarray:
    """Decode a whole clip (bytes or a path; WAV/FLAC/OGG/MP3) to mono float32 at ``cfg.sample_rate``.

    A missing, empty or undecodable clip raises DataError naming ``name_for_errors`` (the file, or the cell),
    the field and the sample.
    """
    try:
        wave, rate = _decode(source, None, None, cfg.sample_rate)
    except (OSError, ValueError, RuntimeError, sf.SoundFileError) as exc:
        raise _error(exc, source, name_for_errors, field, sample) from None
    return resample(wave, rate, cfg.sample_rate)


def load_clip(source: AudioSource, cfg: AudioConfig, rng: np.random.Generator | None = None, *,
              name_for_errors: object = None, field: str | None = "audio", sample: object = None) -> np.ndarray:
    """The model's audio input: exactly ``cfg.n_samples`` mono float32 samples at ``cfg.sample_rate``.

    Random window with ``rng`` (training), centre window without (evaluation, deterministic); only that window
    is decoded from long files. Errors as ``load_audio``.
    """
    try:
        wave, rate = _decode(source, cfg.n_samples, rng, cfg.sample_rate)
    except (OSError, ValueError, RuntimeError, sf.SoundFileError) as exc:
        raise _error(exc, source, name_for_errors, field, sample) from None
    wave = resample(wave, rate, cfg.sample_rate)
    # The decoded window is a sample or two longer than needed: trim centrally so random and eval paths agree.
    return crop_or_pad(wave, cfg.n_samples, rng if wave.shape[0] > cfg.n_samples + 2 else None)


def load_query_clip(path: str | Path, cfg: AudioConfig, *, what: str = "query audio") -> np.ndarray:
    """A user's recording as the model's input: any WAV/FLAC/OGG/MP3 file of any rate, length and channel count,
    mixed down, resampled, and its centre window cropped (only that window is decoded) or zero-padded.

    A missing, empty, truncated or undecodable file, one with no channels, and one holding NaN or infinite samples
    are each a DataError naming the file; nothing is guessed.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} file not found", path=path)
    wave = load_clip(path, cfg, name_for_errors=path, field=what)
    if not np.isfinite(wave).all():
        bad = int((~np.isfinite(wave)).sum())
        raise DataError(f"the {what} holds {bad} NaN or infinite sample(s) in the window the model hears", path=path)
    return wave


def _error(exc: BaseException, source: AudioSource, name: object, field: str | None, sample: object) -> DataError:
    where = name if name is not None else (source if isinstance(source, str | Path) else "<audio bytes>")
    if isinstance(exc, FileNotFoundError):
        return DataError(f"audio file not found: {exc}", path=where, field=field, sample=sample)
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DataError(f"cannot decode audio ({detail})", path=where, field=field, sample=sample)
