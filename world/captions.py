"""Captions in the styles the real datasets carry.

Audio captions come in three voices: human metadata (tags or a title, short), Pengi ("a bird is chirping and a car
passes by") and Qwen-Audio (a longer fluent sentence). Image captions imitate LLaVA-1.5 answering "What types of
sounds can we expect to hear from the location captured by this aerial view image? Describe in up to two
sentences." and list what the crop at that zoom could make one expect. Templates and synonyms vary the wording;
every phrase names its sources with words that world.sources.sources_in_text recognises, so a caption can be
turned back into the sources it names.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from contracts.errors import DataError
from contracts.schema import CAPTION_SOURCES
from world.cover_classes import CLASS_WORDS, FINE_CLASSES
from world.sources import SOURCE_PHRASES, SOURCES, check_source

# Pengi-style event clauses: short, present progressive or simple present.
_PENGI: dict[str, list[str]] = {
    "birdsong": ["a bird is chirping", "birds are singing", "birds chirp"],
    "insects": ["crickets are chirping", "insects are buzzing", "a cricket chirps"],
    "wind": ["wind is blowing", "the wind blows", "wind is blowing into the microphone"],
    "leaves": ["leaves are rustling", "leaves rustle"],
    "surf": ["waves are crashing", "ocean waves crash", "the surf is rolling in"],
    "stream": ["water is flowing", "a stream is trickling", "running water is heard"],
    "rain": ["rain is falling", "rain falls on a surface"],
    "traffic": ["a car passes by", "vehicles are driving by", "traffic is passing"],
    "horns": ["a car horn honks", "horns are honking"],
    "siren": ["a siren wails", "an ambulance siren is blaring"],
    "train": ["a train passes by", "a train is moving on the tracks"],
    "construction": ["a jackhammer is drilling", "construction machinery is operating", "a drill is whirring"],
    "tractor": ["a tractor engine is running", "farm machinery is running"],
    "livestock": ["a cow moos", "sheep are bleating", "cattle are lowing"],
    "crowd": ["people are talking", "a crowd is chattering", "people are chatting"],
    "bells": ["a bell rings", "church bells are ringing"],
    "aircraft": ["an airplane flies overhead", "a plane passes overhead", "a jet flies by"],
    "dogs": ["a dog barks", "dogs are barking"],
    "frogs": ["frogs are croaking", "a frog croaks"],
    "gulls": ["seagulls are calling", "a gull cries"],
    "owl": ["an owl hoots", "an owl is hooting"],
}
# Tag words and title nouns for human metadata.
_TAGS: dict[str, list[str]] = {
    "birdsong": ["birds", "birdsong", "songbirds"], "insects": ["insects", "crickets", "cicadas"],
    "wind": ["wind", "windy"], "leaves": ["leaves", "rustling"], "surf": ["waves", "sea", "surf"],
    "stream": ["stream", "river", "brook"], "rain": ["rain", "rainfall"], "traffic": ["traffic", "cars"],
    "horns": ["horns", "honking"], "siren": ["siren", "ambulance"], "train": ["train", "locomotive"],
    "construction": ["construction", "drilling", "jackhammer"], "tractor": ["tractor", "farm machinery"],
    "livestock": ["cows", "sheep", "livestock"], "crowd": ["people", "voices", "crowd"],
    "bells": ["bells", "church bells"], "aircraft": ["airplane", "aircraft", "plane"], "dogs": ["dogs", "barking"],
    "frogs": ["frogs", "croaking"], "gulls": ["seagulls", "gulls"], "owl": ["owl", "owls"],
}
_TITLE_NOUN: dict[str, list[str]] = {
    "birdsong": ["Birdsong", "Birds", "Songbirds"], "insects": ["Crickets", "Insects"],
    "wind": ["Wind", "Wind gusts"], "leaves": ["Rustling leaves"], "surf": ["Waves", "Surf"],
    "stream": ["Stream", "Brook", "River"], "rain": ["Rain", "Rainfall"], "traffic": ["Traffic", "Street traffic"],
    "horns": ["Honking horns", "Car horns"], "siren": ["Siren", "Ambulance siren"], "train": ["Train passing"],
    "construction": ["Construction site", "Jackhammer"], "tractor": ["Tractor", "Farm machinery"],
    "livestock": ["Cows", "Sheep"], "crowd": ["Crowd", "People talking"], "bells": ["Church bells", "Bells"],
    "aircraft": ["Airplane overhead", "Plane flyover"], "dogs": ["Dogs barking", "Barking dog"],
    "frogs": ["Frogs", "Frog chorus"], "gulls": ["Seagulls", "Gulls"], "owl": ["Owl", "Owl at night"],
}
# Place words safe to use in titles and descriptions (they name no sound source).
PLACE_WORDS: dict[str, list[str]] = {
    "water": ["lakeside", "waterfront"], "beach": ["beach", "coast"], "wetland": ["marsh", "wetland"],
    "forest": ["woods", "forest"], "shrub": ["scrubland", "heath"], "grass": ["meadow", "fields"],
    "crop": ["farm", "countryside"], "bare": ["desert", "badlands"], "snow": ["glacier", "snowfield"],
    "urban": ["city", "town", "neighbourhood"], "road": ["roadside", "street"], "rail": ["station", "railside"],
}
_GENERIC_TAGS = ["field recording", "ambience", "soundscape", "outdoor", "nature", "environment", "stereo",
                 "recording", "atmosphere"]
_TIME_WORDS = [(5, 8, "early morning"), (9, 11, "morning"), (12, 13, "midday"), (14, 17, "afternoon"),
               (18, 20, "evening"), (21, 23, "night"), (0, 4, "night")]


def time_of_day(hour: int) -> str:
    for lo, hi, word in _TIME_WORDS:
        if lo <= int(hour) % 24 <= hi:
            return word
    return "day"


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _join(items: Sequence[str], rng: np.random.Generator, oxford: bool | None = None) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    if len(items) == 2:
        return f"{items[0]} and {items[1]}"
    comma = "," if (oxford if oxford is not None else rng.random() < 0.6) else ""
    return ", ".join(items[:-1]) + f"{comma} and {items[-1]}"


def _check(sources: Sequence[str]) -> list[str]:
    if not sources:
        raise DataError("a caption needs at least one sound source", field="sources")
    return [check_source(s) for s in sources]


def audio_caption(present: Sequence[str], style: str, rng: np.random.Generator, *, hour: int | None = None,
                  place: str | None = None) -> str:
    """Caption of a clip holding ``present`` (loudest first) in ``style`` (metadata | pengi | qwen)."""
    present = _check(present)
    if style not in CAPTION_SOURCES:
        raise DataError(f"unknown caption style {style!r}; expected one of {', '.join(CAPTION_SOURCES)}",
                        field="audio_caption_source")
    if style == "pengi":
        clauses = [_pick(rng, _PENGI[s]) for s in present]
        return _join(clauses, rng, oxford=False)
    if style == "qwen":
        phrases = [_pick(rng, SOURCE_PHRASES[s]) for s in present]
        lead = phrases[0]
        rest = phrases[1:]
        when = f" in the {time_of_day(hour)}" if hour is not None and rng.random() < 0.3 else ""
        if not rest:
            templates = [
                "The audio features {lead}{when}, recorded outdoors with a quiet background.",
                "In this recording, {lead} can be heard clearly{when}.",
                "This is an outdoor recording of {lead}{when}, with little else in the background.",
                "The sound of {lead} dominates this clip{when}.",
            ]
            return _pick(rng, templates).format(lead=lead, when=when)
        templates = [
            "The audio features {lead}, accompanied by {rest} in the background{when}.",
            "In this recording, {lead} can be heard while {rest} can also be heard{when}.",
            "This outdoor recording captures {lead}{when}, with {rest} audible in the background.",
            "The soundscape is dominated by {lead}, and {rest} can be heard in the distance.",
        ]
        return _pick(rng, templates).format(lead=lead, rest=_join(rest, rng), when=when)
    # human metadata: tag lists or short titles
    if rng.random() < 0.5:
        tags = [_pick(rng, _TAGS[s]) for s in present]
        extra = list(rng.choice(_GENERIC_TAGS, size=int(rng.integers(0, 3)), replace=False))
        if place:
            extra.append(place)
        words = tags + extra
        order = rng.permutation(len(words))
        sep = _pick(rng, [", ", " ", ";"])
        return sep.join(words[i] for i in order)
    return title(present, rng, hour=hour, place=place)


def title(present: Sequence[str], rng: np.random.Generator, *, hour: int | None = None, place: str | None = None
          ) -> str:
    """A short human title, e.g. "Morning birdsong in the woods" or "Traffic and honking horns, city"."""
    present = _check(present)
    nouns = [_pick(rng, _TITLE_NOUN[s]) for s in present[:2]]
    head = nouns[0] if len(nouns) == 1 else f"{nouns[0]} and {nouns[1].lower()}"
    parts = []
    if hour is not None and rng.random() < 0.5:
        head = f"{time_of_day(hour).capitalize()} {head[0].lower()}{head[1:]}"
    parts.append(head)
    if place and rng.random() < 0.7:
        parts.append(_pick(rng, [f" in the {place}", f" at the {place}", f", {place}", f" near the {place}"]))
    return "".join(parts)


def metadata_fields(present: Sequence[str], rng: np.random.Generator, *, hour: int, month: int, place: str,
                    audio_source: str) -> dict[str, str]:
    """title / tags / description as freesound- or aporee-like uploads carry them."""
    present = _check(present)
    month_name = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
                  "November", "December")[int(month) - 1]
    tags = sorted({_pick(rng, _TAGS[s]) for s in present} | {place}
                  | set(rng.choice(_GENERIC_TAGS, size=2, replace=False)))
    heard = _join([_pick(rng, SOURCE_PHRASES[s]) for s in present], rng)
    device = _pick(rng, ["handheld recorder", "phone", "stereo microphones", "field recorder"])
    lead = {
        "aporee": "Soundmap recording",
        "freesound": "Recorded",
        "yfcc": "Video sound",
        "inaturalist": "Observation recording",
    }[audio_source]
    article = "an" if month_name[0] in "AEIOU" else "a"
    description = (f"{lead} in the {place} on {article} {month_name} {time_of_day(hour)} with a {device}. "
                   f"You can hear {heard}.")
    return {"title": title(present, rng, hour=hour, place=place), "tags": ",".join(tags), "description": description}


def place_word(cover_fractions: Sequence[float], rng: np.random.Generator) -> str:
    """A safe word for the dominant cover ("farm", "city", "woods" ...)."""
    f = np.asarray(cover_fractions, np.float64)
    order = np.argsort(-f)
    name = FINE_CLASSES[int(order[0])]
    if name in ("road", "rail") and len(order) > 1 and f[order[1]] > 0:
        name = FINE_CLASSES[int(order[1])]
    return _pick(rng, PLACE_WORDS[name])


def scene_phrase(cover_fractions: Sequence[float], rng: np.random.Generator, max_items: int = 2) -> str:
    """What the image shows, by its largest covers: "farmland with a road", "a forest and a lake"."""
    f = np.asarray(cover_fractions, np.float64)
    order = [int(i) for i in np.argsort(-f) if f[i] >= 0.04]
    # thin structures matter beyond their area
    for thin in ("road", "rail", "beach"):
        k = FINE_CLASSES.index(thin)
        if k not in order and f[k] >= 0.005:
            order.append(k)
    words = [_pick(rng, CLASS_WORDS[FINE_CLASSES[i]]) for i in order[:max_items]]
    if not words:
        return "the area"
    if len(words) == 1:
        return words[0]
    return f"{words[0]} {_pick(rng, ['with', 'and', 'next to'])} {words[1]}"


def image_caption(weights: dict[str, float], cover_fractions: Sequence[float], rng: np.random.Generator, *,
                  zoom: int = 5, threshold: float = 0.2) -> str:
    """LLaVA-style answer (at most two sentences) listing sounds one could expect from the crop's ground.

    ``weights`` are the crop's image-only plausible sources; the most plausible are listed first, at most 2 (zoom 1)
    to 4 (zoom 5), and a less likely one may be added as "possibly ...".
    """
    ranked = [s for s, w in sorted(weights.items(), key=lambda kv: -kv[1]) if w >= threshold and s in SOURCES]
    if not ranked:
        ranked = ["wind"]
    cap = {1: 2, 3: 3, 5: 4}.get(int(zoom), 3)
    # the strongest sources come first, with mild shuffling among similar weights
    noisy = sorted(ranked, key=lambda s: -(weights.get(s, 0.2) * float(rng.uniform(0.7, 1.3))))
    listed = noisy[: max(1, min(cap, len(noisy) - (1 if len(noisy) > cap else 0)))]
    extra = [s for s in noisy if s not in listed][:1] if rng.random() < 0.5 else []
    sounds = _join([_pick(rng, SOURCE_PHRASES[s]) for s in listed], rng)
    scene = scene_phrase(cover_fractions, rng)
    first = _pick(rng, [
        "From the location captured in this aerial view image, we can expect to hear the sounds of {sounds}.",
        "In this aerial view of {scene}, one could expect to hear {sounds}.",
        "The aerial image shows {scene}, so the soundscape would likely include {sounds}.",
        "Based on the aerial view, which shows {scene}, one might hear {sounds}.",
        "At this location, with {scene} visible from above, the expected sounds are {sounds}.",
    ]).format(sounds=sounds, scene=scene)
    if not extra:
        return first
    second = _pick(rng, [
        "There might also be {x}, depending on the time of day.",
        "Occasionally, {x} could be heard as well.",
        "Possibly, {x} may also be present.",
    ]).format(x=_pick(rng, SOURCE_PHRASES[extra[0]]))
    return f"{first} {second}"
