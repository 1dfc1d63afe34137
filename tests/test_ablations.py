"""The ablation summary reads each run's own validation record at the budget epoch and says what is missing."""

from __future__ import annotations

import json

from benchmarks.ablations import summarise, val_at_epoch


def _log(folder, records):
    folder.mkdir(parents=True)
    (folder / "train_log.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")


def _val(i2a):
    return {"i2a_r10": i2a, "i2a_mr": 50.0, "a2i_r10": 0.5, "a2i_mr": 51.0, "i2t_r10": 0.55, "i2t_mr": 45.0,
            "n": 601, "metadata": "all"}


def test_summary_compares_the_runs_at_the_same_epoch(tmp_path):
    _log(tmp_path / "teacher", [{"kind": "step", "epoch": 2, "step": 5},
                                {"kind": "epoch", "epoch": 2, "val": _val(0.40)},
                                {"kind": "epoch", "epoch": 3, "val": _val(0.45)}])
    # a resumed run logs its epoch twice: the last record counts
    _log(tmp_path / "ablation-global", [{"kind": "epoch", "epoch": 2, "val": _val(0.30)},
                                        {"kind": "epoch", "epoch": 2, "val": _val(0.35)}])
    assert val_at_epoch(tmp_path / "teacher", 3)["i2a_r10"] == 0.45
    assert val_at_epoch(tmp_path / "ablation-global", 2)["i2a_r10"] == 0.35
    assert val_at_epoch(tmp_path / "ablation-nometa", 2) is None
    text, data = summarise(tmp_path, 2)
    assert "| codebook + metadata (Sat2Sound) | 0.400 / 50 |" in text
    assert "| global pooling + metadata (GeoCLAP/PSM-style) | 0.350 / 50 |" in text
    assert "codebook, no metadata | not trained to epoch 2 yet" in text
    assert set(data) == {"teacher", "ablation-global"} and "N=601" in text


def test_summary_names_the_zooms_the_validation_covered(tmp_path):
    _log(tmp_path / "teacher", [{"kind": "epoch", "epoch": 1, "val": {**_val(0.5), "zooms": [1, 3, 5]}}])
    assert "mean over zooms 1 / 3 / 5" in summarise(tmp_path, 1)[0]
    _log(tmp_path / "old" / "teacher", [{"kind": "epoch", "epoch": 1, "val": {**_val(0.5), "zoom": 1}}])
    assert "), zoom 1, after 1 epochs" in summarise(tmp_path / "old", 1)[0]
