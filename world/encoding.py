"""Byte encodings of the world's media, made reproducible.

libsndfile gives every Ogg stream a random serial number, so the same clip encodes to different bytes on each run.
The serial is rewritten to a value derived from the sample id and each page's CRC recomputed; the Vorbis payload
is untouched. With that, a world built twice from one seed is identical byte for byte.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import soundfile as sf
from PIL import Image

from contracts.errors import DataError

_BITREV = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def _bitrev32(x: int) -> int:
    return int(f"{x:032b}"[::-1], 2)


def ogg_crc(page: bytes) -> int:
    """Ogg page CRC (polynomial 0x04C11DB7, no reflection, zero init, no final xor), via zlib's reflected CRC-32
    on bit-reversed bytes."""
    return _bitrev32(zlib.crc32(page.translate(_BITREV), 0xFFFFFFFF) ^ 0xFFFFFFFF)


def set_ogg_serial(data: bytes, serial: int) -> bytes:
    """The same Ogg stream with every page's serial number set to ``serial`` and CRCs recomputed."""
    out = bytearray(data)
    pos = 0
    serial_bytes = struct.pack("<I", serial & 0xFFFFFFFF)
    while pos < len(out):
        if out[pos:pos + 4] != b"OggS":
            raise DataError("not an Ogg stream (page capture pattern missing)", field="audio")
        nseg = out[pos + 26]
        body = sum(out[pos + 27:pos + 27 + nseg])
        end = pos + 27 + nseg + body
        out[pos + 14:pos + 18] = serial_bytes
        out[pos + 22:pos + 26] = b"\0\0\0\0"
        out[pos + 22:pos + 26] = struct.pack("<I", ogg_crc(bytes(out[pos:end])))
        pos = end
    return bytes(out)


def audio_bytes(wave: np.ndarray, sample_rate: int, fmt: str = "ogg", serial: int = 1) -> bytes:
    """Encode a mono float clip (in [-1, 1]) as OGG Vorbis, FLAC (16 bit) or WAV (16 bit), reproducibly."""
    buf = io.BytesIO()
    wave = np.clip(np.asarray(wave, np.float32), -1.0, 1.0)
    if fmt == "ogg":
        sf.write(buf, wave, int(sample_rate), format="OGG", subtype="VORBIS")
        return set_ogg_serial(buf.getvalue(), serial)
    if fmt == "flac":
        sf.write(buf, wave, int(sample_rate), format="FLAC", subtype="PCM_16")
        return buf.getvalue()
    if fmt == "wav":
        sf.write(buf, wave, int(sample_rate), format="WAV", subtype="PCM_16")
        return buf.getvalue()
    raise DataError(f"unknown audio format {fmt!r}; expected ogg, flac or wav", field="audio_format")


def jpeg_bytes(rgb: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buf, format="JPEG", quality=int(quality),
                                                                    optimize=False, subsampling=0)
    return buf.getvalue()
