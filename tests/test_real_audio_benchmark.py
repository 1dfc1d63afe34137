"""The real-recordings benchmark runs end to end on an untrained tiny model and writes its figures."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import save_untrained

from benchmarks import real_audio
from world import real_audio as world_real_audio
from world.sources import SOURCES

pytestmark = pytest.mark.skipif(not world_real_audio.installed().sources,
                                reason="no real recordings installed (apt-get install megaglest-data openttd-opensfx)")


def test_windows_are_held_out_clips_at_the_models_length():
    windows = real_audio.real_windows(8000, 2.0, max_windows=2)
    held = {c.key for c in real_audio.recordings.catalogue() if c.split == "held_out"}
    assert windows and {w.clip for w in windows} == held
    assert all(w.wave.shape == (16000,) and w.wave.dtype == np.float32 for w in windows)
    synth = real_audio.synthetic_windows(windows, 8000, 2.0)
    assert [w.source for w in synth] == [w.source for w in windows]


def test_accuracy_counts_the_true_sources_rank():
    windows = [real_audio.Window("a", "wind", np.zeros(4)), real_audio.Window("b", "rain", np.zeros(4))]
    sources = np.eye(len(SOURCES), dtype=np.float32)
    audio = np.stack([sources[SOURCES.index("wind")],  # wind first: top-1
                      sources[SOURCES.index("birdsong")] + 0.5 * sources[SOURCES.index("insects")]
                      + 0.2 * sources[SOURCES.index("rain")]])  # rain third: top-3 only
    res = real_audio.source_accuracy(audio, windows, sources)
    assert res["top1"] == 0.5 and res["top3"] == 1.0 and res["per_source"]["rain"] == {"n": 1, "top1": 0.0,
                                                                                        "top3": 1.0}


def test_cli_writes_json_and_markdown(tmp_path_factory, tiny_cfg, tmp_path, capsys):
    ckpt = save_untrained(tmp_path_factory, tiny_cfg, "real-audio")
    out = tmp_path / "ra"
    assert real_audio.main(["--ckpt", str(ckpt), "--student", str(ckpt), "--windows", "1", "--out", str(out)]) == 0
    res = json.loads(out.with_suffix(".json").read_text())
    assert [m["model"] for m in res["models"]] == ["teacher", "student fp32 (PyTorch)"]
    assert res["models"][0]["real"] == res["models"][1]["real"]  # the same checkpoint twice
    for m in res["models"]:
        assert 0.0 <= m["real"]["top1"] <= m["real"]["top3"] <= 1.0 and m["real"]["n"] == res["windows"]
    assert "| teacher |" in out.with_suffix(".md").read_text() and "Chance" in capsys.readouterr().out
    assert real_audio.main(["--ckpt", str(tmp_path / "none"), "--out", str(out)]) == 2
