"""int8 methods side by side: PT2E static, PT2E dynamic, PT2E + QAT (torchao) and native (per-target tools).

    flock /tmp/sat2sound-bench.lock python -m benchmarks.int8_methods --student runs/demo/student \
        --export runs/demo/export --data runs/demo/world

For each tower (image+metadata, audio, text) and target (ONNX/ORT, TFLite; Core ML: size only, it predicts on macOS
only): mean / min cosine of the int8 embeddings to fp32 on the test split, I2A R@10% and image->text R@10% (zoom 1,
every metadata field; compress/onnx_eval.py's protocol) with retention against the fp32 student and the teacher,
file size, and p50 latency at batch 1 on 1 and 2 threads. fp32 and native files come from a `sat2sound export`
of the int8 folder of the same student (checked by fingerprint); the PT2E files are made here, by compress/pt2e.py,
compress/qat.py and compress/pt2e_lower.py, the code `sat2sound quantize --method pt2e` runs. The per-target
choice (``choose``) is written beside the figures: runs/bench/int8_methods.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from compress.onnx_eval import OrtTowers, cosine_parity, embed_with_ort, retrieval_figures

TOWERS = ("image", "audio", "text")
METHODS = ("fp32", "native", "pt2e-static", "pt2e-dynamic", "pt2e-qat")
RUNTIME_TARGETS = ("onnx", "tflite")
AIM_DROP = 0.01  # the aim: within 1 point of R@10% of the fp32 student


class TfliteTowers:
    """LiteRT interpreters for a set of batch-1 tower files, run row by row (the OrtTowers interface)."""

    def __init__(self, paths: dict[str, Path], threads: int = 1):
        from export.tflite_export import tflite_interpreter

        self.its = {k: tflite_interpreter(p, threads) for k, p in paths.items()}

    def __contains__(self, tower: str) -> bool:
        return tower in self.its

    def run(self, tower: str, feed: dict[str, np.ndarray]) -> np.ndarray:
        from export.tflite_export import run_tflite

        return run_tflite("", feed, interpreter=self.its[tower])


def _size(path: Path) -> int:
    from compress.pt2e_lower import dir_bytes

    return dir_bytes(path)


def make_pt2e(model: Any, cfg: Any, calib: dict[str, list], train: dict[str, list], work: Path, qat_epochs: int,
              progress: bool) -> dict[tuple[str, str, str], Path]:
    """PT2E static / dynamic / QAT of every tower, each lowered to ONNX, TFLite and Core ML."""
    from compress.pt2e import quantize_pt2e_tower
    from compress.pt2e_lower import LOWER_TARGETS, lower
    from compress.qat import QatConfig, qat_pt2e_tower

    files: dict[tuple[str, str, str], Path] = {}
    for tower in TOWERS:
        for method in ("pt2e-static", "pt2e-dynamic", "pt2e-qat"):
            t0 = time.time()
            if method == "pt2e-qat" and tower == "text":
                for target in LOWER_TARGETS:  # the frozen MiniLM is not trained: static PTQ stands in
                    files[(tower, target, method)] = files[(tower, target, "pt2e-static")]
                continue
            if method == "pt2e-qat":
                pt = qat_pt2e_tower(model, cfg, tower, train[tower], QatConfig(epochs=qat_epochs), progress=progress)
            else:
                pt = quantize_pt2e_tower(model, cfg, tower, method.split("-")[1], calib[tower], progress=progress)
            for target in LOWER_TARGETS:
                path, _ = lower(pt, cfg, target, work / method)
                files[(tower, target, method)] = path
            print(f"  {tower} {method}: {time.time() - t0:.0f} s", flush=True)
    return files


def export_files(export_dir: Path) -> dict[tuple[str, str, str], Path]:
    out = {}
    for tower in TOWERS:
        for target, folder, ext, fp in (("onnx", "onnx", "onnx", "fp32"), ("tflite", "tflite", "tflite", "fp32"),
                                        ("coreml", "coreml", "mlpackage", "fp16")):
            out[(tower, target, "fp32")] = export_dir / folder / f"{tower}.{fp}.{ext}"
            out[(tower, target, "native")] = export_dir / folder / f"{tower}.int8.{ext}"
    return out


def latency(path: Path, target: str, feed: dict[str, np.ndarray], threads: int, runs: int) -> float:
    from compress.latency import ort_latency, time_calls
    from export.tflite_export import run_tflite, tflite_interpreter

    if target == "onnx":
        return ort_latency(path, feed, threads, warmup=5, runs=runs, rounds=2)
    it = tflite_interpreter(path, threads)
    return time_calls(lambda: run_tflite(path, feed, interpreter=it), warmup=5, runs=runs, rounds=2)


def evaluate(files: dict, table: Any, cfg: Any, progress: bool) -> dict[str, dict[str, Any]]:
    """Embeddings of the test split per (target, method) and their figures."""
    from compress.onnx_eval import eval_zoom

    emb: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for target in RUNTIME_TARGETS:
        for method in METHODS:
            paths = {t: files[(t, target, method)] for t in TOWERS}
            runner = OrtTowers(paths, 1) if target == "onnx" else TfliteTowers(paths, 1)
            t0 = time.time()
            emb[(target, method)] = embed_with_ort(runner, table, cfg, zoom=eval_zoom(cfg), progress=progress,
                                                   desc=f"{target} {method}")
            print(f"  embedded {target} {method}: {time.time() - t0:.0f} s", flush=True)
    return emb


def tower_rows(files: dict, emb: dict, feeds: dict[str, dict[str, np.ndarray]], runs: int) -> list[dict[str, Any]]:
    rows = []
    keys = {"image": ["image"], "audio": ["audio"], "text": ["audio_caption", "image_caption"]}
    for tower in TOWERS:
        for target in (*RUNTIME_TARGETS, "coreml"):
            for method in METHODS:
                path = files[(tower, target, method)]
                row: dict[str, Any] = {"tower": tower, "target": target, "method": method, "file": str(path),
                                       "bytes": _size(path)}
                if target != "coreml":
                    ref = np.concatenate([emb[(target, "fp32")][k] for k in keys[tower]])
                    got = np.concatenate([emb[(target, method)][k] for k in keys[tower]])
                    row["cosine"] = cosine_parity(got, ref)
                    row["p50_ms"] = {str(n): latency(path, target, feeds[tower], n, runs) for n in (1, 2)}
                rows.append(row)
    return rows


def model_rows(emb: dict, teacher: dict[str, float] | None) -> list[dict[str, Any]]:
    rows = []
    for target in RUNTIME_TARGETS:
        base = retrieval_figures(emb[(target, "fp32")])
        for method in METHODS:
            fig = retrieval_figures(emb[(target, method)])
            row = {"target": target, "method": method, "i2a_r10": fig["i2a_r10"], "i2t_r10": fig["i2t_r10"],
                   "a2i_r10": fig["a2i_r10"],
                   "drop_vs_fp32": {k: base[k] - fig[k] for k in ("i2a_r10", "i2t_r10")}}
            if teacher:
                row["retention_vs_teacher_pct"] = {k: 100.0 * fig[k] / teacher[k] for k in ("i2a_r10", "i2t_r10")}
            rows.append(row)
    return rows


def _meets_aims(towers: list[dict[str, Any]], target: str, method: str) -> list[str]:
    """The issue's size and speed aims a method misses on ``target``: every tower at least 2x smaller than fp32 and
    no slower than fp32 (1-thread p50)."""
    fp32 = {r["tower"]: r for r in towers if r["target"] == target and r["method"] == "fp32"}
    missed = []
    for tower in TOWERS:
        mine = next(r for r in towers if r["target"] == target and r["method"] == method and r["tower"] == tower)
        if mine["bytes"] * 2 > fp32[tower]["bytes"]:
            missed.append(f"{tower} only {fp32[tower]['bytes'] / mine['bytes']:.2f}x smaller")
        if "p50_ms" in mine and mine["p50_ms"]["1"] > fp32[tower]["p50_ms"]["1"]:
            missed.append(f"{tower} slower than fp32 ({mine['p50_ms']['1']:.2f} vs "
                          f"{fp32[tower]['p50_ms']['1']:.2f} ms)")
    return missed


def choose(towers: list[dict[str, Any]], models: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per target, retention first: the int8 methods within ``AIM_DROP`` of fp32 on I2A and image->text R@10% (a
    smaller difference is inside the test split's noise: one query of 600 moves R@10% by 0.0017); among them those
    meeting the size and speed aims (``_meets_aims``), then the fastest (sum over towers of the 1-thread p50).
    Core ML has no numbers here but sizes: the smallest files among the methods that kept retention elsewhere."""
    out = {}
    kept: set[str] = set()
    for target in RUNTIME_TARGETS:
        cands = [m for m in models if m["target"] == target and m["method"] != "fp32"]
        speed = {m["method"]: sum(r["p50_ms"]["1"] for r in towers if r["target"] == target
                                  and r["method"] == m["method"]) for m in cands}
        within = [m for m in cands if max(m["drop_vs_fp32"].values()) <= AIM_DROP]
        kept |= {m["method"] for m in within}
        aims = {m["method"]: _meets_aims(towers, target, m["method"]) for m in within}
        meeting = [m for m in within if not aims[m["method"]]]
        pool = meeting or within
        if pool:
            best = min(pool, key=lambda m: speed[m["method"]])
            why = (f"within {AIM_DROP} R@10% of fp32 ({len(within)} methods), "
                   + ("meets the size and speed aims" if meeting else "none meets every size/speed aim")
                   + f", fastest of those ({speed[best['method']]:.2f} ms, 3 towers, 1 thread)")
            others = {k: v for k, v in aims.items() if v and k != best["method"]}
            if others:
                why += "; missed aims: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in others.items())
        else:
            best = min(cands, key=lambda m: max(m["drop_vs_fp32"].values()))
            why = "no method within the aim; smallest worst drop"
        out[target] = {"method": best["method"], "why": why}
    sizes = {m: sum(r["bytes"] for r in towers if r["target"] == "coreml" and r["method"] == m)
             for m in METHODS if m != "fp32" and m in (kept or set(METHODS))}
    core = min(sizes, key=sizes.get)
    out["coreml"] = {"method": core, "why": "no predict on Linux: the smallest files ("
                     + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sizes.items())
                     + ") among the methods that kept retention on ONNX / TFLite"}
    return out


