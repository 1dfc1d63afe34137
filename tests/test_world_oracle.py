"""The image->caption resampling oracle: caption read-back (sources and scene words), the generator's inputs
recomputed as the build computes them, and sane retrieval on the tiny world."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigError
from core.world.captions import image_caption
from core.world.oracle import (
    caption_generator_inputs,
    caption_resampling_oracle,
    caption_scene,
    caption_signature,
    caption_sources,
    signature_likelihoods,
)
from core.world.places import plausible_set
from core.world.shards import read_split


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
