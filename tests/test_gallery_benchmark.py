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


def test_benchmark_on_a_checkpoints_own_tile_embeddings(tmp_path, tiny_cfg, tiny_world):
    from core.checkpoint import save_checkpoint
    from core.model import build_model

    save_checkpoint(build_model(tiny_cfg), tiny_cfg, tmp_path / "ckpt")
    out, cache = tmp_path / "teacher.json", tmp_path / "tiles"
    args = ["--ckpt", str(tmp_path / "ckpt"), "--world", str(tiny_world), "--n", "300", "--queries", "20",
            "--efs", "16,512", "--m", "16", "--threads", "1", "--cache-dir", str(cache), "--out", str(out)]
    assert main(args) == 0
    report = json.loads(out.read_text())
    assert report["n"] == 300 and report["queries"] == 20 and report["dim"] == tiny_cfg.model.codebook.dim
    assert "world-tile image embeddings" in report["data"]
    run = report["runs"][0]
    assert set(run["recall_by_query_kind"]) == {"text", "place"}
    assert run["table"][-1]["recall"] == 1.0  # ef 512 over 300 items is an exhaustive search
    assert "recall@10 text" in out.with_suffix(".md").read_text()
    caches = sorted(p.name for p in cache.iterdir())
    assert len(caches) == 21  # 7 regions x 3 zooms, each a resumable region cache
    assert main(args) == 0  # the second run reads the caches
    assert sorted(p.name for p in cache.iterdir()) == caches


def test_large_gallery_through_the_product_path(tmp_path, tiny_cfg, tiny_world):
    from benchmarks import gallery_scale
    from core.checkpoint import save_checkpoint
    from core.model import build_model

    save_checkpoint(build_model(tiny_cfg), tiny_cfg, tmp_path / "ckpt")
    out = tmp_path / "scale.json"
    args = ["--ckpt", str(tmp_path / "ckpt"), "--world", str(tiny_world), "--n", "300", "--queries", "20",
            "--cache-dir", str(tmp_path / "tiles"), "--work", str(tmp_path / "g"), "--out", str(out), "--no-progress"]
    assert gallery_scale.main(args) == 0
    report = json.loads(out.read_text())
    assert report["n"] == 300 and report["tune_with"] == "captions"
    search = report["search"]
    assert set(search["mode"].values()) <= {"hnsw", "ivf", "exact"} and 0.0 <= search["recall_at_10"] <= 1.0
    assert set(search["recall_by_query_kind"]) == {"text", "place"} and search["exact"]["p50_ms"] > 0
    assert (tmp_path / "g" / "gallery.db").is_file()
    assert "through the product path" in out.with_suffix(".md").read_text()
