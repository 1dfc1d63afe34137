"""Tile preprocessing: a native aerial tile -> the image tower's input, and the app's view read from MBTiles.

- ``prepare``: centre crop by zoom, bicubic resize, ImageNet normalisation (contracts.image_prep, what training and
  the build side do) on a tile of the embedded world (world.tiles.render_tile) at the preset's native size;
- ``view``: the device's path, mobile_app.place: stitch the tapped place's view from the bundle's MBTiles, resize,
  and build the tower's named inputs with the metadata fields.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from contracts.image_prep import normalise, prepare_tile
from contracts.schema import ZOOMS


@pytest.fixture(scope="module")
def tile(bench_cfg: Any) -> np.ndarray:
    from world.tiles import render_tile

    w = bench_cfg.world
    return render_tile(47.667, 9.175, px=w.tile_px, ground_m=w.tile_ground_m, seed=w.seed).rgb


@pytest.mark.parametrize("zoom", ZOOMS)
def test_prepare(benchmark: Any, bench_cfg: Any, tile: np.ndarray, zoom: int) -> None:
    img = bench_cfg.image
    benchmark.group = "tile preprocessing"

    def run() -> np.ndarray:
        return normalise(prepare_tile(tile, zoom, img.image_size, img.imagery), img.mean, img.std)

    x = benchmark(run)
    assert x.shape == (3, img.image_size, img.image_size) and x.dtype == np.float32


@pytest.fixture(scope="module")
def opened_map(bench_bundle: Any) -> Any:
    from mobile_app.bundle import load_bundle
    from mobile_app.mbtiles import MBTiles

    bundle = load_bundle(bench_bundle, verify=False)
    with MBTiles(bundle.map_path) as m:
        yield bundle, m


def test_view_from_mbtiles(benchmark: Any, opened_map: Any) -> None:
    from mobile_app.place import When, model_inputs, view_pixels

    bundle, m = opened_map
    rng = np.random.default_rng(0)
    r = bundle.region
    zooms = sorted(bundle.views)
    benchmark.group = "tile preprocessing"

    def tap() -> dict[str, np.ndarray]:
        lon, lat = rng.uniform(r.west, r.east), rng.uniform(r.south, r.north)
        zoom = int(rng.choice(zooms))
        pixels = view_pixels(m, bundle.views[zoom], lon, lat, bundle.model.image_size)
        return model_inputs(pixels, bundle.model, zoom=zoom, lon=lon, lat=lat, when=When(6, 8), audio_source="aporee")

    feed = benchmark(tap)
    s = bundle.model.image_size
    assert feed["image"].shape == (1, 3, s, s) and feed["meta_mask"].shape == (1, 5)