def write_md(res: dict[str, Any], path: Path) -> None:
    lines = [f"# int8 methods ({res['student']})", "", f"Machine: {res['machine']}; load before / after: "
             f"{res['load_before']} / {res['load_after']}; test split N={res['n']}, zoom 1, all metadata.", "",
             "## Retrieval (test split)", "",
             "| target | method | I2A R@10% | image->text R@10% | drop vs fp32 (I2A / I2T) "
             "| vs teacher % (I2A / I2T) |",
             "|---|---|---:|---:|---|---|"]
    for m in res["models"]:
        ret = m.get("retention_vs_teacher_pct", {})
        lines.append(f"| {m['target']} | {m['method']} | {m['i2a_r10']:.3f} | {m['i2t_r10']:.3f} | "
                     f"{m['drop_vs_fp32']['i2a_r10']:+.3f} / {m['drop_vs_fp32']['i2t_r10']:+.3f} | "
                     + (f"{ret['i2a_r10']:.1f} / {ret['i2t_r10']:.1f} |" if ret else "- |"))
    lines += ["", "## Towers", "", "| tower | target | method | MB | cos mean | cos min | p50 1t ms | p50 2t ms |",
              "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in res["towers"]:
        c, p = r.get("cosine"), r.get("p50_ms")
        lines.append(f"| {r['tower']} | {r['target']} | {r['method']} | {r['bytes'] / 1e6:.2f} | "
                     + (f"{c['mean']:.5f} | {c['min']:.4f} | {p['1']:.2f} | {p['2']:.2f} |" if c else
                        "- | - | - | - |"))
    lines += ["", "## Chosen per target", ""]
    lines += [f"- {t}: **{v['method']}** ({v['why']})" for t, v in res["choice"].items()]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    import torch

    from compress.calibration import open_calibration_table, table_batches
    from contracts.errors import ConfigError
    from core.checkpoint import load_checkpoint
    from core.data.features import FeatureTable

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", default="runs/demo/student")
    ap.add_argument("--export", default="runs/demo/export", help="export of the student's int8 folder (fp32, native)")
    ap.add_argument("--data", default="runs/demo/world")
    ap.add_argument("--teacher-report", default="runs/demo/compress/report.json",
                    help="compress report whose 'teacher fp32' row gives the teacher's figures (same protocol)")
    ap.add_argument("--calib-size", type=int, default=256)
    ap.add_argument("--qat-epochs", type=int, default=2)
    ap.add_argument("--qat-samples", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=40, help="timed runs per latency round")
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--rechoose", action="store_true", help="only redo the choice and the .md from the .json")
    args = ap.parse_args(argv)
    if args.rechoose:
        path = Path(args.out) / "int8_methods.json"
        res = json.loads(path.read_text())
        res["choice"] = choose(res["towers"], res["models"])
        path.write_text(json.dumps(res, indent=2) + "\n")
        write_md(res, path.with_suffix(".md"))
        print(path.with_suffix(".md").read_text())
        return 0
    torch.set_num_threads(2)
    progress = not args.no_progress
    load_before = os.getloadavg()
    loaded = load_checkpoint(args.student)
    model, cfg = loaded.model.eval(), loaded.cfg
    manifest = json.loads((Path(args.export) / "manifest.json").read_text())
    if manifest["source"]["fingerprint"] != loaded.fingerprint:
        raise ConfigError(f"{args.export} was not exported from {args.student} (fingerprints differ)")
    teacher = None
    if Path(args.teacher_report).is_file():
        rows = json.loads(Path(args.teacher_report).read_text())["rows"]
        teacher = next((r["retrieval"] for r in rows if r["model"] == "teacher fp32"), None)
    calib_table = open_calibration_table(args.data, cfg, progress=progress)
    calib = {t: table_batches(calib_table, cfg, t, n_samples=args.calib_size) for t in TOWERS}
    train = {t: table_batches(calib_table, cfg, t, n_samples=args.qat_samples, seed=1) for t in ("image", "audio")}
    test = FeatureTable.build(args.data, "test", cfg, progress=progress)
    feeds = {t: {k: v[:1] for k, v in calib[t][0].items()} for t in TOWERS}
    files = export_files(Path(args.export))
    out = Path(args.out)
    work = out / "int8_methods_files"
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with tempfile.TemporaryDirectory(dir=out):
        files.update(make_pt2e(model, cfg, calib, train, work, args.qat_epochs, progress))
    make_s = time.time() - t0
    emb = evaluate(files, test, cfg, progress)
    towers = tower_rows(files, emb, feeds, args.runs)
    models = model_rows(emb, teacher)
    res = {"student": args.student, "fingerprint": loaded.fingerprint, "n": len(test),
           "machine": f"{platform.machine()}, {os.cpu_count()} cores", "load_before": [round(x, 2) for x in
                                                                                     load_before],
           "load_after": [round(x, 2) for x in os.getloadavg()], "pt2e_seconds": round(make_s, 1),
           "teacher": teacher, "aim_drop": AIM_DROP, "towers": towers, "models": models,
           "choice": choose(towers, models)}
    (out / "int8_methods.json").write_text(json.dumps(res, indent=2) + "\n")
    write_md(res, out / "int8_methods.md")
    print((out / "int8_methods.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
