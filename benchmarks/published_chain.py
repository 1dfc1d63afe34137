"""The latency and chain sections of ``benchmarks.published_model``: the imported paper-size teacher's towers on
each runtime, and the whole chain (world subset -> distil -> int8 -> export -> gallery -> bundle) from it, each
stage run as the ``sat2sound`` command a user types."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
from pathlib import Path
from typing import Any

from compress.latency import Budget

logger = logging.getLogger(__name__)

RUNTIMES = ("torch", "ort", "ort-int8", "litert", "litert-int8")
TOWERS = ("image", "audio", "text")
# paper-size calls take 0.1-2 s: a few timed calls each, boxed
BUDGET = Budget(warmup_calls=1, warmup_s=0.0, run_s=4.0, min_runs=3, max_runs=50, hard_s=10.0, floor_runs=3)
PAPER_CPU_MS = 500.0
FULL_WORLD_TRAIN = 4800  # the world's default 6000 samples, 80% train
REGION = "-90.25,38.60,-90.20,38.65"  # about 4 x 5.5 km of St. Louis: the paper-size tiles cover ~200 m each


def latency(teacher: Path, work: Path, threads: tuple[int, ...]) -> dict[str, Any]:
    """Batch-1 latency of the teacher's towers and an untrained paper-size student's, per runtime and thread count
    (benchmarks.latency's own timing code and exported files)."""
    from benchmarks.latency.models import ModelEntry
    from benchmarks.latency.towers import bench_towers, speedups
    from compress.student import build_student, with_teacher_text_location
    from core.checkpoint import fingerprint_state, load_checkpoint
    from core.config import get_preset, student_preset_for

    loaded = load_checkpoint(teacher)
    student_cfg = with_teacher_text_location(get_preset(student_preset_for(loaded.cfg.name)), loaded.cfg)
    student = build_student(loaded.model, student_cfg, seed=0).eval()
    entries = {
        "teacher": ModelEntry("teacher", loaded.model, loaded.cfg, loaded.fingerprint, False,
                              f"imported stand-in ({teacher})", _params(loaded.model)),
        "student": ModelEntry("student", student, student_cfg, fingerprint_state(student.state_dict()), False,
                              f"untrained {student_cfg.name}", _params(student)),
    }
    rows = bench_towers(entries, TOWERS, RUNTIMES, threads, BUDGET, work / "latency", None)
    speedups(rows, threads)
    return {"rows": rows, "params": {k: e.params for k, e in entries.items()}, "paper_cpu_ms": PAPER_CPU_MS}


def _params(model: Any) -> dict[str, int]:
    from compress.student import tower_parameters

    text = sum(p.numel() for p in model.text_backbone.model.parameters())
    return {t: tower_parameters(model, t) for t in ("image", "audio", "text")} | {"text_backbone": text}


def latency_markdown(lat: dict[str, Any], threads: list[int]) -> list[str]:
    head = " | ".join(f"p50 ms @{t}" for t in threads)
    lines = ["## The towers at batch 1", "",
             f"| tower | model | runtime | {head} | MB | cosine to PyTorch fp32 |",
             "|---|---|---|" + "---:|" * len(threads) + "---:|---:|"]
    for r in lat["rows"]:
        if r.get("error"):
            lines.append(f"| {r['tower']} | {r['role']} | {r['runtime']} | " + " | ".join("-" for _ in threads)
                         + f" | - | failed: {r['error']} |")
            continue
        p50 = " | ".join(f"{r['threads'][str(t)]['p50_ms']:.0f}" if str(t) in r["threads"] else "-" for t in threads)
        mb = f"{r['bytes'] / 1e6:.1f}" if r.get("bytes") else "-"
        cos = f"{r['cosine_to_torch_fp32']:.5f}" if "cosine_to_torch_fp32" in r else "-"
        lines.append(f"| {r['tower']} | {r['role']} | {r['runtime']} | {p50} | {mb} | {cos} |")
    p = lat["params"]
    lines += ["", f"The paper's CPU figure for retrieval-based synthesis: {lat['paper_cpu_ms']:.0f} ms. Parameters: "
              + "; ".join(f"{role} " + ", ".join(f"{k} {v / 1e6:.1f}M" for k, v in counts.items())
                          for role, counts in p.items()), ""]
    return lines


# ------------------------------------------------------------------------------------------------------- chain


def _run(argv: list[str]) -> dict[str, Any]:
    """One ``sat2sound`` command, timed; its last lines of output and its exit status."""
    from core.cli import main

    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except Exception as exc:  # a crash in a stage is a finding of the benchmark
            rc, err = 99, io.StringIO(f"{type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - t0
    tail = [line for line in (out.getvalue() + err.getvalue()).splitlines() if line.strip()][-6:]
    logger.info("sat2sound %s: rc %s in %.0f s", argv[0], rc, seconds)
    return {"command": "sat2sound " + " ".join(argv), "rc": rc, "seconds": round(seconds, 1), "tail": tail}


def chain(teacher: Path, work: Path, *, samples: int, steps: int) -> dict[str, Any]:
    """Every stage after the import, on ``samples`` world samples; a failing stage is recorded and the stages
    that need its output are skipped."""
    from core.checkpoint import read_config

    cfg = read_config(teacher)
    c = work / "chain"
    data, student, int8, export = c / "world", c / "student", c / "int8", c / "export"
    gallery, bundle = c / "gallery", c / "bundle"
    stages: list[tuple[str, list[str], tuple[str, ...]]] = [
        ("world", ["data", "build", "--preset", cfg.name, "--out", str(data), "--n-samples", str(samples),
                   "--audio", "synthetic", "--no-progress"], ()),
        ("distill", ["distill", "--ckpt", str(teacher), "--data", str(data), "--out", str(student), "--epochs",
                     str(steps), "--no-progress", "--cache-dir", str(c / "cache")], ("world",)),
        ("int8", ["quantize", "--ckpt", str(student), "--calib", str(data), "--out", str(int8), "--max-drop", "1.0",
                  "--cache-dir", str(c / "cache" / "onnx")], ("distill",)),
        ("export", ["export", "--ckpt", str(int8), "--target", "onnx,ort,tflite,coreml", "--out", str(export),
                    "--force", "--int8-min-cos", "0.0", "--no-progress"], ("int8",)),
        ("gallery", ["gallery", "build", "--ckpt", str(teacher), "--captions", str(data), "--renderer",
                     "procedural", "--limit", "48", "--out", str(gallery), "--no-progress"], ("world",)),
        ("bundle", ["bundle", "--export", str(export), "--gallery", str(gallery), "--region", REGION, "--out",
                    str(bundle), "--force"], ("export", "gallery")),
    ]
    done: dict[str, dict[str, Any]] = {}
    for name, argv, needs in stages:
        failed = [n for n in needs if done.get(n, {}).get("rc") != 0]
        done[name] = {"skipped": f"needs {', '.join(failed)}"} if failed else _run(argv)
    return {"stages": done, "samples": samples, "distill": _distill_figures(student)}


def _distill_figures(student: Path) -> dict[str, Any]:
    """Teacher targets per second (the cached targets' own record), the epochs' wall time and the retention (the
    student's log)."""
    from safetensors import safe_open

    out: dict[str, Any] = {}
    targets = student / "teacher_targets.safetensors"
    if targets.is_file():
        with safe_open(str(targets), framework="numpy") as fh:
            meta = dict(fh.metadata() or {})
        if "compute_seconds" in meta:
            seconds, samples = float(meta["compute_seconds"]), int(meta["samples"])
            out["teacher_targets"] = {"samples": samples, "seconds": seconds, "per_second": samples / seconds}
    manifest = student / "manifest.json"
    if manifest.is_file():
        out["teacher_val"] = json.loads(manifest.read_text()).get("teacher_val")
    log = student / "distill_log.jsonl"
    if log.is_file():
        out["log"] = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return out


def chain_markdown(ch: dict[str, Any]) -> list[str]:
    lines = [f"## The chain from the imported teacher ({ch['samples']} world samples)", "",
             "| stage | exit | seconds | last line |", "|---|---:|---:|---|"]
    for name, r in ch["stages"].items():
        if "skipped" in r:
            lines.append(f"| {name} | - | - | skipped: {r['skipped']} |")
        else:
            last = (r["tail"] or [""])[-1].replace("|", "/")[:160]
            lines.append(f"| {name} | {r['rc']} | {r['seconds']} | {last} |")
    d = ch.get("distill") or {}
    if d.get("teacher_targets"):
        t = d["teacher_targets"]
        lines.append(f"Teacher targets (image at every zoom, audio, both captions per sample): {t['samples']} samples "
                     f"in {t['seconds']:.0f} s, {t['per_second']:.2f} samples/s; for the full world's "
                     f"{FULL_WORLD_TRAIN} training samples that is {FULL_WORLD_TRAIN / t['per_second'] / 60:.0f} "
                     "minutes, once (the targets are cached).")
    epochs = [e for e in d.get("log", []) if e.get("kind") == "epoch"]
    if epochs:
        last = epochs[-1]
        best = next((e for e in reversed(epochs) if e.get("best")), last)
        ret = best.get("retention_pct") or {}
        tv, sv = d.get("teacher_val") or {}, best["val"]
        retention = (f"retention I2A {ret['i2a_r10']}%, I2T {ret['i2t_r10']}%" if ret.get("i2a_r10") is not None
                     else "retention undefined (the teacher's own R@10% is 0 on these rows)")
        lines.append(f"Distillation: {len(epochs)} epoch(s) of {last['step'] // len(epochs)} step(s), "
                     f"{last['epoch_seconds']:.0f} s per epoch ({last['samples_per_s']:.1f} samples/s); at that rate "
                     f"an epoch over the full world's {FULL_WORLD_TRAIN} training samples takes "
                     f"{FULL_WORLD_TRAIN / last['samples_per_s'] / 60:.0f} minutes on this machine. On the "
                     f"{sv['n']} validation rows: student I2A R@10% {sv['i2a_r10']:.3f} (median rank "
                     f"{sv['i2a_mr']:.1f}), teacher {tv.get('i2a_r10', float('nan')):.3f} (median rank "
                     f"{tv.get('i2a_mr', float('nan')):.1f}); {retention}.")
    lines.append("")
    return lines
