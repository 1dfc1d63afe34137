"""The dual-encoder ceiling reads the world's ground truth into features, trains, and refuses data without it."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from data_fixtures import write_geosound

from benchmarks.dual_encoder_ceiling import main, place_features, recording_features
from contracts.errors import DataError
from world.sources import SOURCES


def _table(**cols):
    base = {"gt_cover_fractions": [[0.5, 0.5] + [0.0] * 10, [1.0] + [0.0] * 11],
            "gt_present": [["birdsong", "wind"], ["traffic"]], "gt_levels_db": [[-20.0, -30.0], [-10.0]],
            "latitude": [45.0, -10.0], "date": ["2019-05-01 06:10:00", "2020-12-24 23:00:00"],
            "source": ["inaturalist", "yfcc"]}
    base.update(cols)
    return pa.table(base)


def test_features_hold_cover_time_platform_and_loudness():
    t = _table()
    none, full = place_features(t, "none"), place_features(t, "all")
    assert none.shape == (2, 15) and full.shape == (2, 23) and full.dtype == np.float32
    assert np.allclose(full[:, :15], none)
    assert full[0, 19 + 1] == 1.0 and full[1, 19 + 0] == 1.0  # platform one-hot: inaturalist, yfcc
    rec = recording_features(t)
    s = len(SOURCES)
    b, w = SOURCES.index("birdsong"), SOURCES.index("wind")
    assert rec.shape == (2, 2 * s) and rec[0, b] == rec[0, w] == 1.0 and rec[0].sum() == pytest.approx(2 + 1 + 0.5)
    with pytest.raises(ValueError, match="setting"):
        place_features(t, "month")
    with pytest.raises(DataError, match="gt_present"):
        recording_features(_table(gt_present=[["wind"], []]))
    with pytest.raises(DataError, match="gt_cover_fractions"):
        place_features(_table(gt_cover_fractions=[[1.0], [1.0]]), "none")


def test_ceiling_trains_on_a_world_and_refuses_other_data(tiny_world, tmp_path, capsys):
    out = tmp_path / "ceiling"
    assert main(["--data", str(tiny_world), "--epochs", "10", "--hidden", "16", "--dim", "8", "--out", str(out)]) == 0
    res = json.loads(out.with_suffix(".json").read_text())
    for setting in ("none", "all"):
        r = res["settings"][setting]
        assert 0.0 <= r["test_i2a_r10"] <= 1.0 and 1.0 <= r["test_i2a_mr"] <= res["n"]["test"]
        assert [h["epoch"] for h in r["history"]] == [10]
    assert "| all |" in out.with_suffix(".md").read_text()
    capsys.readouterr()
    bare = tmp_path / "bare"
    (bare / "data").mkdir(parents=True)
    assert main(["--data", str(bare), "--epochs", "1", "--out", str(tmp_path / "x")]) == 2
    assert "no 'train' shards" in capsys.readouterr().err
    real = write_geosound(tmp_path / "geo", {"train": 4, "validation": 3, "test": 3}, n_shards=1, tile_px=40)
    assert main(["--data", str(real), "--epochs", "1", "--out", str(tmp_path / "y")]) == 2
    assert "no world ground truth" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--data", str(tiny_world), "--epochs", "0"])
