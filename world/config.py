"""The embedded world's settings (a field of every preset in ``core.config``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class WorldConfig:
    """The embedded world: a deterministic synthetic GeoSound built on the real MODIS land cover."""

    seed: int = 0
    n_samples: int = 6000
    tile_px: int = 320  # native tile side; zoom 5 sees all of it, zoom 1 the centre fifth
    tile_ground_m: float = 900.0  # ground side of the native tile (Bing: 1500 px x 0.6 m)
    nominal_gsd_m: float = 0.6  # GSD the tile stands for (Bing), used by the GSD positional encoding
    cell_deg: float = 2.0  # side of the geographic cells that splits are drawn by
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train / validation / test
    shard_size: int = 1000  # samples per Parquet shard
    audio_format: Literal["ogg", "flac", "wav"] = "ogg"
    jpeg_quality: int = 90
    # "real": each source is an excerpt of a real recording where one is installed (world.real_audio), else the
    # synthesiser; "synthetic": every source is synthesised
    audio: Literal["synthetic", "real"] = "synthetic"
