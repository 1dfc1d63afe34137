"""The sound sources of the embedded world and the words for them: the phrases captions use for each source, and
the keywords that find the sources a free caption names.
"""

from __future__ import annotations

import re

from contracts.errors import DataError

SOURCES: tuple[str, ...] = (
    "birdsong", "insects", "wind", "leaves", "surf", "stream", "rain", "traffic", "horns", "siren", "train",
    "construction", "tractor", "livestock", "crowd", "bells", "aircraft", "dogs", "frogs", "gulls", "owl",
)

# Caption phrases per source (used by the audio and image captions; every phrase names exactly its own source
# under sources_in_text, which a test checks).
SOURCE_PHRASES: dict[str, list[str]] = {
    "birdsong": ["birds chirping", "birdsong", "birds singing", "a chorus of songbirds", "bird calls",
                 "songbirds twittering"],
    "insects": ["crickets chirping", "insects buzzing", "the buzz of insects", "cicadas droning", "chirping crickets"],
    "wind": ["wind blowing", "the wind", "gusts of wind", "a breeze", "wind noise"],
    "leaves": ["leaves rustling", "rustling leaves", "the rustle of foliage", "branches swaying"],
    "surf": ["waves crashing", "the surf", "ocean waves", "waves breaking on the shore", "the roar of the sea"],
    "stream": ["water flowing", "a babbling brook", "a stream trickling", "a river flowing", "running water"],
    "rain": ["rain falling", "raindrops pattering", "rainfall", "a steady rain"],
    "traffic": ["cars passing by", "traffic noise", "vehicles driving by", "the hum of traffic", "a car driving past"],
    "horns": ["car horns honking", "a horn honking", "honking", "beeping horns"],
    "siren": ["a siren wailing", "sirens", "an ambulance siren", "a police siren"],
    "train": ["a train passing", "the rumble of a train", "train wheels on the tracks", "a locomotive"],
    "construction": ["construction noise", "a jackhammer", "drilling", "machinery at a construction site",
                     "power tools"],
    "tractor": ["a tractor engine", "farm machinery", "a combine harvester", "agricultural machinery"],
    "livestock": ["cows mooing", "sheep bleating", "farm animals", "cattle lowing", "a cow mooing"],
    "crowd": ["people talking", "a crowd chattering", "voices", "chatter", "people chatting"],
    "bells": ["church bells ringing", "a bell tolling", "bells chiming", "chimes"],
    "aircraft": ["an airplane flying overhead", "a plane passing", "jet engine noise", "an aircraft overhead"],
    "dogs": ["dogs barking", "a dog barking", "barking"],
    "frogs": ["frogs croaking", "a chorus of frogs", "croaking", "toads calling"],
    "gulls": ["seagulls calling", "gulls crying", "seabirds", "squawking gulls"],
    "owl": ["an owl hooting", "owls", "the hoot of an owl"],
}

# Keywords (regular expressions, case-insensitive, word-bounded at the start) that name each source in free text.
_KEYWORDS: dict[str, str] = {
    "birdsong": r"\bbird(?:s|song|songs|call|calls)?\b|\bsongbirds?\b|\btweet|\bwarbl|\bdawn chorus",
    "insects": r"\binsects?\b|\bcrickets?\b|\bcicadas?\b|\bgrasshoppers?\b|\bbees?\b|\bbuzz of insects",
    "wind": r"\bwind(?:s|y)?\b|\bbreezes?\b|\bgusts?\b|\bgusty\b",
    "leaves": r"\bleaves\b|\bleaf\b|\brustl|\bfoliage\b|\bbranches\b",
    "surf": r"\bwaves?\b|\bsurf\b|\bocean\b|\bsea\b|\bseashore\b",
    "stream": r"\bstreams?\b|\bbrooks?\b|\brivers?\b|\bcreeks?\b|\brunning water\b|\bwater flowing\b"
              r"|\bwater is flowing\b|\bflowing water\b|\btrickl|\bbabbl|\bwaterfalls?\b",
    "rain": r"\brain(?:s|ing|fall|drops?|y)?\b|\bdrizzl|\bdownpour",
    "traffic": r"\btraffic\b|\bcars?\b(?!\s+horns?)|\bvehicles?\b|\btrucks?\b|\bbus(?:es)?\b|\bmotorcycles?\b"
               r"|\bmotorbikes?\b|\bmotorway\b|\bhighway noise",
    "horns": r"\bhorns?\b|\bhonk|\bbeep",
    "siren": r"\bsirens?\b|\bambulance|\bpolice\b|\bfire engine",
    "train": r"\btrains?\b|\blocomotive|\brailway noise|\btram\b",
    "construction": r"\bconstruction\b|\bjackhammer|\bdrill|\bhammering\b|\bpower tools?\b",
    "tractor": r"\btractors?\b|\bfarm machinery\b|\bagricultural machinery\b|\bcombine harvester|\bharvester",
    "livestock": r"\bcows?\b|\bcattle\b|\bmoo|\bsheep\b|\bbleat|\blivestock\b|\bfarm animals?\b|\bgoats?\b",
    "crowd": r"\bpeople\b|\bcrowds?\b|\bchatter|\bvoices?\b|\btalking\b|\bconversations?\b|\bpedestrians?\b"
             r"|\bchildren playing",
    "bells": r"\bbells?\b|\bchimes?\b|\bchiming\b|\btolling\b",
    "aircraft": r"\bairplanes?\b|\baeroplanes?\b|\bplanes?\b|\baircraft\b|\bjets?\b|\bhelicopters?\b",
    "dogs": r"\bdogs?\b|\bbark(?:s|ing)\b|\bpupp(?:y|ies)\b",
    "frogs": r"\bfrogs?\b|\bcroak|\btoads?\b|\bribbit",
    "gulls": r"\bgulls?\b|\bseagulls?\b|\bseabirds?\b",
    "owl": r"\bowls?\b|\bhoot",
}
_KEYWORD_RES = {name: re.compile(rx, re.IGNORECASE) for name, rx in _KEYWORDS.items()}


def sources_in_text(text: str) -> list[str]:
    """The sources a free caption names (by keywords and synonyms), in SOURCES order."""
    return [name for name in SOURCES if _KEYWORD_RES[name].search(text or "")]


def check_source(name: str) -> str:
    if name not in SOURCES:
        raise DataError(f"unknown sound source {name!r}; known sources: {', '.join(SOURCES)}", field="source")
    return name

