"""The resampling oracles. Image->caption: caption read-back (sources and scene words), the generator's inputs
recomputed as the build computes them, and sane retrieval on the tiny world. Image<->audio: the recording generator
replayed exactly, its exact likelihoods against its draws, and sane retrieval on the tiny world."""

from __future__ import annotations

import numpy as np
import pytest

from contracts.errors import ConfigError
from world.audio_oracle import (
    OrderedPicks,
    audio_resampling_oracle,
    full_tile_fractions,
    month_hour,
    place_mixture,
    recording_distribution,
    recording_signature,
)
from world.caption_oracle import caption_generator_inputs, caption_resampling_oracle
from world.caption_reading import caption_scene, caption_signature, caption_sources
from world.captions import image_caption
from world.cover_classes import FINE_CLASSES
from world.places import draw_recording, plausible_set, plausible_sources, sample_recording
from world.ranking import signature_likelihoods
from world.shards import read_split
from world.sources import SOURCES


def test_scene_words_are_read_back():
    caption = "In this aerial view of farmland with a road, one could hear running water and a tractor engine."
    assert caption_sources(caption) == ["stream", "tractor"]
    assert caption_scene(caption) == ["crop", "road"]  # "running water" is the stream, not the class "water"
    assert caption_scene("The aerial image shows a sandy beach and open water, so ...") == ["beach", "water"]
    assert caption_scene("we can expect to hear birds chirping.") == []
    assert caption_signature(caption) == frozenset({"stream", "tractor", "scene:crop", "scene:road"})
    assert caption_signature(caption, scene=False) == frozenset({"stream", "tractor"})


def test_generator_inputs_match_the_stored_ground_truth(tiny_world, tiny_cfg):
    w = tiny_cfg.world
    cols = read_split(tiny_world, "train", columns=["latitude", "longitude", "gt_cover_fractions", "gt_plausible_zl1",
                                                    "gt_plausible_zl3", "gt_plausible_zl5"]).to_pydict()
    for r in range(6):
        inputs = caption_generator_inputs(cols["latitude"][r], cols["longitude"][r], w.tile_px, w.tile_ground_m, w.seed)
        assert set(inputs) == {1, 3, 5}
        np.testing.assert_allclose(inputs[5][1], cols["gt_cover_fractions"][r], atol=1e-6)
        for z in (1, 3, 5):
            assert plausible_set(inputs[z][0]) == cols[f"gt_plausible_zl{z}"][r]
        # every caption drawn from these inputs names only sources the crop makes somewhat plausible
        caption = image_caption(*inputs[1], np.random.default_rng(r), zoom=1)
        assert set(caption_sources(caption)) <= set(inputs[1][0])


def test_signature_likelihoods_by_hand():
    a, b, c = frozenset({"owl"}), frozenset({"train", "scene:rail"}), frozenset({"train"})
    counts, scores = signature_likelihoods([[a, a, b, a], [b, b, b, b]], [a, b, c])
    np.testing.assert_allclose(counts, [[0.75, 0.25, 0.0], [0.0, 1.0, 0.0]])
    # the backoff: 1e-3 * mean Jaccard of the draws to the caption's signature
    np.testing.assert_allclose(scores - counts, 1e-3 * np.array([[0.75, 0.25, 0.125], [0.0, 1.0, 0.5]]))


def test_resampling_oracle_on_the_tiny_world(tiny_world):
    report = caption_resampling_oracle(tiny_world, split="train", k=16)  # the tiny test split is too small
    assert set(report) == {1, 3, 5}
    for r in report.values():
        assert r["n"] > 50 and r["k"] == 16
        for ranks in (r, r["ratio"], r["sources_only"], r["sources_only_ratio"]):
            assert 0.0 <= ranks["r10"] <= 1.0 and 1.0 <= ranks["median_rank"] <= r["n"]
        assert r["own_hit"] > 0.7  # a place's own draws usually hit its stored caption's signature
        assert r["own_p"] > 3 * r["other_p"]  # its own caption is far likelier than another place's
        assert r["median_rank"] < r["n"] / 2
    assert np.mean([r["r10"] for r in report.values()]) > 0.3  # well above chance (0.1)
    with pytest.raises(ConfigError):
        caption_resampling_oracle(tiny_world, split="train", k=0)


def test_cli_prints_the_resampling_oracle(tiny_world, capsys):
    from core.cli import main

    assert main(["data", "oracle", str(tiny_world), "--split", "train", "--resample", "4"]) == 0
    out = capsys.readouterr().out
    assert "resampling oracle (K=4" in out and "sources only" in out
    assert main(["data", "oracle", str(tiny_world), "--split", "train", "--resample", "-1"]) == 2


# ------------------------------------------------------------------------------------------ image<->audio oracle


