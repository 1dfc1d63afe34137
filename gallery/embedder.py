"""Build-side embedder: the teacher checkpoint turns captions, clips and places into gallery-space vectors.

Uses torch (core.model via core.checkpoint.load_checkpoint). The device never runs this: it embeds places with the
exported (student) image tower, which maps into the same space, and searches the gallery with gallery.query.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from contracts.errors import DataError
from contracts.schema import (
    AUDIO_SOURCES,
    CAPTION_SOURCES,
    META_FIELDS,
    normalise_audio_source,
    normalise_caption_source,
)
from core.checkpoint import load_checkpoint
from core.data.audio_frontend import LogMel, crop_or_pad, resample


class TeacherEmbedder:
    """Caption, clip and place embeddings (float32, L2-normalised) from a Sat2Sound teacher checkpoint."""

    def __init__(self, ckpt_dir: str | Path, *, batch_size: int = 64, threads: int | None = None):
        if threads:
            torch.set_num_threads(threads)
        loaded = load_checkpoint(ckpt_dir)
        self.ckpt_dir = Path(ckpt_dir)
        self.model = loaded.model.eval()
        self.cfg = loaded.cfg
        self.manifest = loaded.manifest
        self.fingerprint: str = loaded.fingerprint
        self.dim: int = int(self.cfg.model.codebook.dim)
        self.sample_rate: int = int(self.cfg.audio.sample_rate)
        self.batch_size = batch_size
        self._logmel = LogMel(self.cfg.audio).eval()

    # ------------------------------------------------------------------------------------------------ text

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(N, dim) caption embeddings."""
        texts = [str(t) for t in texts]
        if any(not t.strip() for t in texts):
            raise DataError("cannot embed an empty caption")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        backbone = self.model.text_backbone
        for i in range(0, len(texts), self.batch_size):
            chunk = texts[i : i + self.batch_size]
            out[i : i + len(chunk)] = self.model.encode_text(chunk).embedding.float().numpy()
            # The backbone caches token states per text for training; a gallery embeds each caption once, so
            # drop them again instead of holding every caption's states in memory.
            cache = getattr(backbone, "_cache", None)
            if isinstance(cache, dict):
                for t in chunk:
                    cache.pop(t, None)
        return out

    # ------------------------------------------------------------------------------------------------ audio

    def mel(self, waves: Sequence[np.ndarray], sample_rate: int | None = None) -> torch.Tensor:
        """Model input for waveforms: resample, centre crop / zero-pad to the config length, log-mel (B, T, mels)."""
        rate = self.sample_rate if sample_rate is None else int(sample_rate)
        batch = np.stack([crop_or_pad(resample(np.asarray(w, dtype=np.float32), rate, self.sample_rate),
                                      self.cfg.audio.n_samples) for w in waves])
        with torch.inference_mode():
            return self._logmel(torch.from_numpy(batch))

    @torch.inference_mode()
    def embed_audio(self, waves: Sequence[np.ndarray], sample_rate: int | None = None) -> np.ndarray:
        """(N, dim) clip embeddings of mono waveforms at ``sample_rate`` (default: the model's rate)."""
        out = np.zeros((len(waves), self.dim), dtype=np.float32)
        for i in range(0, len(waves), self.batch_size):
            chunk = waves[i : i + self.batch_size]
            if any(np.asarray(w).ndim != 1 or np.asarray(w).size == 0 for w in chunk):
                raise DataError("cannot embed audio that is not a non-empty mono waveform")
            out[i : i + len(chunk)] = self.model.encode_audio(self.mel(chunk, sample_rate)).embedding.float().numpy()
        return out

    # ------------------------------------------------------------------------------------------------ places

    @torch.inference_mode()
    def embed_place(self, lat: float, lon: float, zoom: int = 1, *, hour: float | None = None,
                    month: float | None = None, audio_source: str | None = None, caption_source: str | None = None,
                    use_location: bool = True) -> np.ndarray:
        """(dim,) embedding of the embedded world's tile at (lat, lon), seen at ``zoom``, with the metadata given.

        The tile is rendered by world.tiles.render_tile from the checkpoint's world config, cropped for the
        zoom and preprocessed as in training; unspecified metadata fields are masked (the model was trained with
        random fields dropped, so any subset is valid).
        """
        import io

        from PIL import Image

        from contracts.image_prep import decode_image, gsd_for, normalise, prepare_tile
        from world.tiles import render_tile

        cfg = self.cfg
        if zoom not in cfg.image.zooms:
            raise DataError(f"zoom {zoom} is not one of {', '.join(map(str, cfg.image.zooms))}")
        tile = render_tile(lat, lon, px=cfg.world.tile_px, ground_m=cfg.world.tile_ground_m, seed=cfg.world.seed)
        # The dataset stores tiles as JPEG: pass the tile through the same codec so the model sees what it trained on.
        buf = io.BytesIO()
        Image.fromarray(tile.rgb).save(buf, format="JPEG", quality=cfg.world.jpeg_quality)
        rgb = decode_image(buf.getvalue(), name_for_errors=f"tile at {lat},{lon}")
        img = prepare_tile(rgb, zoom, cfg.image.image_size, imagery=cfg.image.imagery)
        image = torch.from_numpy(normalise(img, cfg.image.mean, cfg.image.std))[None]
        meta = self.place_meta(lat, lon, hour=hour, month=month, audio_source=audio_source,
                               caption_source=caption_source, use_location=use_location)
        enc = self.model.encode_image(image, torch.tensor([zoom], dtype=torch.long),
                                      torch.tensor([gsd_for(cfg.image.imagery)], dtype=torch.float32), meta)
        return enc.embedding[0].float().numpy()

    @staticmethod
    def place_meta(lat: float, lon: float, *, hour: float | None = None, month: float | None = None,
                   audio_source: str | None = None, caption_source: str | None = None,
                   use_location: bool = True) -> dict[str, torch.Tensor]:
        """Metadata tensors (batch of 1) in the model's layout; a field not given is masked out."""
        try:
            a_src = normalise_audio_source(audio_source)
            c_src = normalise_caption_source(caption_source)
        except ValueError as exc:
            raise DataError(str(exc)) from None
        if hour is not None and not 0 <= hour <= 23:
            raise DataError(f"hour {hour} is not in 0-23", field="hour")
        if month is not None and not 1 <= month <= 12:
            raise DataError(f"month {month} is not in 1-12", field="month")
        given = {"latlon": use_location, "month": month is not None, "hour": hour is not None,
                 "audio_source": a_src is not None, "caption_source": c_src is not None}
        f = torch.float32
        return {
            "lat": torch.tensor([float(lat)], dtype=f), "lon": torch.tensor([float(lon)], dtype=f),
            "month": torch.tensor([float(month or 1)], dtype=f), "hour": torch.tensor([float(hour or 0)], dtype=f),
            "audio_source": torch.tensor([AUDIO_SOURCES.index(a_src) if a_src else 0], dtype=torch.long),
            "caption_source": torch.tensor([CAPTION_SOURCES.index(c_src) if c_src else 0], dtype=torch.long),
            "meta_mask": torch.tensor([[1.0 if given[k] else 0.0 for k in META_FIELDS]], dtype=f),
        }
