"""Tiles: deterministic, world-consistent across zooms and neighbours, real geography, fine structure, validated."""

from __future__ import annotations

import math

import numpy as np
import pytest

from contracts.errors import ConfigError, DataError
from world.cover_classes import CLASS_INDEX, CLASS_SOURCES, CLASS_WORDS, FINE_CLASSES, crop_box
from world.sources import SOURCES
from world.tiles import render_tile

LONDON = (51.5, -0.12)
IOWA = (42.0, -93.5)


def test_shapes_and_determinism():
    a = render_tile(*LONDON, px=96, ground_m=900.0, seed=0)
    b = render_tile(*LONDON, px=96, ground_m=900.0, seed=0)
    assert a.rgb.shape == (96, 96, 3) and a.rgb.dtype == np.uint8
    assert a.cover.shape == (96, 96) and a.cover.dtype == np.uint8 and int(a.cover.max()) < len(FINE_CLASSES)
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.cover, b.cover)
    assert abs(float(a.fractions().sum()) - 1.0) < 1e-6
    c = render_tile(*LONDON, px=96, ground_m=900.0, seed=1)
    assert not np.array_equal(a.rgb, c.rgb)


@pytest.mark.parametrize("point", [LONDON, IOWA, (36.6, -121.9)])
def test_zoom_crop_is_the_smaller_tile(point):
    """The zoom-1 centre crop of a 900 m tile shows exactly the ground of a 180 m tile at the same centre."""
    big = render_tile(*point, px=160, ground_m=900.0, seed=3)
    start, side = crop_box(160, 0.2)
    small = render_tile(*point, px=side, ground_m=900.0 * side / 160, seed=3)
    assert np.array_equal(big.cover[start:start + side, start:start + side], small.cover)
    diff = np.abs(big.rgb[start:start + side, start:start + side].astype(int) - small.rgb.astype(int))
    assert diff.max() <= 2


def test_resolution_changes_do_not_change_the_ground():
    fine = render_tile(*LONDON, px=160, ground_m=900.0)
    coarse = render_tile(*LONDON, px=80, ground_m=900.0)
    agree = np.mean(fine.cover[::2, ::2] == coarse.cover)  # the coarse pixel centres sit between fine ones
    assert agree > 0.8
    assert np.abs(fine.fractions() - coarse.fractions()).sum() < 0.15


def test_neighbouring_tiles_overlap_consistently():
    lat, lon = LONDON
    px, ground = 100, 900.0
    shift_px = 40
    dlon = shift_px * ground / px / (111_320.0 * math.cos(math.radians(lat)))
    a = render_tile(lat, lon, px, ground)
    b = render_tile(lat, lon + dlon, px, ground)
    assert np.mean(a.cover[:, shift_px:] == b.cover[:, :-shift_px]) > 0.97


def test_real_geography_shows_through():
    """Forest points look like forest, the corn belt like farmland, cities like towns, the sea like water."""
    forest = np.mean([render_tile(48.0 + d, 8.2, 64, 900.0).fractions()[CLASS_INDEX["forest"]]
                      for d in (0.0, 0.02, -0.03)])
    corn = np.mean([render_tile(lat, lon, 64, 900.0).fractions()[CLASS_INDEX["crop"]]
                    for lat, lon in ((42.0, -93.5), (40.0, -88.5), (41.6, -95.6))])
    city = render_tile(*LONDON, 96, 900.0).fractions()
    sahara = render_tile(23.0, 10.0, 64, 900.0).fractions()
    greenland = render_tile(72.0, -40.0, 64, 900.0).fractions()
    sea = render_tile(45.0, -30.0, 64, 900.0).fractions()
    assert forest > 0.7 and corn > 0.7
    assert city[CLASS_INDEX["urban"]] + city[CLASS_INDEX["road"]] > 0.6 and city[CLASS_INDEX["road"]] > 0.03
    assert sahara[CLASS_INDEX["bare"]] > 0.9 and greenland[CLASS_INDEX["snow"]] > 0.9
    assert sea[CLASS_INDEX["water"]] > 0.95


def test_fine_structure_classes_occur():
    seen = set()
    for lat, lon in (LONDON, IOWA, (36.6, -121.9), (25.9, -80.9), (40.0, -86.0), (52.3, 10.3), (47.4, 8.5)):
        seen |= {FINE_CLASSES[i] for i in np.unique(render_tile(lat, lon, 128, 900.0).cover)}
    assert {"water", "beach", "forest", "crop", "urban", "road", "wetland", "grass"} <= seen


def test_class_tables_are_complete():
    assert set(CLASS_SOURCES) == set(FINE_CLASSES) == set(CLASS_WORDS)
    assert all(set(v) <= set(SOURCES) and v for v in CLASS_SOURCES.values())


def test_crop_box_matches_centre_crop():
    assert crop_box(1500, 0.2) == (600, 300) and crop_box(320, 0.6) == (64, 192) and crop_box(320, 1.0) == (0, 320)


@pytest.mark.parametrize("kwargs, err", [
    ({"lat": 95.0, "lon": 0.0}, DataError), ({"lat": 0.0, "lon": -200.0}, DataError),
    ({"lat": 0.0, "lon": 0.0, "px": 0}, ConfigError), ({"lat": 0.0, "lon": 0.0, "ground_m": -5.0}, ConfigError),
])
def test_bad_inputs(kwargs, err):
    with pytest.raises(err):
        render_tile(**kwargs)
