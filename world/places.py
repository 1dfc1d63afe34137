"""What can be heard at a place, and what a recording there actually holds.

A place's plausible sources follow from what covers the ground (forest -> birds, leaves; a road -> traffic ...),
then hour and month reshape them (dawn chorus, night insects and owls, little traffic at night, few birds and no
insects or frogs in winter - hemisphere-aware, frogs on spring evenings). A recording holds only SOME of them (one
to four), chosen with the biases of the platform it came from (iNaturalist: animals; aporee: ambience; yfcc: people
and traffic; freesound: anything, single events). That one-to-many gap is what makes the benchmark honest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from contracts.errors import DataError
from contracts.schema import AUDIO_SOURCES
from world.cover_classes import CLASS_SOURCES, FINE_CLASSES
from world.sources import SOURCES

PLAUSIBLE_THRESHOLD = 0.3

# Fraction of a tile at which a class speaks at full strength: a thin road or rail line is loud, a little grass is not.
_SATURATION: dict[str, float] = {
    "water": 0.12, "beach": 0.03, "wetland": 0.1, "forest": 0.25, "shrub": 0.3, "grass": 0.3, "crop": 0.3,
    "bare": 0.5, "snow": 0.5, "urban": 0.12, "road": 0.02, "rail": 0.004,
}
# How strongly a class implies each of its sources (CLASS_SOURCES lists the pairs; unlisted pairs default to 1).
_AFFINITY: dict[tuple[str, str], float] = {
    ("water", "stream"): 0.8, ("water", "gulls"): 0.5, ("water", "frogs"): 0.35,
    ("beach", "crowd"): 0.45,
    ("wetland", "birdsong"): 0.7, ("wetland", "insects"): 0.7,
    ("forest", "insects"): 0.6, ("forest", "owl"): 0.8, ("forest", "leaves"): 0.9,
    ("shrub", "birdsong"): 0.5, ("shrub", "wind"): 0.6,
    ("grass", "livestock"): 0.25, ("grass", "dogs"): 0.15, ("grass", "birdsong"): 0.8, ("grass", "insects"): 0.8,
    ("crop", "livestock"): 0.55, ("crop", "birdsong"): 0.6, ("crop", "insects"): 0.6, ("crop", "tractor"): 0.9,
    ("urban", "construction"): 0.45, ("urban", "dogs"): 0.5, ("urban", "bells"): 0.35, ("urban", "siren"): 0.45,
    ("urban", "horns"): 0.55, ("urban", "birdsong"): 0.35, ("urban", "traffic"): 0.9,
    ("road", "traffic"): 0.75, ("road", "horns"): 0.25, ("road", "siren"): 0.15,
}

# Which audio platforms favour which sources (multiplies the sampling weight of a source in a recording).
_PLATFORM_BIAS: dict[str, dict[str, float]] = {
    "inaturalist": {"birdsong": 5.0, "insects": 4.0, "frogs": 5.0, "owl": 5.0, "gulls": 4.0, "livestock": 1.5,
                    "dogs": 0.6},
    "aporee": {"wind": 2.5, "stream": 2.5, "surf": 2.5, "leaves": 2.0, "rain": 2.5, "traffic": 1.5, "crowd": 1.5,
               "bells": 2.0, "train": 1.5},
    "yfcc": {"crowd": 3.0, "traffic": 3.0, "horns": 2.5, "siren": 2.5, "dogs": 2.0, "bells": 1.5, "aircraft": 1.5,
             "construction": 1.5, "surf": 1.5},
    "freesound": {"horns": 2.0, "siren": 2.0, "dogs": 2.0, "bells": 2.0, "train": 2.0, "aircraft": 2.0,
                  "construction": 1.5, "rain": 1.5},
}
_PLATFORM_DEFAULT = {"inaturalist": 0.25, "aporee": 1.0, "yfcc": 0.7, "freesound": 1.0}
# Salience: people point microphones at events (a train, bells, a tractor) more than at the ever-present wind or
# background birds, so generic sources are less likely to be what a clip holds.
_SALIENCE: dict[str, float] = {"wind": 0.3, "birdsong": 0.45, "insects": 0.55, "leaves": 0.7, "traffic": 0.8}
_SALIENCE_DEFAULT = 1.2
# How many sources a clip of each platform holds: probabilities of 1, 2, 3, 4.
_N_SOURCES: dict[str, tuple[float, float, float, float]] = {
    "inaturalist": (0.5, 0.4, 0.1, 0.0),
    "aporee": (0.15, 0.35, 0.35, 0.15),
    "yfcc": (0.3, 0.45, 0.25, 0.0),
    "freesound": (0.55, 0.35, 0.1, 0.0),
}


def _check_fractions(cover_fractions: Sequence[float]) -> np.ndarray:
    f = np.asarray(cover_fractions, dtype=np.float64)
    if f.shape != (len(FINE_CLASSES),) or not np.all(np.isfinite(f)) or np.any(f < 0):
        raise DataError(f"cover fractions must be {len(FINE_CLASSES)} non-negative numbers in the order "
                        f"{', '.join(FINE_CLASSES)}", field="cover_fractions")
    return f


def season(month: int, lat: float) -> str:
    """'winter' | 'spring' | 'summer' | 'autumn' for the hemisphere of ``lat``; the tropics have no winter."""
    if not 1 <= int(month) <= 12:
        raise DataError(f"month must be 1-12, got {month}", field="month")
    north = {12: "winter", 1: "winter", 2: "winter", 3: "spring", 4: "spring", 5: "spring", 6: "summer",
             7: "summer", 8: "summer", 9: "autumn", 10: "autumn", 11: "autumn"}[int(month)]
    if lat < 0:
        north = {"winter": "summer", "summer": "winter", "spring": "autumn", "autumn": "spring"}[north]
    if abs(lat) < 23.5 and north == "winter":
        return "autumn"  # mild dry season rather than a winter that silences insects
    return north


def _hour_factor(source: str, hour: int) -> float:
    h = int(hour) % 24
    night = h >= 22 or h <= 4
    dawn = 5 <= h <= 8
    evening = 18 <= h <= 21
    day = 9 <= h <= 17
    table = {
        "birdsong": 1.5 if dawn else 0.9 if day else 0.7 if evening else 0.08,
        "insects": 1.2 if (night or evening) else 0.7,
        "owl": 1.0 if (night or h in (21, 5)) else 0.05,
        "frogs": 1.2 if (evening or night) else 0.35,
        "traffic": 0.35 if night else 1.2 if h in (7, 8, 16, 17, 18) else 0.9 if (day or dawn) else 0.75,
        "horns": 0.15 if night else 1.0,
        "siren": 0.8 if night else 1.0,
        "crowd": 0.25 if night else 1.0,
        "construction": 1.0 if 7 <= h <= 17 else 0.05,
        "tractor": 1.0 if 6 <= h <= 20 else 0.05,
        "livestock": 0.5 if night else 1.0,
        "bells": 1.0 if 7 <= h <= 20 else 0.1,
        "aircraft": 0.3 if night else 1.0,
        "dogs": 0.7 if night else 1.0,
        "gulls": 0.2 if night else 1.0,
        "train": 0.6 if night else 1.0,
    }
    return table.get(source, 1.0)


def _season_factor(source: str, name: str) -> float:
    table = {
        "birdsong": {"winter": 0.35, "spring": 1.2, "summer": 1.0, "autumn": 0.8},
        "insects": {"winter": 0.03, "spring": 0.6, "summer": 1.3, "autumn": 0.8},
        "frogs": {"winter": 0.03, "spring": 1.4, "summer": 1.0, "autumn": 0.4},
        "tractor": {"winter": 0.15, "spring": 1.2, "summer": 1.0, "autumn": 1.2},
        "leaves": {"winter": 0.5, "spring": 1.0, "summer": 1.0, "autumn": 1.1},
        "wind": {"winter": 1.3, "spring": 1.0, "summer": 0.8, "autumn": 1.1},
        "crowd": {"winter": 0.8, "spring": 1.0, "summer": 1.1, "autumn": 1.0},
        "livestock": {"winter": 0.6, "spring": 1.0, "summer": 1.0, "autumn": 1.0},
        "construction": {"winter": 0.8, "spring": 1.0, "summer": 1.0, "autumn": 1.0},
        "rain": {"winter": 1.2, "spring": 1.2, "summer": 0.8, "autumn": 1.2},
    }
    return table.get(source, {}).get(name, 1.0)


def plausible_sources(cover_fractions: Sequence[float], hour: int | None = None, month: int | None = None,
                      lat: float | None = None, *, raining: bool = False) -> dict[str, float]:
    """Weight (0..~1.5) of every source one could hear at a place, from its cover fractions (FINE_CLASSES order).

    Without hour/month it is what the ground alone implies (what an image caption can say); with them, the time of
    day and season reshape it (``lat`` picks the hemisphere, default north) and ``raining`` makes rain plausible
    (weather is not visible from above: the image alone never implies rain). Sources with weight 0 are left out.
    """
    f = _check_fractions(cover_fractions)
    strength: dict[str, float] = dict.fromkeys(SOURCES, 0.0)
    for k, name in enumerate(FINE_CLASSES):
        if f[k] <= 0:
            continue
        amount = min(1.0, f[k] / _SATURATION[name])
        for src in CLASS_SOURCES[name]:
            strength[src] = max(strength[src], amount * _AFFINITY.get((name, src), 1.0))
    fr = dict(zip(FINE_CLASSES, f))
    # Large open water is the sea or a big lake: waves more than a stream.
    if fr["water"] > 0.45:
        strength["surf"] = max(strength["surf"], 0.5 * min(1.0, fr["water"]))
        strength["stream"] *= 0.4
    # Ambient sources that are not tied to one class.
    open_land = fr["bare"] + fr["snow"] + fr["grass"] + fr["crop"] + fr["beach"] + fr["shrub"] + 0.5 * fr["water"]
    strength["wind"] = max(strength["wind"], 0.12 + 0.4 * min(1.0, open_land))
    strength["rain"] = 1.0 if raining else 0.05
    built = min(1.0, (fr["urban"] + 3.0 * fr["road"]) / 0.3)
    strength["aircraft"] = max(strength["aircraft"], 0.12 + 0.3 * built)
    if hour is not None or month is not None:
        lat_v = 45.0 if lat is None else float(lat)
        name = season(month, lat_v) if month is not None else None
        for src in SOURCES:
            w = strength[src]
            if hour is not None:
                w *= _hour_factor(src, hour)
            if name is not None:
                w *= _season_factor(src, name)
            strength[src] = w
    return {s: round(float(w), 4) for s, w in sorted(strength.items(), key=lambda kv: -kv[1]) if w > 0}


def plausible_set(weights: dict[str, float], threshold: float = PLAUSIBLE_THRESHOLD) -> list[str]:
    """Sources whose weight reaches the threshold, in SOURCES order."""
    return [s for s in SOURCES if weights.get(s, 0.0) >= threshold]


def choose_audio_source(cover_fractions: Sequence[float], rng: np.random.Generator) -> str:
    """Which platform a recording at this place came from: yfcc in towns, iNaturalist in nature, aporee and
    freesound anywhere (GeoSound's mix, roughly)."""
    fr = dict(zip(FINE_CLASSES, _check_fractions(cover_fractions)))
    built = min(1.0, fr["urban"] + 3.0 * fr["road"] + fr["beach"])
    nature = fr["forest"] + fr["wetland"] + fr["grass"] + fr["shrub"] + 0.5 * fr["water"]
    p = np.array([0.32 * (0.5 + 2.0 * built), 0.25 * (0.3 + 1.6 * nature), 0.18, 0.25])
    return AUDIO_SOURCES[int(rng.choice(len(AUDIO_SOURCES), p=p / p.sum()))]


def sample_recording(weights: dict[str, float], audio_source: str, rng: np.random.Generator
                     ) -> tuple[list[str], list[float]]:
    """The sources one clip holds (1-4 of the plausible ones, loudest first) and their levels in dB."""
    if audio_source not in AUDIO_SOURCES:
        raise DataError(f"unknown audio source {audio_source!r}; expected one of {', '.join(AUDIO_SOURCES)}",
                        field="source")
    candidates = plausible_set(weights) or ["wind"]
    bias = _PLATFORM_BIAS[audio_source]
    # the strongest sources of a place are the likeliest to be recorded (weight squared)
    p = np.array([max(weights.get(s, 0.0), 0.05) ** 2 * bias.get(s, _PLATFORM_DEFAULT[audio_source])
                  * _SALIENCE.get(s, _SALIENCE_DEFAULT) for s in candidates])
    counts = np.array(_N_SOURCES[audio_source])
    k = 1 + int(rng.choice(4, p=counts / counts.sum()))
    k = min(k, len(candidates))
    picked = rng.choice(len(candidates), size=k, replace=False, p=p / p.sum())
    present = [candidates[i] for i in picked]
    levels = [0.0] + sorted((-float(rng.uniform(3.0, 15.0)) for _ in present[1:]), reverse=True)
    return present, [round(v, 2) for v in levels]


def rain_probability(cover_fractions: Sequence[float], month: int, lat: float) -> float:
    """Chance that it rained during a recording: about 8% of clips, less in deserts and on ice, more in the wet
    season of the mid-latitudes."""
    fr = dict(zip(FINE_CLASSES, _check_fractions(cover_fractions)))
    dry = min(1.0, fr["bare"] + fr["snow"])
    wet_season = 1.3 if season(month, lat) in ("autumn", "winter", "spring") else 0.7
    return float(0.08 * wet_season * (1.0 - 0.85 * dry))


def recording_hour(audio_source: str, rng: np.random.Generator) -> int:
    """Local hour a clip was recorded: iNaturalist observers go out at dawn, yfcc is afternoon and evening."""
    hours = np.arange(24)
    day = np.exp(-0.5 * ((hours - 13.0) / 4.5) ** 2)
    dawn = np.exp(-0.5 * ((hours - 7.0) / 2.0) ** 2)
    evening = np.exp(-0.5 * ((hours - 19.0) / 2.5) ** 2)
    shape = {
        "inaturalist": 0.05 + 1.2 * dawn + 0.6 * day + 0.5 * evening,
        "aporee": 0.12 + day + 0.3 * dawn + 0.3 * evening,
        "yfcc": 0.08 + day + 0.8 * evening,
        "freesound": 0.2 + day + 0.3 * evening,
    }[audio_source]
    return int(rng.choice(24, p=shape / shape.sum()))


def recording_month(audio_source: str, lat: float, rng: np.random.Generator) -> int:
    """Month of the recording: iNaturalist favours the local spring and summer."""
    months = np.arange(1, 13)
    weights = np.ones(12)
    if audio_source == "inaturalist":
        weights = np.array([1.5 if season(m, lat) in ("spring", "summer") else 0.6 for m in months])
    return int(rng.choice(months, p=weights / weights.sum()))


@dataclass(frozen=True)
class Recording:
    """One recording at a place as the generator draws it: platform, month, hour, rain, the plausible source
    weights those imply, and the sources the clip holds (loudest first) with their levels in dB."""

    source: str
    month: int
    hour: int
    raining: bool
    weights: dict[str, float]
    present: list[str]
    levels: list[float]


def draw_recording(full: np.ndarray, lat: float, rng: np.random.Generator, source: str | None = None,
                   month: int | None = None, hour: int | None = None, cache: dict | None = None) -> Recording:
    """One recording at a place with full-tile cover fractions ``full``: platform, month, hour (each drawn only
    when not given), rain with its probability, then the sources and levels. With none given and
    rng = default_rng([seed, sample index, 1]) it is the recording world.build.make_sample stores.
    ``cache`` (one dict per place) keeps the plausible source weights per (hour, season, rain)."""
    source = choose_audio_source(full, rng) if source is None else source
    month = recording_month(source, lat, rng) if month is None else int(month)
    hour = recording_hour(source, rng) if hour is None else int(hour)
    raining = bool(rng.random() < rain_probability(full, month, lat))
    weights = recording_weights(full, lat, hour, month, raining, cache)
    present, levels = sample_recording(weights, source, rng)
    return Recording(source=source, month=month, hour=hour, raining=raining, weights=weights, present=present,
                     levels=levels)


def recording_weights(full: np.ndarray, lat: float, hour: int, month: int, raining: bool, cache: dict | None = None
                      ) -> dict[str, float]:
    """plausible_sources of the full tile at that hour, month and rain, memoised in ``cache`` when given."""
    key = (hour, season(month, lat), raining)  # the weights see the month only through the season
    weights = None if cache is None else cache.get(key)
    if weights is None:
        weights = plausible_sources(full, hour, month, lat, raining=raining)
        if cache is not None:
            cache[key] = weights
    return weights
