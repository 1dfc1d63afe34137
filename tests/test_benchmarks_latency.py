"""benchmarks/latency/: the quick pass writes JSON + markdown with every section, the run's trained artifacts are
used (and refused when they do not check out), and the verdicts follow the numbers. No timed assertions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import test_bundle_build

from benchmarks.latency.cli import main
from benchmarks.latency.gallery import bench_gallery, cycling
from benchmarks.latency.machine import machine_info
from benchmarks.latency.markdown import markdown
from benchmarks.latency.models import load_models, prune_exports, tower_file
from benchmarks.latency.plan import QUICK
from benchmarks.latency.towers import cosine
from benchmarks.latency.verdicts import check_targets, paper_comparison
from compress.latency import Budget, measure, stats, time_calls
from contracts.artifacts import sha256_file
from contracts.errors import ConfigError


def bench_work_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The benchmarks' export/gallery cache, kept in pytest's cache under a key of the sources exports depend on
    (the demo bundle's key), so a rerun with nothing changed skips the exports; shared with the suites' test."""
    from bundle.demo import source_fingerprint

    if request.config.cache is None:
        return tmp_path_factory.getbasetemp() / "bench-work"
    name = f"sat2sound-bench-work-{source_fingerprint()[:16]}"
    base = request.config.cache.mkdir(name)
    for old in base.parent.glob("sat2sound-bench-work-*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return Path(base)


@pytest.fixture(scope="session")
def bench_work(request, tmp_path_factory) -> Path:
    return bench_work_dir(request, tmp_path_factory)


@pytest.fixture(scope="session")
def demo(request, tmp_path_factory) -> dict[str, Path]:
    return test_bundle_build.demo_folders(request, tmp_path_factory)


TOWERS = ("image", "audio")
RUNTIMES = ("torch", "torch-int8", "ort", "ort-int8")


def test_quick_pass_writes_json_and_markdown(tmp_path, bench_work, demo):
    out = tmp_path / "lat"
    code = main(["--preset", "tiny", "--quick", "--run", str(tmp_path / "no-run"), "--work", str(bench_work),
                 "--out", str(out), "--towers", ",".join(TOWERS), "--runtimes", ",".join(RUNTIMES),
                 "--threads", "1", "--gallery-sizes", "300,1200", "--bundle", str(demo["bundle"]),
                 "--no-progress"])
    assert code == 0
    r = json.loads(out.with_name("lat.json").read_text())
    md = out.with_name("lat.md").read_text()

    m = r["machine"]
    assert r["kind"] == "sat2sound-latency" and r["preset"] == "tiny" and r["quick"] is True
    assert m["cores"] >= 1 and m["threads_tested"] == [1] and m["cpu"]
    assert set(m["versions"]) >= {"torch", "onnxruntime", "ai-edge-litert"} and m["versions"]["torch"]
    assert len(m["load_avg_start"]) == 3 and len(m["load_avg_end"]) == 3

    assert set(r["models"]) == {"teacher", "student"}
    for info in r["models"].values():
        assert info["trained"] is False and info["source"].startswith("untrained")
        assert 0 < info["params"]["image"] < info["params"]["total"]
    assert r["models"]["student"]["preset"] == "student-tiny"

    rows = r["towers"]
    assert {(x["tower"], x["role"], x["runtime"]) for x in rows} == {
        (t, role, rt) for t in TOWERS for role in ("teacher", "student") for rt in RUNTIMES}
    for x in rows:
        assert "error" not in x, x
        s = x["threads"]["1"]
        assert s["n"] >= QUICK.min_runs and 0 < s["min_ms"] <= s["p50_ms"] <= s["p90_ms"]
        floor = 0.9999 if x["runtime"] in ("torch", "ort") else 0.95
        assert x["cosine_to_torch_fp32"] > floor
        assert (x["bytes"] is None) == x["runtime"].startswith("torch")
        if (x["role"], x["runtime"]) == ("teacher", "torch"):
            assert x["speedup_vs_teacher_torch_fp32"]["1"] == 1.0
    names = {h["name"] for h in r["headline_speedups"]}
    assert "student int8 ORT vs teacher PyTorch fp32" in names
    for h in r["headline_speedups"]:
        assert h["speedup"] == pytest.approx(h["base_p50_ms"] / h["p50_ms"], rel=0.02)

    g = r["gallery"]
    assert g["dim"] == 32 and [s["n"] for s in g["sizes"]] == [300, 1200]
    for s in g["sizes"]:
        assert 0.0 <= s["hnsw"]["recall_at_10"] <= 1.0 and s["hnsw"]["ef"] >= 16
        assert s["gallery_mode"] == ("hnsw" if s["hnsw"]["recall_at_10"] >= g["target_recall"] else "exact")
        assert s["exact"]["1"]["n"] >= QUICK.min_runs and s["index_bytes"] > s["n"] * 32 * 4

    e = r["end_to_end"]
    assert e["trained"] is None  # a --bundle that is not the run's: its training state is not claimed
    assert e["runs"] and e["gallery_items"] == 16 and e["runtime_loads"]["onnx"]["file"].startswith("model/")
    for run in e["runs"]:
        assert {"total", "view", "model", "search", "clip"} <= set(run)
        assert run["total"]["p50_ms"] >= run["model"]["p50_ms"] > 0

    p = r["paper"]
    best = min(run["total"]["p50_ms"] for run in e["runs"])
    assert p["latency_ratio"] == pytest.approx(500.0 / best, rel=0.01)
    assert p["student_image_tower_param_ratio"] == pytest.approx(130e6 / r["models"]["student"]["params"]["image"],
                                                                 rel=0.01)
    targets = {t["name"]: t for t in r["targets"]}
    assert any(n.startswith("int8 student image tower, ORT int8") for n in targets)
    for t in r["targets"]:
        if t["measured"] is not None:
            limit = float(t["target"].split()[1])
            assert t["met"] == (t["measured"] < limit)
    assert [p["gallery_n"] for p in r["projected"]] == [300, 1200]

    for heading in ("## Towers", "## Gallery search", "## End to end", "## Targets", "## Against the paper"):
        assert heading in md
    assert "UNTRAINED" in md and "ORT int8" in md


def test_trained_run_artifacts_are_used_and_checked(tmp_path, bench_work):
    import torch

    from core.checkpoint import save_checkpoint
    from core.config import get_preset
    from core.model import build_model

    run = tmp_path / "run"
    cfg = get_preset("tiny")
    torch.manual_seed(7)
    save_checkpoint(build_model(cfg).eval(), cfg, run / "teacher")
    notes: list[str] = []
    models = load_models("tiny", run, ("teacher",), notes=notes)
    t = models["teacher"]
    assert t.trained and t.source == str(run / "teacher") and notes == []

    work = tmp_path / "work"
    path, source = tower_file(t, "image", "ort", work, run)
    assert source.startswith("exported here") and path.is_file()

    # the run's export of this very model is used, once its manifest vouches for the file
    (run / "export" / "onnx").mkdir(parents=True)
    shutil.copy(path, run / "export" / "onnx" / "image.fp32.onnx")
    entry = {"path": "onnx/image.fp32.onnx", "target": "onnx", "tower": "image", "variant": "fp32",
             "sha256": sha256_file(path)}
    manifest = {"source": {"fingerprint": t.fingerprint}, "files": [entry]}
    (run / "export" / "manifest.json").write_text(json.dumps(manifest))
    got, source = tower_file(t, "image", "ort", work, run)
    assert got == run / "export" / "onnx" / "image.fp32.onnx" and str(run / "export") in source

    # a file whose bytes no longer match its manifest is not trusted: the benchmark exports its own
    with open(run / "export" / "onnx" / "image.fp32.onnx", "ab") as f:
        f.write(b"\0")
    got, source = tower_file(t, "image", "ort", work, run)
    assert got == path and source.startswith("exported here")

    # an export of another model is not used either
    manifest["source"]["fingerprint"] = "0" * 64
    entry["sha256"] = sha256_file(run / "export" / "onnx" / "image.fp32.onnx")
    (run / "export" / "manifest.json").write_text(json.dumps(manifest))
    assert tower_file(t, "image", "ort", work, run)[0] == path

    # exports of models no longer benchmarked are pruned from the cache; the current model's stay
    (work / "models" / "0123456789abcdef").mkdir()
    assert prune_exports(work, {t.fingerprint}) == ["0123456789abcdef"] and path.is_file()

    # a checkpoint from a run that has not finished is used, and said so
    (run / "teacher" / "last").mkdir()
    (run / "teacher" / "last" / "state.json").write_text(json.dumps({"step": 5, "total_steps": 40}))
    notes.clear()
    again = load_models("tiny", run, ("teacher",), notes=notes)["teacher"]
    assert again.trained and "run at step 5/40" in again.source and any("still going" in n for n in notes)


def test_broken_run_checkpoints_fall_back_with_a_note(tmp_path):
    import torch

    from core.checkpoint import save_checkpoint
    from core.config import get_preset
    from core.model import build_model

    run = tmp_path / "run"
    cfg = get_preset("tiny")
    torch.manual_seed(3)
    save_checkpoint(build_model(cfg).eval(), cfg, run / "teacher")
    weights = run / "teacher" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-8:] = b"\xff" * 8  # flip weight bytes: the fingerprint no longer matches
    weights.write_bytes(bytes(data))
    (run / "student").mkdir()
    (run / "student" / "manifest.json").write_text(json.dumps({"kind": "sat2sound-gallery"}))
    notes: list[str] = []
    models = load_models("tiny", run, ("teacher", "student"), notes=notes)
    assert not models["teacher"].trained and not models["student"].trained
    assert any("does not load" in n and "teacher" in n for n in notes)
    assert any("sat2sound-gallery" in n for n in notes)


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(SystemExit, match="unknown runtime tensorrt"):
        main(["--preset", "tiny", "--runtimes", "ort,tensorrt", "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="unknown section"):
        main(["--preset", "tiny", "--sections", "towers,disk", "--out", str(tmp_path / "x")])
    with pytest.raises(ConfigError, match="unknown preset"):
        main(["--preset", "huge", "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x.json").exists()


def test_stats_and_time_box():
    s = stats(list(range(1, 11)))
    assert s["n"] == 10 and s["p50_ms"] == 5.5 and s["p90_ms"] == pytest.approx(9.1) and s["min_ms"] == 1
    assert stats([]) == {"n": 0}
    calls = []
    budget = Budget(warmup_calls=3, warmup_s=0.0, run_s=0.0, min_runs=7, max_runs=50)
    assert measure(lambda: calls.append(1), budget)["n"] == 7 and len(calls) == 10
    capped = Budget(warmup_calls=0, warmup_s=0.0, run_s=60.0, min_runs=1, max_runs=25)
    assert measure(lambda: None, capped)["n"] == 25
    # a call too slow for min_runs in the box is cut at hard_s once floor_runs are in, and says so
    slow = Budget(warmup_calls=1, warmup_s=0.0, run_s=0.0, min_runs=50, hard_s=0.0, floor_runs=3)
    s = measure(lambda: None, slow)
    assert s["n"] == 3 and s["time_boxed"] is True
    assert "time_boxed" not in measure(lambda: None, budget)


def test_fixed_count_timing():
    """The compress report's form of the timer: one warm-up, then rounds x runs timed calls, however long."""
    calls = []
    ms = time_calls(lambda: calls.append(1), warmup=3, runs=4, rounds=2)
    assert len(calls) == 3 + 2 * 4 and ms >= 0
    assert Budget.fixed(4, warmup=3) == Budget(warmup_calls=3, warmup_s=0.0, run_s=0.0, min_runs=4, max_runs=4,
                                               hard_s=float("inf"), floor_runs=4)


def test_verdicts_follow_the_numbers():
    one = {"1": {"p50_ms": 12.0, "p90_ms": 13.0}}
    result = {
        "towers": [{"tower": "image", "role": "student", "runtime": "ort-int8", "threads": one},
                   {"tower": "image", "role": "student", "runtime": "litert-int8", "threads": {"1": {"p50_ms": 4.0}}}],
        "end_to_end": {"runs": [{"runtime": "onnx", "threads": 1, "total": {"p50_ms": 20.0}}],
                       "runtime_loads": {"onnx": {"file": "model/image.int8.ort", "bytes": 16_000_000}},
                       "files": {"model/image.int8.ort": 16_000_000}, "total_bytes": 16_000_000},
        "models": {"student": {"params": {"image": 1_300_000, "total": 26_000_000}}},
    }
    met = {t["name"]: t["met"] for t in check_targets(result)}
    assert met["int8 student image tower, ORT int8, p50 at 1 thread"] is False  # 12 ms: a miss, reported
    assert met["int8 student image tower, LiteRT int8, p50 at 1 thread"] is True
    assert met["end to end location -> clip bytes (onnx, 1 thread), p50"] is True
    assert met["device model file (onnx: model/image.int8.ort)"] is False  # 16 MB
    paper = paper_comparison(result)
    assert paper["latency_ratio"] == 25.0 and paper["student_image_tower_param_ratio"] == 100.0
    assert check_targets({})[0]["met"] is None  # not measured is not a pass


def test_cosine_and_cycling():
    assert cosine(np.array([1.0, 0.0]), np.array([2.0, 0.0])) == pytest.approx(1.0)
    seen = []
    call = cycling(lambda q: seen.append(int(q[0])), np.arange(3)[:, None])
    for _ in range(5):
        call()
    assert seen == [0, 1, 2, 0, 1]


def test_gallery_section_on_the_run_teachers_own_embeddings(tmp_path, tiny_cfg, tiny_world):
    from core.checkpoint import save_checkpoint
    from core.model import build_model

    save_checkpoint(build_model(tiny_cfg), tiny_cfg, tmp_path / "run" / "teacher")
    real = (tmp_path / "run" / "teacher", tiny_world)
    dim = tiny_cfg.model.codebook.dim
    g = bench_gallery((250,), dim, (1,), QUICK, tmp_path / "work", kind="teacher", queries=10,
                      progress=False, real=real)
    size = g["sizes"][0]
    assert g["data"] == "teacher" and size["n"] == 250 and 0.0 <= size["hnsw"]["recall_at_10"] <= 1.0
    assert size["gallery_mode"] in ("hnsw", "exact") and not size["index_cached"]
    again = bench_gallery((250,), dim, (1,), QUICK, tmp_path / "work", kind="teacher", queries=10,
                          progress=False, real=real)
    assert again["sizes"][0]["index_cached"]  # vectors and index are reused from the cache
    with pytest.raises(SystemExit, match="needs a run with a trained teacher"):
        bench_gallery((250,), dim, (1,), QUICK, tmp_path / "w2", kind="teacher", progress=False)


def test_gallery_section_tries_ivf_where_hnsw_misses(tmp_path, monkeypatch):
    import gallery.layout

    monkeypatch.setattr(gallery.layout, "TARGET_RECALL", 1.01)  # nothing can reach it: both fallbacks are exercised
    g = bench_gallery((400,), 16, (1,), QUICK, tmp_path / "work", kind="clustered", queries=10,
                      progress=False)
    size = g["sizes"][0]
    from gallery.ivf import default_lists

    assert size["gallery_mode"] == "exact" and size["ivf"]["n_lists"] == default_lists(400) and size["ivf"]["table"]
    assert 0.0 <= size["ivf"]["recall_at_10"] <= 1.0
    result = {"preset": "tiny", "quick": True, "budget": QUICK.__dict__, "notes": [], "gallery": g,
              "machine": machine_info((1,))}
    text = markdown(result)
    assert "the gallery builder tries IVF lists" in text and f"| 400 | {default_lists(400)} |" in text
