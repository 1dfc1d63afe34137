"""Sound sources: every one synthesises, they differ acoustically, scenes mix them, captions name them back."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from contracts.errors import DataError
from world.sounds import render_scene, synthesize
from world.sources import SOURCE_PHRASES, SOURCES, sources_in_text

SR = 8000
SECONDS = 2.0


def _features(x: np.ndarray) -> np.ndarray:
    """Log band-energy profile (10 bands 60 Hz..Nyquist) + loudness-envelope statistics."""
    n, hop = 256, 128
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop] * np.hanning(n)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    f = np.fft.rfftfreq(n, 1 / SR)
    edges = np.geomspace(60, SR / 2, 11)
    bands = np.stack([power[:, (f >= a) & (f < b)].sum(1) for a, b in zip(edges[:-1], edges[1:])], 1) + 1e-10
    profile = np.log(bands.mean(0))
    env = np.log(bands.sum(1))
    env = env - env.mean()
    return np.concatenate([(profile - profile.max()) / 5.0, [env.std(), np.abs(np.diff(env)).mean()]])


def _centroid(x: np.ndarray) -> float:
    p = np.abs(np.fft.rfft(x)) ** 2
    return float((p * np.fft.rfftfreq(len(x), 1 / SR)).sum() / p.sum())


@pytest.fixture(scope="module")
def clips() -> dict[str, list[np.ndarray]]:
    return {s: [synthesize(s, SECONDS, SR, np.random.default_rng(k)) for k in range(2)] for s in SOURCES}


def test_at_least_fifteen_sources_with_phrases():
    assert len(SOURCES) >= 15 and len(set(SOURCES)) == len(SOURCES)
    assert set(SOURCE_PHRASES) == set(SOURCES) and all(len(v) >= 2 for v in SOURCE_PHRASES.values())


def test_every_source_is_finite_and_the_right_length(clips):
    for s, xs in clips.items():
        for x in xs:
            assert x.dtype == np.float32 and x.shape == (int(SR * SECONDS),), s
            assert np.all(np.isfinite(x)) and 0.05 < float(np.sqrt(np.mean(x ** 2))) < 0.2, s
    y = synthesize("birdsong", 1.5, 16000, np.random.default_rng(0))
    assert y.shape == (24000,)


def test_randomised_per_call_but_reproducible():
    a = synthesize("dogs", 1.0, SR, np.random.default_rng(5))
    b = synthesize("dogs", 1.0, SR, np.random.default_rng(5))
    c = synthesize("dogs", 1.0, SR, np.random.default_rng(6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_spectra_differ(clips):
    centroid = {s: np.mean([_centroid(x) for x in xs]) for s, xs in clips.items()}
    low = ["wind", "train", "tractor", "aircraft", "traffic", "owl", "bells"]
    high = ["birdsong", "insects", "leaves", "rain"]
    assert max(centroid[s] for s in low) < 700 < 2000 < min(centroid[s] for s in high)
    feats = {s: np.mean([_features(x) for x in xs], axis=0) for s, xs in clips.items()}
    closest = min(np.linalg.norm(feats[a] - feats[b]) for a, b in itertools.combinations(SOURCES, 2))
    assert closest > 0.4  # every pair of sources differs in band energies and/or loudness dynamics


def test_render_scene_mixes_in_range():
    rng = np.random.default_rng(0)
    x = render_scene(["traffic", "horns", "crowd"], SECONDS, SR, rng)
    assert x.shape == (int(SR * SECONDS),) and x.dtype == np.float32 and float(np.abs(x).max()) <= 0.89 + 1e-6
    loud = render_scene(["bells"], SECONDS, SR, np.random.default_rng(1), levels=[0.0])
    quiet_bells = render_scene(["bells", "wind"], SECONDS, SR, np.random.default_rng(1), levels=[-30.0, 0.0])
    assert _centroid(loud) > _centroid(quiet_bells)  # the wind dominates when the bells are 30 dB down
    room = render_scene(sources_in_text("a quiet room"), SECONDS, SR, np.random.default_rng(2))
    assert room.shape == x.shape and 0 < float(np.sqrt(np.mean(room ** 2))) < 0.01  # just the noise floor


@pytest.mark.parametrize("call", [
    lambda: synthesize("bagpipes", 1.0, SR, np.random.default_rng(0)),
    lambda: render_scene(["birdsong", "kazoo"], 1.0, SR, np.random.default_rng(0)),
    lambda: render_scene(["birdsong"], 1.0, SR, np.random.default_rng(0), levels=[0.0, -3.0]),
    lambda: synthesize("wind", 0.0, SR, np.random.default_rng(0)),
    lambda: synthesize("wind", 1.0, 100, np.random.default_rng(0)),
])
def test_bad_inputs(call):
    with pytest.raises(DataError):
        call()


def test_phrases_name_exactly_their_source():
    for s, phrases in SOURCE_PHRASES.items():
        for p in phrases:
            assert sources_in_text(p) == [s], (s, p)


def test_free_text():
    assert sources_in_text("A dog barks while cars pass by") == ["traffic", "dogs"]
    assert sources_in_text("car horns honking in a busy street") == ["horns"]
    assert sources_in_text("Seagulls over the sea, waves crashing; an owl at night") == ["surf", "gulls", "owl"]
    assert sources_in_text("From the location captured in this aerial view image, we can expect to hear the sounds "
                           "of birds chirping, leaves rustling, and the gentle flow of water from the stream.") == [
        "birdsong", "leaves", "stream"]
    assert sources_in_text("") == [] and sources_in_text("a quiet room") == []
