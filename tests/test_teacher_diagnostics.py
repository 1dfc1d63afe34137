"""The teacher diagnostics rank real embeddings of a checkpoint against four galleries and refuse bad input."""

from __future__ import annotations

import json

import pytest

from benchmarks.teacher_diagnostics import clean_captions, diagnose, fresh_image_captions, main
from contracts.errors import ConfigError, DataError
from world.caption_reading import caption_sources


def test_clean_captions_name_exactly_the_recorded_sources():
    presents = [["birdsong", "wind"], ["traffic"], ["surf", "gulls", "wind"]]
    captions = clean_captions(presents)
    assert [caption_sources(c) for c in captions] == [sorted(p) for p in presents]
    with pytest.raises(DataError, match="gt_present"):
        clean_captions([["wind"], []])


def test_diagnostics_on_a_saved_checkpoint(tmp_path, tiny, tiny_world, capsys):
    from core.checkpoint import save_checkpoint

    model, cfg = tiny
    save_checkpoint(model, cfg, tmp_path / "ckpt")
    out = tmp_path / "diag" / "teacher_diagnostics"
    assert main(["--ckpt", str(tmp_path / "ckpt"), "--data", str(tiny_world), "--split", "train", "--zoom", "3",
                 "--out", str(out), "--no-progress", "--caption-draws", "2"]) == 0
    res = json.loads(out.with_suffix(".json").read_text())
    assert res["n"] > 20 and res["zoom"] == 3 and res["metadata"] == "all" and res["caption_draws"] == 2
    assert set(res["rows"]) == {"image -> audio", "image -> ideal recogniser caption", "image -> clip caption",
                                "audio -> clip caption", "audio -> ideal recogniser caption",
                                "image (no metadata) -> stored image caption",
                                "fresh caption draw -> stored image caption",
                                "mean of 2 fresh draws -> stored image caption"}
    for row in res["rows"].values():
        assert 0.0 <= row["r10"] <= 1.0 and 1.0 <= row["median_rank"] <= res["n"]
    assert "| image -> audio |" in out.with_suffix(".md").read_text()
    capsys.readouterr()
    # bad input: a zoom the data lack, a missing checkpoint, an unknown metadata setting
    assert main(["--ckpt", str(tmp_path / "ckpt"), "--data", str(tiny_world), "--split", "train", "--zoom", "2",
                 "--no-progress"]) == 2
    assert "zoom 2" in capsys.readouterr().err
    assert main(["--ckpt", str(tmp_path / "missing"), "--data", str(tiny_world), "--no-progress"]) == 2
    with pytest.raises(SystemExit):
        main(["--ckpt", str(tmp_path / "ckpt"), "--data", str(tiny_world), "--caption-draws", "-1"])
    with pytest.raises(ConfigError, match="whole number"):
        diagnose(tmp_path / "ckpt", tiny_world, split="train", caption_draws=1.5, progress=False)
    with pytest.raises(SystemExit):
        main(["--ckpt", str(tmp_path / "ckpt"), "--data", str(tiny_world), "--metadata", "some"])


def test_fresh_captions_come_from_the_stored_captions_generator(tiny_world):
    """Fresh draws name only sources the crop's generator inputs allow (weight >= 0.2, as image_caption lists), the
    stored caption does too (the same inputs as the build), and the draws vary in wording."""
    from world.caption_oracle import caption_generator_inputs
    from world.shards import read_split
    from world.shards import world_params as _world_params

    cols = read_split(tiny_world, "train", columns=["latitude", "longitude", "llava_caption_bingmap_zl5"]).to_pydict()
    places = list(zip(cols["latitude"], cols["longitude"]))[:6]
    fresh = fresh_image_captions(tiny_world, places, 5, 6)
    assert len(fresh) == 6 and all(len(row) == 6 for row in fresh)
    seed, tile_px, ground_m = _world_params(tiny_world, None)
    for (lat, lon), row, stored in zip(places, fresh, cols["llava_caption_bingmap_zl5"]):
        weights, _ = caption_generator_inputs(lat, lon, tile_px, ground_m, seed)[5]
        allowed = {s for s, w in weights.items() if w >= 0.2} or {"wind"}
        assert {s for c in row for s in caption_sources(c)} <= allowed
        assert set(caption_sources(stored)) <= allowed
        assert len(set(row)) > 1
    assert fresh == fresh_image_captions(tiny_world, places, 5, 6)  # fixed streams: reruns agree