def test_recordings_are_replayed_exactly(tiny_world, tiny_cfg):
    w = tiny_cfg.world
    cols = read_split(tiny_world, "train", columns=["sample_id", "latitude", "longitude", "source", "date",
                                                    "gt_present", "gt_levels_db", "gt_cover_fractions"]).to_pydict()
    for r in range(8):
        index = int(cols["sample_id"][r].rsplit("_", 1)[1])
        full = full_tile_fractions(cols["latitude"][r], cols["longitude"][r], w.tile_px, w.tile_ground_m, w.seed)
        np.testing.assert_allclose(full, cols["gt_cover_fractions"][r], atol=1e-6)
        # make_sample's rng: the first recording drawn with it is the stored one, platform, month and hour included
        got = draw_recording(full, cols["latitude"][r], np.random.default_rng([w.seed, index, 1]))
        assert (got.source, got.month, got.hour) == (cols["source"][r], *month_hour(cols["date"][r]))
        assert got.present == cols["gt_present"][r]
        np.testing.assert_allclose(got.levels, cols["gt_levels_db"][r])


def test_recording_signatures():
    assert recording_signature(["owl", "wind"]) == frozenset({"owl", "wind"})
    assert recording_signature(["owl", "wind"], "loudest") == frozenset({"owl", "wind", "loudest:owl"})
    assert recording_signature(["owl", "wind"], "order") == frozenset({"owl", "wind", "#0:owl", "#1:wind"})
    with pytest.raises(ConfigError):
        recording_signature(["owl"], "volume")


def test_exact_recording_likelihoods_match_the_generator():
    fracs = np.array([{"forest": 0.5, "grass": 0.45, "road": 0.05}.get(c, 0.0) for c in FINE_CLASSES])
    weights = plausible_sources(fracs, 6, 5, 45.0)
    q, sizes = recording_distribution(weights, "aporee")
    assert q.sum() == pytest.approx(1.0) and sizes.sum() == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    draws = [sample_recording(weights, "aporee", rng)[0] for _ in range(4000)]
    picks = OrderedPicks(draws)
    mixture = [(1.0, weights, "aporee")]
    rows = picks.probabilities(mixture)
    # every order of every drawn set gets its successive-sampling probability; the drawn orders hold nearly all mass
    assert rows.sum() == pytest.approx(1.0, abs=0.02)
    for kind in ("set", "loudest", "order"):
        lik = picks.likelihoods(rows, kind)
        sigs = [recording_signature(d, kind) for d in draws]
        for j in range(0, len(draws), 97):  # the share of draws with a signature matches its exact probability
            share = np.mean([s == sigs[j] for s in sigs])
            assert abs(share - lik[j]) < 4 * np.sqrt(lik[j] * (1 - lik[j]) / len(draws)) + 1e-3
    # the full mixture (platform, season, hour, rain drawn) is a probability distribution too
    full_mix = place_mixture(fracs, 45.0)
    assert sum(p for p, _, _ in full_mix) == pytest.approx(1.0)
    assert len(place_mixture(fracs, 45.0, "yfcc", 7, 18)) == 2  # dry and raining
    with pytest.raises(ConfigError):
        place_mixture(fracs, 45.0, "yfcc")
    assert set(SOURCES) >= {s for _, w, _ in full_mix for s in w}


def test_audio_resampling_oracle_on_the_tiny_world(tiny_world):
    report = audio_resampling_oracle(tiny_world, split="train", k=32, signatures=("set", "loudest"))
    n = report["n"]
    assert n > 50 and report["k"] == 32 and set(report) == {"n", "k", "split", "sampled", "exact"}
    for how in ("sampled", "exact"):
        assert set(report[how]) == {"meta", "no_meta"}
        for by_sig in report[how].values():
            assert set(by_sig) == {"set", "loudest"}
            for r in by_sig.values():
                for d in ("i2a", "i2a_ratio", "a2i"):
                    assert 0.0 <= r[d]["r10"] <= 1.0 and 1.0 <= r[d]["median_rank"] <= n
                assert r["own_p"] > 1.5 * r["other_p"]  # a place's own recording is likelier than another's
    exact = report["exact"]["meta"]["set"]
    assert exact["own_hit"] == 1.0  # a place's own recording is always possible there
    assert exact["own_p"] > 4 * exact["other_p"]
    assert exact["i2a_ratio"]["r10"] > 0.5 and exact["a2i"]["r10"] > 0.5  # far above chance (0.1)
    assert exact["own_p"] > report["exact"]["no_meta"]["set"]["own_p"]  # metadata sharpens the likelihood
    # the draws estimate the exact likelihoods
    for meta in ("meta", "no_meta"):
        assert report["sampled"][meta]["set"]["own_p"] == pytest.approx(report["exact"][meta]["set"]["own_p"], abs=0.03)
    with pytest.raises(ConfigError):
        audio_resampling_oracle(tiny_world, split="train", k=0, exact=False)
    with pytest.raises(ConfigError):
        audio_resampling_oracle(tiny_world, split="train", k=4, signatures=("volume",))


def test_cli_prints_the_audio_resampling_oracle(tiny_world, capsys):
    from core.cli import main

    assert main(["data", "oracle", str(tiny_world), "--split", "train", "--resample-audio", "4"]) == 0
    out = capsys.readouterr().out
    assert "image<->audio resampling oracle" in out and "K=4" in out
    assert "exact   platform, month, hour known" in out and "sampled platform, month, hour drawn" in out
    assert main(["data", "oracle", str(tiny_world), "--split", "train", "--resample-audio", "-1"]) == 2
