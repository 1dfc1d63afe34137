"""``sat2sound gallery query --image FILE [--at LAT,LON --gsd M]``: one real tile image in, the nearest clips out.

Two kinds of file:

- a georeferenced raster (GeoTIFF, COG, JPEG 2000, MBTiles; any CRS): the model's view at ``--zoom`` is cut from it
  around ``--at`` (default: the scene's centre) with ``imagery.views``, and the GSD is the file's own unless
  ``--gsd`` says otherwise; a place outside the scene is an error, and so is a view that is less than
  ``MIN_VALID_FRACTION`` imagery;
- a plain picture (JPEG, PNG) with no georeference: it is one tile, so ``--gsd`` is required to know its ground
  extent; the zoom's ground square is cut from its centre (the whole picture when it is smaller) and resized.
  ``--at`` gives the model the place; without it the place is masked out.

Build side (rasterio, torch): the app on a phone never queries by file.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from contracts.errors import ConfigError, DataError


def _is_georeferenced(path: Path) -> bool:
    import rasterio

    from imagery.scene import gdal_errors

    if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"):
        aux = [path.with_suffix(s) for s in (".jgw", ".pgw", ".wld", ".aux.xml")]
        if not any(p.exists() for p in aux):
            return False
    if path.is_dir() or path.suffix.lower() == ".mbtiles":
        return True
    try:
        with rasterio.open(path) as ds:
            return ds.crs is not None
    except gdal_errors():
        return False


def query_view(embedder, path: str | Path, *, zoom: int, at: tuple[float, float] | None, gsd: float | None,
               bands: str | None = None) -> tuple[np.ndarray, float, tuple[float, float] | None, dict]:
    """(view uint8 (S, S, 3), GSD for the model, (lat, lon) or None, a description) of an image file."""
    from contracts.schema import ZOOM_CROP_FRACTION

    cfg = embedder.cfg
    p = Path(path)
    if not p.exists():
        raise DataError("image not found", path=p)
    if zoom not in cfg.image.zooms:
        raise ConfigError(f"--zoom must be one of {cfg.image.zooms}, got {zoom}")
    if gsd is not None and not (gsd > 0 and math.isfinite(gsd)):
        raise ConfigError(f"--gsd must be a positive number of metres per pixel, got {gsd}")
    ground = float(cfg.world.tile_ground_m) * float(ZOOM_CROP_FRACTION[cfg.image.imagery][zoom])
    size = cfg.image.image_size
    if _is_georeferenced(p):
        from imagery.tiles import MIN_VALID_FRACTION, ImagerySet

        with ImagerySet(p, bands) as imagery:
            b = imagery.bounds
            lat, lon = at if at is not None else ((b.south + b.north) / 2, (b.west + b.east) / 2)
            if not (b.west <= lon <= b.east and b.south <= lat <= b.north):
                raise ConfigError(f"--at {lat},{lon} lies outside the image {p} (it covers lon {b.west:.5f} to "
                                  f"{b.east:.5f}, lat {b.south:.5f} to {b.north:.5f})")
            view = imagery.view(lat, lon, ground, size)
            if view.valid_fraction < MIN_VALID_FRACTION:
                raise DataError(f"only {view.valid_fraction:.0%} of the {ground:.0f} m view around {lat:.5f},{lon:.5f}"
                                f" holds imagery: choose a place further inside the scene or a lower --zoom", path=p)
            return view.rgb, float(gsd if gsd is not None else view.gsd_m), (lat, lon), {
                "kind": "georeferenced", "view_ground_m": ground, "file_gsd_m": round(view.gsd_m, 4)}
    if bands is not None:
        raise ConfigError("--bands applies to georeferenced rasters; a plain picture is read as RGB")
    if gsd is None:
        raise ConfigError(f"{p} has no georeference, so its ground size is unknown: give --gsd M (metres per pixel) "
                          "and --at LAT,LON for the place")
    from contracts.image_prep import decode_image, resize

    rgb = decode_image(p)
    side = min(rgb.shape[0], rgb.shape[1], max(1, int(round(ground / gsd))))
    top, left = (rgb.shape[0] - side) // 2, (rgb.shape[1] - side) // 2
    crop = rgb[top:top + side, left:left + side]
    return resize(crop, size), float(gsd), at, {"kind": "picture", "view_ground_m": ground,
                                               "seen_ground_m": round(side * gsd, 1)}


@torch.no_grad()
def embed_image_file(embedder, path: str | Path, *, zoom: int = 1, at: tuple[float, float] | None = None,
                     gsd: float | None = None, bands: str | None = None, hour: float | None = None,
                     month: float | None = None, audio_source: str | None = None,
                     use_location: bool = True) -> tuple[np.ndarray, dict]:
    """(embedding (dim,), description) of a tile image file, with the metadata given (a missing place is masked)."""
    from contracts.image_prep import normalise

    cfg = embedder.cfg
    view, gsd_used, place, info = query_view(embedder, path, zoom=zoom, at=at, gsd=gsd, bands=bands)
    lat, lon = place if place is not None else (0.0, 0.0)
    meta = embedder.place_meta(lat, lon, hour=hour, month=month, audio_source=audio_source,
                               use_location=use_location and place is not None)
    image = torch.from_numpy(normalise(view, cfg.image.mean, cfg.image.std))[None]
    enc = embedder.model.encode_image(image, torch.tensor([zoom], dtype=torch.long),
                                      torch.tensor([gsd_used], dtype=torch.float32), meta)
    return enc.embedding[0].float().numpy(), {**info, "gsd_given_m": gsd_used, "place": place}
