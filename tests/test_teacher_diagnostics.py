"""The teacher diagnostics rank real embeddings of a checkpoint against four galleries and refuse bad input."""

from __future__ import annotations

import json

import pytest

from benchmarks.teacher_diagnostics import clean_captions, main
from core.errors import DataError
from core.world.oracle import caption_sources


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
                 "--out", str(out), "--no-progress"]) == 0
    res = json.loads(out.with_suffix(".json").read_text())
    assert res["n"] > 20 and res["zoom"] == 3 and res["metadata"] == "all"
    assert set(res["rows"]) == {"image -> audio", "image -> ideal recogniser caption", "image -> clip caption",
                                "audio -> clip caption", "audio -> ideal recogniser caption"}
    for row in res["rows"].values():
        assert 0.0 <= row["r10"] <= 1.0 and 1.0 <= row["median_rank"] <= res["n"]
    assert "| image -> audio |" in out.with_suffix(".md").read_text()
    capsys.readouterr()
    # bad input: a zoom the data lack, a missing checkpoint, an unknown metadata setting
    assert main(["--ckpt", str(tmp_path / "ckpt"), "--data", str(tiny_world), "--split", "train", "--zoom", "2",
                 "--no-progress"]) == 2
    assert "zoom 2" in capsys.readouterr().out
    assert main(["--ckpt", str(tmp_path / "missing"), "--data", str(tiny_world), "--no-progress"]) == 2
    with pytest.raises(SystemExit):
        main(["--ckpt", str(tmp_path / "ckpt"), "--data", str(tiny_world), "--metadata", "some"])
