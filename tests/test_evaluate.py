"""Evaluation: the composed settings by hand, metadata settings, the full report on the tiny world, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import save_untrained

from contracts.errors import ConfigError
from contracts.schema import META_FIELDS
from core.checkpoint import load_checkpoint, save_checkpoint
from core.cli import main as cli_main
from core.evaluate import (
    embed_table,
    evaluate_checkpoint,
    image_audio_rows,
    image_text_row,
    metadata_settings,
    parse_zooms,
    setting_mask,
    to_markdown,
    validation_metrics,
)
from core.metrics import retrieval_report


def test_composed_settings_by_hand():
    # image_i = e_i, caption_i = e_i, audio_i = e_{20+i}: audio alone says nothing about the image.
    n = 20
    eye = np.eye(2 * n)
    image, caption, audio = eye[:n], eye[:n], eye[n:]
    rows = {r["composed"]: r for r in image_audio_rows(image, audio, caption)}
    # none: every similarity is 0 -> all tie -> rank (1 + 20) / 2
    assert rows["none"]["i2a_mr"] == 10.5 and rows["none"]["i2a_r10"] == 0.0 and rows["none"]["a2i_mr"] == 10.5
    # audio: the audio side carries its caption (= the image direction) -> perfect both ways
    assert rows["audio"]["i2a_r10"] == 1.0 and rows["audio"]["a2i_r10"] == 1.0 and rows["audio"]["i2a_mr"] == 1.0
    # query: I2A adds the caption to the image query (= the image itself) vs plain audio -> still all ties;
    # A2I adds it to the audio query vs plain images -> perfect. A2I equals the "audio" setting by definition.
    assert rows["query"]["i2a_mr"] == 10.5 and rows["query"]["i2a_r10"] == 0.0
    assert rows["query"]["a2i_r10"] == rows["audio"]["a2i_r10"] == 1.0
    it = image_text_row(image, caption)
    assert it["i2t_r10"] == 1.0 and it["t2i_mr"] == 1.0
    with pytest.raises(ConfigError, match="composed"):
        image_audio_rows(image, audio, caption, ("both",))


def test_option_parsing():
    assert metadata_settings("none,all,each") == ["none", *META_FIELDS, "all"]
    assert metadata_settings(["all", "hour", "none"]) == ["none", "hour", "all"]
    assert parse_zooms("1, 3,5") == [1, 3, 5]
    with pytest.raises(ConfigError, match="unknown metadata setting"):
        metadata_settings("some")
    with pytest.raises(ConfigError, match="not an integer"):
        parse_zooms("1,x")
    with pytest.raises(ConfigError):
        metadata_settings("")
    np.testing.assert_array_equal(setting_mask("month"), [0, 1, 0, 0, 0])
    np.testing.assert_array_equal(setting_mask("all"), np.ones(5))
    np.testing.assert_array_equal(setting_mask("none"), np.zeros(5))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_cfg):
    return save_untrained(tmp_path_factory, tiny_cfg, "ckpt")


@pytest.fixture(scope="module")
def report(checkpoint, tiny_world, tmp_path_factory):
    torch.set_num_threads(1)
    cache = tmp_path_factory.mktemp("eval-cache")
    return evaluate_checkpoint(checkpoint, tiny_world, "test", "1,3,5", "none,all,each", cache_dir=cache,
                               progress=False), cache


def test_report_structure_and_ranges(report):
    res, _ = report
    n = res.n
    assert n >= 2 and res.split == "test" and res.chance_r10 == 0.10
    assert res.zooms == [1, 3, 5] and res.metadata == ["none", *META_FIELDS, "all"]
    assert len(res.retrieval) == 3 * 7 * 3 and len(res.image_text) == 3 * 7
    for r in res.retrieval:
        assert 0.0 <= r["i2a_r10"] <= 1.0 and 1.0 <= r["i2a_mr"] <= n and 1.0 <= r["a2i_mr"] <= n
    # A2I is the same in "audio" and "query" (the caption rides on the audio query either way)
    for z in (1, 3, 5):
        for s in res.metadata:
            rows = {r["composed"]: r for r in res.retrieval if r["zoom"] == z and r["metadata"] == s}
            assert rows["audio"]["a2i_r10"] == rows["query"]["a2i_r10"]
    assert set(res.image_text_mean) == set(res.metadata)
    assert json.loads(json.dumps(res.to_dict()))["kind"] == "sat2sound-evaluation"
    md = to_markdown(res)
    assert "| zoom | metadata | composed | I2A R@10% |" in md and "chance level: R@10% = 0.10" in md


def test_report_numbers_match_a_direct_computation(report, checkpoint, tiny_world):
    """Recompute zoom 3 / 'hour only' by hand: the model on the table's batches with only the hour field given."""
    from core.data.features import FeatureTable

    res, cache = report
    loaded = load_checkpoint(checkpoint)
    model = loaded.model.eval()
    table = FeatureTable.build(tiny_world, "test", loaded.cfg, cache_dir=cache, progress=False)
    with torch.no_grad():
        b = table.batch(np.arange(len(table)), zoom=3)
        mask = b["meta_mask"] * torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0])
        meta = {k: b[k] for k in ("lat", "lon", "month", "hour", "audio_source", "caption_source")}
        meta["meta_mask"] = mask
        img = model.encode_image(b["image"], b["zoom"], b["gsd"], meta).embedding.numpy()
        aud = model.encode_audio(b["mel"]).embedding.numpy()
        cap = model.encode_text(b["image_caption"]).embedding.numpy()
    row = next(r for r in res.retrieval if r["zoom"] == 3 and r["metadata"] == "hour" and r["composed"] == "none")
    i2a = retrieval_report(img, aud)
    assert row["i2a_r10"] == pytest.approx(i2a["r10"]) and row["i2a_mr"] == pytest.approx(i2a["mr"], abs=0.51)
    it = next(r for r in res.image_text if r["zoom"] == 3 and r["metadata"] == "hour")
    assert it["i2t_mr"] == pytest.approx(retrieval_report(img, cap)["mr"], abs=0.51)
    # validation: all metadata at every zoom, the same numbers as the report's rows, and their mean
    val = validation_metrics(model, table)
    assert val["zooms"] == [1, 3, 5] and set(val["by_zoom"]) == {"1", "3", "5"}
    for z in (1, 3, 5):
        row = next(r for r in res.retrieval if r["zoom"] == z and r["metadata"] == "all" and r["composed"] == "none")
        it = next(r for r in res.image_text if r["zoom"] == z and r["metadata"] == "all")
        got = val["by_zoom"][str(z)]
        assert got["i2a_r10"] == pytest.approx(row["i2a_r10"]) and got["i2a_mr"] == pytest.approx(row["i2a_mr"])
        assert got["i2t_r10"] == pytest.approx(it["i2t_r10"])
    assert val["i2a_r10"] == pytest.approx(np.mean([val["by_zoom"][z]["i2a_r10"] for z in ("1", "3", "5")]))


