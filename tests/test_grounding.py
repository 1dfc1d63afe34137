"""Grounding heat maps and concept groups: shapes, the paper's recipe, scoring by hand, bad input."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from conftest import save_untrained

from contracts.errors import ConfigError
from core.checkpoint import load_checkpoint, save_checkpoint
from core.cli import main
from core.grounding.heatmap import ground_text, patch_relevance
from core.grounding.scoring import relevant_classes, score_tile
from core.maps.tiles import WorldTiles
from core.model import build_model


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_cfg):
    return save_untrained(tmp_path_factory, tiny_cfg, "ground", seed=1)


def test_heat_map_follows_the_papers_recipe(ckpt, tiny_cfg):
    loaded = load_checkpoint(ckpt)
    view = WorldTiles(tiny_cfg).view(42.0, -93.5, 1)
    g = ground_text(loaded, view.image, 1, 0.6, "birds chirping")
    grid = tiny_cfg.image.grid
    assert g.heat.shape == (grid, grid)
    assert g.words[0]["token"] == "birds" and all(w["token"] not in ("[CLS]", "[SEP]") for w in g.words)
    # recompute the first word's map by hand: its best code's score on every patch
    model = loaded.model
    with torch.no_grad():
        from contracts.image_prep import normalise

        x = torch.from_numpy(normalise(view.image[None], tiny_cfg.image.mean, tiny_cfg.image.std))
        enc = model.encode_image(x, torch.tensor([1]), torch.tensor([0.6]))
        states, pad = model.text_backbone.encode(["birds"])
        ts = model.head.token_scores(model.text_query(states), pad)[0]
    code = int(ts[1].argmax())  # token 0 is [CLS]
    expected = enc.scores[0, : tiny_cfg.image.n_patches, code].reshape(grid, grid).numpy()
    single = ground_text(loaded, view.image, 1, 0.6, "birds")
    assert single.words[0]["code"] == code
    assert np.allclose(single.heat, expected, atol=1e-5)


def test_patch_relevance_and_scoring_by_hand():
    cover = np.zeros((8, 8), np.uint8)
    cover[:4, :4] = 3  # top-left quarter is class 3
    rel = patch_relevance(cover, [3], 2)
    assert rel.tolist() == [[1.0, 0.0], [0.0, 0.0]]
    s = score_tile(np.array([[5.0, 1.0], [0.0, 2.0]]), rel)
    assert s["pointing_hit"] and s["auc"] == 1.0 and s["chance"] == 0.25
    s = score_tile(np.array([[0.0, 1.0], [0.0, 2.0]]), rel)
    assert not s["pointing_hit"]
    from world.cover_classes import CLASS_INDEX

    assert CLASS_INDEX["forest"] in relevant_classes(["birdsong"])


def test_bad_grounding_input(ckpt, tiny_cfg, tmp_path):
    loaded = load_checkpoint(ckpt)
    view = WorldTiles(tiny_cfg).view(42.0, -93.5, 1)
    with pytest.raises(ConfigError, match="empty"):
        ground_text(loaded, view.image, 1, 0.6, "  ")
    with pytest.raises(ConfigError, match="no content word"):
        ground_text(loaded, view.image, 1, 0.6, "the sounds of")
    cfg = dataclasses.replace(tiny_cfg, model=dataclasses.replace(
        tiny_cfg.model, codebook=dataclasses.replace(tiny_cfg.model.codebook, head="global")))
    save_checkpoint(build_model(cfg), cfg, tmp_path / "g")
    with pytest.raises(ConfigError, match="global-pooling baseline"):
        ground_text(load_checkpoint(tmp_path / "g"), view.image, 1, 0.6, "birds")
    assert main(["ground", "--ckpt", str(ckpt), "--at", "95,0", "--text", "birds"]) == 2
    assert main(["ground", "--ckpt", str(ckpt), "--tile", str(tmp_path / "nope.png"), "--text", "birds"]) == 2


def test_ground_command_writes_overlay_and_evaluation(ckpt, tmp_path, tiny_world):
    out = tmp_path / "g"
    assert main(["ground", "--ckpt", str(ckpt), "--at", "38.6,-90.2", "--text", "cars on the road",
                 "--out", str(out)]) == 0
    assert len(list(out.glob("ground-*.png"))) == 1
    assert main(["ground", "--ckpt", str(ckpt), "--evaluate", "--data", str(tiny_world), "--split", "train",
                 "--n", "3", "--out", str(out)]) == 0
    result = json.loads((out / "grounding-eval-z1.json").read_text())
    for row in result["per_query"]:
        assert 0 <= row["pointing"] <= 1 and 0 < row["pointing_chance"] < 1


def test_concepts_command(ckpt, tmp_path, tiny_world):
    out = tmp_path / "c"
    assert main(["concepts", "--ckpt", str(ckpt), "--data", str(tiny_world), "--split", "train", "--groups", "3",
                 "--out", str(out), "--cache", str(tmp_path / "cache")]) == 0
    summary = json.loads((out / "concepts-train-z1.json").read_text())
    assert summary["samples"] > 0 and 0 < summary["codes_used"] <= summary["codebook_size"]
    assert len(summary["groups"]) <= 3 and summary["groups"][0]["size"] >= summary["groups"][-1]["size"]
    assert (out / "concepts-train-z1.png").stat().st_size > 5000
