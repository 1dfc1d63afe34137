"""Reading a world caption back: the sources it names and the land-cover classes its scene phrase names, from the
very phrases the caption generator (world.captions) uses for them.
"""

from __future__ import annotations

from world.cover_classes import CLASS_WORDS
from world.sources import SOURCE_PHRASES

# every phrase a caption may use for a source, longest first (so "car horns honking" wins over "honking")
_PHRASES = sorted(((p.lower(), s) for s, ps in SOURCE_PHRASES.items() for p in ps), key=lambda ps: -len(ps[0]))
# every scene word an image caption may use for a fine class, longest first ("a sandy beach" before "a beach")
_CLASS_PHRASES = sorted(((w.lower(), c) for c, ws in CLASS_WORDS.items() for w in ws), key=lambda wc: -len(wc[0]))


def read_back(caption: str) -> tuple[list[str], list[str]]:
    """(sources, scene classes) a world caption names. Source phrases are read (and blanked) first, so "running
    water" is the stream and never the class "water"; then the scene words of the classes, longest first."""
    text, sources, classes = (caption or "").lower(), [], []
    for phrases, found in ((_PHRASES, sources), (_CLASS_PHRASES, classes)):
        for phrase, name in phrases:
            if phrase in text:
                found.append(name)
                text = text.replace(phrase, " ")
    return sorted(set(sources)), sorted(set(classes))


def caption_sources(caption: str) -> list[str]:
    """The sources a world caption names, read back from the phrases the caption generator uses for them."""
    return read_back(caption)[0]


def caption_scene(caption: str) -> list[str]:
    """The land-cover classes (FINE_CLASSES names) an image caption's scene phrase names ("farmland with a road"
    -> ["crop", "road"]); [] when the caption describes no scene."""
    return read_back(caption)[1]


def caption_signature(caption: str, scene: bool = True) -> frozenset[str]:
    """What a caption says, up to wording and order: the sources it names plus (``scene``) "scene:<class>" for each
    class its scene phrase names."""
    return read_signature(read_back(caption), scene)


def read_signature(read: tuple[list[str], list[str]], scene: bool) -> frozenset[str]:
    """caption_signature of a caption already read back (read_back's (sources, classes))."""
    sources, classes = read
    return frozenset(sources) | (frozenset(f"scene:{c}" for c in classes) if scene else frozenset())

