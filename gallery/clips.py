"""Clip bytes: encode a waveform for storage, recognise a stored clip's format, decode it back.

Device-safe (numpy + soundfile, imported lazily): the app plays the bytes through its own audio stack and only needs
``sniff_format``; decoding here is for checks and for the CLI's ``--play-out``.
"""

from __future__ import annotations

import io

import numpy as np

from gallery.errors import GalleryError
from gallery.layout import CLIP_FORMATS

# soundfile (libsndfile) container + codec per format; 16-bit PCM for the lossless ones is plenty for playback.
_SOUNDFILE_FORMAT: dict[str, tuple[str, str]] = {
    "ogg": ("OGG", "VORBIS"),
    "flac": ("FLAC", "PCM_16"),
    "wav": ("WAV", "PCM_16"),
}


def sniff_format(data: bytes) -> str | None:
    """The clip format its first bytes announce (ogg, flac, wav), or None when they announce none of these."""
    if data[:4] == b"OggS":
        return "ogg"
    if data[:4] == b"fLaC":
        return "flac"
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    return None


def encode_clip(wave: np.ndarray, sample_rate: int, fmt: str = "ogg", compression: float | None = None) -> bytes:
    """Mono float waveform in [-1, 1] -> bytes in ``fmt``. The result is decoded once to prove it plays back."""
    return encode_and_decode(wave, sample_rate, fmt, compression)[0]


def encode_and_decode(wave: np.ndarray, sample_rate: int, fmt: str = "ogg",
                      compression: float | None = None) -> tuple[bytes, np.ndarray]:
    """(clip bytes, the waveform they decode to): what the listener will hear, e.g. after lossy Vorbis.

    compression: libsndfile's compression level in [0, 1] for ogg (Vorbis quality: 0 best/largest, 1 smallest;
    default about 0.5, ~54 KB per 10 s at 16 kHz, 0.9 ~36 KB) and flac (size only); ignored for wav.
    """
    if fmt not in CLIP_FORMATS:
        raise GalleryError(f"unknown clip format {fmt!r}; expected one of {', '.join(CLIP_FORMATS)}")
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1 or wave.size == 0:
        raise GalleryError(f"a clip must be a non-empty mono waveform, got shape {wave.shape}")
    if not np.all(np.isfinite(wave)):
        raise GalleryError("a clip waveform holds NaN or infinite samples")
    if compression is not None and not 0.0 <= compression <= 1.0:
        raise GalleryError(f"clip compression must be in [0, 1], got {compression}")
    import soundfile as sf

    container, subtype = _SOUNDFILE_FORMAT[fmt]
    extra = {"compression_level": float(compression)} if compression is not None and fmt != "wav" else {}
    buf = io.BytesIO()
    sf.write(buf, np.clip(wave, -1.0, 1.0), sample_rate, format=container, subtype=subtype, **extra)
    data = buf.getvalue()
    heard, _ = decode_clip(data, fmt)  # a clip that does not decode must never reach the gallery
    return data, heard


def decode_clip(data: bytes, fmt: str | None = None, *, name: str = "clip") -> tuple[np.ndarray, int]:
    """Bytes -> (mono float32 waveform, sample rate); what does not decode is a GalleryError naming ``name``."""
    found = sniff_format(data)
    if found is None or (fmt is not None and found != fmt):
        raise GalleryError(f"{name} is not a valid {fmt or 'audio'} clip (its header announces {found or 'nothing'})")
    import soundfile as sf

    try:
        wave, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile raises its own error types (and RuntimeError) for damaged streams
        detail = str(exc).split(": ", 1)[-1] if str(exc).startswith("Error opening") else str(exc)
        raise GalleryError(f"{name} does not decode as {found}: {detail}") from None
    if wave.shape[0] == 0:
        raise GalleryError(f"{name} decodes to no samples")
    return wave.mean(axis=1).astype(np.float32), int(sr)
