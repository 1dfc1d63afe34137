"""The gallery search benchmark runs and reports what it claims (structure and recall bounds; no timed asserts)."""

from __future__ import annotations

import json

import numpy as np
from test_gallery_helpers import make_gallery

from benchmarks.gallery_search import CodebookMixtures, clustered, main


def test_benchmark_on_synthetic_data(tmp_path):
    out = tmp_path / "bench.json"
    assert main(["--n", "1500", "--dim", "32", "--queries", "30", "--efs", "16,64", "--m", "8,16", "--threads", "1",
                 "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["n"] == 1500 and report["dim"] == 32 and len(report["runs"]) == 2
    for run in report["runs"]:
        assert [r["ef"] for r in run["table"]] == [16, 64]
        assert all(0.0 <= r["recall"] <= 1.0 for r in run["table"])
        assert run["table"][1]["recall"] >= run["table"][0]["recall"] - 0.02  # a wider search finds no less
        assert run["index_bytes"] > 1500 * 32 * 4
    assert "| ef | recall@10 |" in out.with_suffix(".md").read_text()


def test_benchmark_on_a_built_gallery(tmp_path):
    make_gallery(tmp_path / "g", n=40, dim=16)
    out = tmp_path / "real.json"
    assert main(["--gallery", str(tmp_path / "g"), "--queries", "20", "--efs", "16,32", "--threads", "1",
                 "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["n"] == 40 and report["queries"] == 20 and "real gallery embeddings" in report["data"]
    assert set(report["end_to_end"]) >= {"hnsw", "exact", "ef", "mode"}
    assert report["runs"][0]["table"][-1]["recall"] == 1.0  # 40 items: ef 32 with M 16 visits them all


def test_synthetic_generators_give_unit_vectors():
    rng = np.random.default_rng(0)
    for x in (clustered(500, 24, rng), CodebookMixtures(24, rng, size=64).draw(200, rng)):
        assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5) and x.dtype == np.float32
