"""The published-model benchmark at tiny size: coverage of all six released layouts and per-tower parity, written as
JSON and markdown (the latency and chain sections run in the benchmark itself, minutes at paper size)."""

from __future__ import annotations

import json

from benchmarks.published_model import main


def test_tiny_coverage_and_parity_are_written(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["--size", "tiny", "--sections", "coverage,parity", "--work", str(tmp_path / "work"),
                 "--out", str(out)]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    rows = result["coverage"]
    assert [r["file"] for r in rows] == [f"{s}_{m}.ckpt" for s in ("bingmap", "sentinel", "SoundingEarth")
                                         for m in ("nometa", "withmeta")]
    assert all(r["coverage"] == 1.0 and not r["initialised"] for r in rows)
    # SoundingEarth has no audio-source token; a model without metadata has no fusion
    keys = {r["file"]: r["keys"] for r in rows}
    assert keys["SoundingEarth_withmeta.ckpt"] == keys["bingmap_withmeta.ckpt"] - 1
    assert keys["bingmap_nometa.ckpt"] < keys["bingmap_withmeta.ckpt"]
    for tower in ("image", "audio", "text", "fusion"):
        assert result["parity"][tower]["max_abs_diff"] < 1e-4
        assert result["parity"][tower]["min_cosine"] > 0.99999
    md = out.with_suffix(".md").read_text()
    assert "## Key coverage" in md and "| 100% |" in md and "logit_scale_it_a" in md
    # only the chain's file is kept
    assert sorted(p.name for p in (tmp_path / "work").glob("*.ckpt")) == ["bingmap_withmeta.ckpt"]


def test_unknown_section_is_a_clear_error(tmp_path, capsys):
    assert main(["--size", "tiny", "--sections", "speed", "--work", str(tmp_path)]) == 2
    assert "unknown section" in capsys.readouterr().err