def test_metadata_changes_the_image_embedding_only(report, checkpoint, tiny_world):
    from core.data.features import FeatureTable

    _, cache = report
    loaded = load_checkpoint(checkpoint)
    table = FeatureTable.build(tiny_world, "test", loaded.cfg, cache_dir=cache, progress=False)
    emb = embed_table(loaded.model, table, [1], ["none", "all"], progress=False)
    assert not np.allclose(emb["image"][(1, "none")], emb["image"][(1, "all")])
    assert emb["audio"].shape == emb["audio_caption"].shape == emb["image_caption"][1].shape
    np.testing.assert_allclose(np.linalg.norm(emb["audio"], axis=1), 1.0, atol=1e-5)


def test_model_without_metadata_evaluates_only_none(tmp_path, tiny_cfg, tiny_world, report):
    import dataclasses

    from core.model import build_model

    _, cache = report
    cfg = dataclasses.replace(tiny_cfg, model=dataclasses.replace(
        tiny_cfg.model, fusion=dataclasses.replace(tiny_cfg.model.fusion, use_metadata=False)))
    save_checkpoint(build_model(cfg), cfg, tmp_path / "nometa")
    res = evaluate_checkpoint(tmp_path / "nometa", tiny_world, "test", [1], "all,each", cache_dir=cache,
                              progress=False)
    assert res.metadata == ["none"] and res.notes and not res.trained_with_metadata


def test_cli_writes_json_and_markdown(checkpoint, tiny_world, tmp_path, report, capsys):
    _, cache = report
    out = tmp_path / "eval" / "result.json"
    code = cli_main(["evaluate", "--ckpt", str(checkpoint), "--data", str(tiny_world), "--split", "test",
                     "--zooms", "1", "--metadata", "none,all", "--out", str(out), "--cache-dir", str(cache),
                     "--no-progress"])
    assert code == 0
    res = json.loads(out.read_text())
    assert res["zooms"] == [1] and res["metadata"] == ["none", "all"] and res["kind"] == "sat2sound-evaluation"
    md = out.with_suffix(".md").read_text()
    assert "Image <-> audio" in md and "Image <-> text" in md
    assert "I2A R@10%" in capsys.readouterr().out


def test_cli_bad_inputs(checkpoint, tiny_world, tmp_path, report, capsys):
    _, cache = report
    assert cli_main(["evaluate", "--ckpt", str(tmp_path / "missing"), "--data", str(tiny_world)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli_main(["evaluate", "--ckpt", str(checkpoint), "--data", str(tiny_world), "--split", "holdout",
                     "--cache-dir", str(cache)]) == 2
    assert "unknown split" in capsys.readouterr().err
    assert cli_main(["evaluate", "--ckpt", str(checkpoint), "--data", str(tiny_world), "--zooms", "2",
                     "--cache-dir", str(cache), "--no-progress"]) == 2
    assert "zoom" in capsys.readouterr().err
    assert cli_main(["evaluate", "--ckpt", str(checkpoint), "--data", str(tiny_world), "--metadata", "weather"]) == 2
    assert "unknown metadata setting" in capsys.readouterr().err
    assert cli_main(["evaluate", "--ckpt", str(checkpoint), "--data", str(tiny_world), "--composed", "both"]) == 2
    assert "composed" in capsys.readouterr().err
