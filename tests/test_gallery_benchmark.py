"""The gallery search benchmarks run and report what they claim (structure and recall bounds; no timed asserts)."""

from __future__ import annotations

import json

import numpy as np

from benchmarks.gallery_candidates import CANDIDATES
from benchmarks.gallery_search import CodebookMixtures, clustered, main
from benchmarks.teacher_embeddings import expand_items, split_queries


def test_benchmark_compares_every_candidate_and_the_product_path(tmp_path):
    out = tmp_path / "bench.json"
    assert main(["--n", "1500", "--dim", "16", "--queries", "40", "--threads", "1", "--m", "8",
                 "--ef-construction", "32", "--product", "usearch,exact", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["tune_queries"] == report["held_queries"] == 20 and report["libraries"]["usearch"]
    size = report["sizes"][0]
    rows = {r["name"]: r for r in size["candidates"]}
    assert set(rows) == set(CANDIDATES)
    for name in ("exact-numpy", "faiss-flat"):
        assert rows[name]["recall"] == 1.0 and rows[name]["setting"] is None
    for r in rows.values():
        assert 0 <= r["recall"] <= 1 and set(r["recall_by_kind"]) == {"fresh-a", "fresh-b"}
        assert r["p99_ms"] >= r["p50_ms"] > 0 and r["bytes"] > 0 and r["open_ms"] > 0 and r["rss_before_mb"] > 0
    assert rows["usearch-f16"]["knob"] == "ef" and rows["faiss-ivf"]["knob"] == "nprobe"
    assert rows["usearch-f16"]["bytes"] < rows["usearch-f32"]["bytes"]  # half-width vectors on disk
    product = {r["index"]: r for r in size["product"]}
    assert product["exact"]["recall"] == 1.0 and product["exact"]["mode"] == "exact"
    assert product["usearch"]["dtype"] == "f16" and product["usearch"]["first_search_ms"] > 0
    text = out.with_suffix(".md").read_text()
    assert "| USearch f16 | yes |" in text and "Through the product path" in text and "Tuning ladder" in text


def test_large_sizes_run_only_the_large_candidates(tmp_path):
    out = tmp_path / "bench.json"
    assert main(["--n", "300,600", "--dim", "8", "--queries", "10", "--threads", "1", "--m", "8",
                 "--ef-construction", "16", "--candidates", "exact-numpy,hnswlib", "--large-from", "600",
                 "--large-candidates", "exact-numpy", "--out", str(out)]) == 0
    sizes = json.loads(out.read_text())["sizes"]
    assert [[r["name"] for r in s["candidates"]] for s in sizes] == [["exact-numpy", "hnswlib"], ["exact-numpy"]]


def test_synthetic_generators_give_unit_vectors():
    rng = np.random.default_rng(0)
    for x in (clustered(500, 24, rng), CodebookMixtures(24, rng, size=64).draw(200, rng)):
        assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5) and x.dtype == np.float32


def test_expanded_items_stay_on_the_real_manifold_and_queries_split_by_kind():
    rng = np.random.default_rng(0)
    real = clustered(400, 16, rng)
    grown = expand_items(real, 1000, seed=1)
    assert grown.shape == (1000, 16) and np.allclose(grown[:400], real, atol=1e-6)
    assert np.allclose(np.linalg.norm(grown, axis=1), 1, atol=1e-5)
    # each derived vector lies close to the real set (a mix of two near neighbours), unlike random directions
    nearest = (grown[400:] @ real.T).max(axis=1).mean()
    random = rng.normal(size=(600, 16)).astype(np.float32)
    random /= np.linalg.norm(random, axis=1, keepdims=True)
    assert nearest > 0.9 and nearest > (random @ real.T).max(axis=1).mean() + 0.2
    queries = rng.normal(size=(9, 4)).astype(np.float32)
    kinds = np.array(["text"] * 4 + ["place"] * 5)
    (tq, tk), (hq, hk) = split_queries(queries, kinds)
    assert sorted(tk.tolist()) == ["place", "place", "text", "text"] and sorted(hk.tolist()).count("place") == 3
    assert not {tuple(v) for v in tq} & {tuple(v) for v in hq}


def test_benchmark_on_a_checkpoints_own_tile_embeddings(tmp_path, tiny_cfg, tiny_world):
    from core.checkpoint import save_checkpoint
    from core.model import build_model

    save_checkpoint(build_model(tiny_cfg), tiny_cfg, tmp_path / "ckpt")
    out, cache = tmp_path / "teacher.json", tmp_path / "tiles"
    args = ["--ckpt", str(tmp_path / "ckpt"), "--world", str(tiny_world), "--n", "300", "--queries", "20",
            "--candidates", "exact-numpy,usearch-f16", "--m", "16", "--threads", "1", "--cache-dir", str(cache),
            "--out", str(out)]
    assert main(args) == 0
    report = json.loads(out.read_text())
    assert report["sizes"][0]["n"] == 300 and report["dim"] == tiny_cfg.model.codebook.dim
    assert "world-tile image embeddings" in report["data"] and report["query_kinds"] == ["place", "text"]
    usearch = report["sizes"][0]["candidates"][1]
    assert set(usearch["recall_by_kind"]) == {"text", "place"}
    assert usearch["tune_table"][-1]["recall"] >= 0.99 or usearch["tune_table"][-1]["setting"] == 2048
    assert "place / text" in out.with_suffix(".md").read_text()
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
    assert set(search["mode"].values()) <= {"hnsw", "exact"} and 0.0 <= search["recall_at_10"] <= 1.0
    assert set(search["recall_by_query_kind"]) == {"text", "place"} and search["exact"]["p50_ms"] > 0
    assert (tmp_path / "g" / "gallery.db").is_file()
    assert "through the product path" in out.with_suffix(".md").read_text()
