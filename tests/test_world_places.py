"""What can be heard where and when: cover, hour, month and hemisphere; what a recording holds; platform biases."""

from __future__ import annotations

import numpy as np
import pytest

from contracts.errors import DataError
from world.cover_classes import FINE_CLASSES
from world.places import (
    choose_audio_source,
    plausible_set,
    plausible_sources,
    sample_recording,
    season,
)


def cover(**parts: float) -> np.ndarray:
    f = np.zeros(len(FINE_CLASSES))
    for name, v in parts.items():
        f[FINE_CLASSES.index(name)] = v
    return f / f.sum()


FOREST = cover(forest=0.9, grass=0.1)
TOWN = cover(urban=0.8, road=0.15, grass=0.05)
FARM = cover(crop=0.9, road=0.02, grass=0.08)
MARSH = cover(wetland=0.6, water=0.3, grass=0.1)


def test_ground_implies_sources():
    assert {"birdsong", "leaves"} <= set(plausible_set(plausible_sources(FOREST)))
    town = plausible_set(plausible_sources(TOWN))
    assert {"traffic", "crowd"} <= set(town) and "tractor" not in town and "leaves" not in town
    assert "tractor" in plausible_set(plausible_sources(FARM))
    assert "train" in plausible_set(plausible_sources(cover(grass=0.95, rail=0.05)))
    assert "surf" in plausible_set(plausible_sources(cover(water=0.6, beach=0.1, grass=0.3)))


def test_night_has_fewer_birds_and_more_insects_in_summer():
    dawn = plausible_sources(FOREST, hour=6, month=6, lat=45.0)
    night = plausible_sources(FOREST, hour=2, month=6, lat=45.0)
    winter_night = plausible_sources(FOREST, hour=2, month=1, lat=45.0)
    assert night.get("birdsong", 0) < 0.2 * dawn["birdsong"]
    assert night["insects"] > dawn["insects"] and night["insects"] > 10 * winter_night.get("insects", 0.0)
    assert "owl" in plausible_set(night) and "owl" not in plausible_set(plausible_sources(FOREST, 13, 6, 45.0))


def test_hemispheres_and_seasons():
    assert season(1, 45.0) == "winter" and season(1, -35.0) == "summer" and season(1, 5.0) != "winter"
    north_jan = plausible_sources(FOREST, hour=22, month=1, lat=45.0)
    south_jan = plausible_sources(FOREST, hour=22, month=1, lat=-35.0)
    assert south_jan["insects"] > 10 * north_jan.get("insects", 0.0)
    spring_evening = plausible_sources(MARSH, hour=20, month=4, lat=45.0)
    assert "frogs" in plausible_set(spring_evening)
    assert plausible_sources(MARSH, hour=12, month=4, lat=45.0)["frogs"] < spring_evening["frogs"]
    assert "frogs" not in plausible_set(plausible_sources(MARSH, hour=20, month=12, lat=45.0))


def test_little_traffic_at_night_and_rain_only_when_raining():
    assert plausible_sources(TOWN, 3, 5, 45.0)["traffic"] < 0.5 * plausible_sources(TOWN, 8, 5, 45.0)["traffic"]
    assert "rain" not in plausible_set(plausible_sources(TOWN, 8, 5, 45.0))
    assert "rain" in plausible_set(plausible_sources(TOWN, 8, 5, 45.0, raining=True))


def test_smaller_crops_imply_fewer_sources():
    full = cover(forest=0.5, crop=0.3, urban=0.15, road=0.05)
    centre = cover(forest=1.0)
    assert set(plausible_set(plausible_sources(centre))) < set(plausible_set(plausible_sources(full)))


def test_recordings_hold_some_plausible_sources():
    rng = np.random.default_rng(0)
    weights = plausible_sources(cover(forest=0.5, crop=0.3, urban=0.15, road=0.05), hour=10, month=6, lat=45.0)
    allowed = set(plausible_set(weights))
    sizes = []
    for platform in ("yfcc", "inaturalist", "aporee", "freesound"):
        for _ in range(50):
            present, levels = sample_recording(weights, platform, rng)
            assert set(present) <= allowed and 1 <= len(present) <= 4 and len(set(present)) == len(present)
            assert levels[0] == 0.0 and all(v < 0 for v in levels[1:])
            sizes.append(len(present))
    assert max(sizes) >= 3 and np.mean(sizes) < len(allowed)  # one-to-many: a clip holds only some of them


def test_platform_biases():
    rng = np.random.default_rng(1)
    weights = plausible_sources(cover(forest=0.4, urban=0.4, road=0.1, grass=0.1), hour=10, month=6, lat=45.0)
    animals = {"birdsong", "insects", "frogs", "owl", "gulls"}

    def animal_share(platform: str) -> float:
        draws = [sample_recording(weights, platform, rng)[0] for _ in range(300)]
        return float(np.mean([any(s in animals for s in d) for d in draws]))

    assert animal_share("inaturalist") > animal_share("yfcc") + 0.2
    towns = [choose_audio_source(TOWN, rng) for _ in range(400)]
    woods = [choose_audio_source(FOREST, rng) for _ in range(400)]
    assert towns.count("yfcc") > woods.count("yfcc") and woods.count("inaturalist") > towns.count("inaturalist")


def test_bad_inputs():
    with pytest.raises(DataError):
        plausible_sources([0.5, 0.5])
    with pytest.raises(DataError):
        plausible_sources(FOREST, hour=3, month=13, lat=0.0)
    with pytest.raises(DataError):
        sample_recording(plausible_sources(FOREST), "youtube", np.random.default_rng(0))
