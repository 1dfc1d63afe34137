"""Captions: three audio styles and LLaVA-style image captions that name exactly what they should."""

from __future__ import annotations

import numpy as np
import pytest

from contracts.errors import DataError
from world.captions import audio_caption, image_caption, metadata_fields, scene_phrase
from world.cover_classes import FINE_CLASSES
from world.places import plausible_set, plausible_sources
from world.sources import SOURCES, sources_in_text


def _cover(**parts: float) -> np.ndarray:
    f = np.zeros(len(FINE_CLASSES))
    for name, v in parts.items():
        f[FINE_CLASSES.index(name)] = v
    return f / f.sum()


@pytest.mark.parametrize("style", ["metadata", "pengi", "qwen"])
def test_audio_captions_name_exactly_the_present_sources(style):
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(150):
        k = int(rng.integers(1, 5))
        present = [SOURCES[i] for i in rng.choice(len(SOURCES), size=k, replace=False)]
        text = audio_caption(present, style, rng, hour=int(rng.integers(24)), place="farm")
        named = sources_in_text(text)
        if style == "metadata":  # people under-describe: a title names the loudest one or two, never a wrong one
            assert present[0] in named and set(named) <= set(present), (present, text)
        else:
            assert named == [s for s in SOURCES if s in present], (present, text)
        seen.add(text)
    assert len(seen) > 100  # templates and synonyms vary the wording


def test_styles_look_like_their_models():
    rng = np.random.default_rng(3)
    pengi = audio_caption(["birdsong", "traffic"], "pengi", rng)
    assert pengi == pengi.lower() and " and " in pengi and not pengi.endswith(".")
    qwen = audio_caption(["birdsong", "traffic"], "qwen", rng)
    assert qwen.endswith(".") and len(qwen.split()) > len(pengi.split())
    meta = [audio_caption(["dogs"], "metadata", rng, place="town") for _ in range(20)]
    assert max(len(m.split()) for m in meta) <= 10


def test_image_captions_list_what_the_crop_implies():
    rng = np.random.default_rng(1)
    full = _cover(forest=0.5, crop=0.3, urban=0.15, road=0.05)
    centre = _cover(forest=1.0)
    for _ in range(60):
        for zoom, f in ((1, centre), (5, full)):
            weights = plausible_sources(f)
            text = image_caption(weights, f, rng, zoom=zoom)
            named = sources_in_text(text)
            assert named and set(named) <= set(plausible_set(weights)), text
            assert text.count(".") <= 2 and text.endswith(".")
            assert ("aerial" in text) or ("from above" in text)
    zoom1 = [len(sources_in_text(image_caption(plausible_sources(centre), centre, rng, zoom=1))) for _ in range(40)]
    zoom5 = [len(sources_in_text(image_caption(plausible_sources(full), full, rng, zoom=5))) for _ in range(40)]
    assert max(zoom1) <= 3 and np.mean(zoom5) > np.mean(zoom1)


def test_scene_phrase_and_metadata():
    rng = np.random.default_rng(2)
    assert "rail" in scene_phrase(_cover(crop=0.95, rail=0.05), rng, max_items=3) or "train" in scene_phrase(
        _cover(crop=0.95, rail=0.05), rng, max_items=3)
    meta = metadata_fields(["bells", "crowd"], rng, hour=11, month=4, place="town", audio_source="aporee")
    assert set(meta) == {"title", "tags", "description"}
    assert set(sources_in_text(meta["tags"])) == {"bells", "crowd"}
    assert "April" in meta["description"] and "an April" in meta["description"]


def test_bad_inputs():
    rng = np.random.default_rng(0)
    with pytest.raises(DataError):
        audio_caption([], "pengi", rng)
    with pytest.raises(DataError):
        audio_caption(["birdsong"], "whisper", rng)
    with pytest.raises(DataError):
        audio_caption(["unicorn"], "qwen", rng)
