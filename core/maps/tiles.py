"""Where map tiles come from: the embedded world's renderer, seen exactly as the model saw its training crops."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contracts.image_prep import resize
from contracts.schema import IMAGERY_GSD_M, ZOOM_CROP_FRACTION
from core.config import Sat2SoundConfig


@dataclass(frozen=True)
class TileView:
    image: np.ndarray  # (S, S, 3) uint8, the model's input view at a zoom
    cover: np.ndarray  # (h, w) uint8 fine land-cover classes of the crop (ground truth, world only)


class WorldTiles:
    """Renders the native crop a zoom level sees (same ground and pixel size as a dataset tile's centre crop)."""

    def __init__(self, cfg: Sat2SoundConfig, seed: int | None = None):
        self.cfg = cfg
        self.seed = cfg.world.seed if seed is None else seed
        self.imagery = cfg.image.imagery
        self.gsd = IMAGERY_GSD_M.get(self.imagery, cfg.world.nominal_gsd_m)

    def describe(self) -> dict:
        return {"source": "embedded-world", "seed": self.seed, "tile_px": self.cfg.world.tile_px,
                "tile_ground_m": self.cfg.world.tile_ground_m, "image_size": self.cfg.image.image_size}

    def view(self, lat: float, lon: float, zoom: int) -> TileView:
        from world.tiles import render_tile

        frac = ZOOM_CROP_FRACTION[self.imagery][zoom]
        side = max(4, int(round(self.cfg.world.tile_px * frac)))
        ground = self.cfg.world.tile_ground_m * side / self.cfg.world.tile_px
        tile = render_tile(lat, lon, px=side, ground_m=ground, seed=self.seed)
        return TileView(resize(tile.rgb, self.cfg.image.image_size), tile.cover)


def render_views(args: tuple[Sat2SoundConfig, int, np.ndarray, int]) -> tuple[np.ndarray, np.ndarray]:
    """Worker: render the views of many centres -> images (n,S,S,3) uint8 and cover fractions (n,K) float32."""
    from world.cover_classes import FINE_CLASSES, class_fractions

    cfg, seed, centres, zoom = args
    source = WorldTiles(cfg, seed)
    images, fractions = [], []
    for lat, lon in centres:
        v = source.view(float(lat), float(lon), zoom)
        images.append(v.image)
        fractions.append(class_fractions(v.cover) if v.cover.size else np.zeros(len(FINE_CLASSES), np.float32))
    return np.stack(images), np.stack(fractions).astype(np.float32)
