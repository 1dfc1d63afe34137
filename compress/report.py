"""`sat2sound compress-report`: teacher vs student (fp32) vs student (int8) in one table, with the targets checked.

    sat2sound compress-report --teacher T --student S --int8 Q --data DIR [--split test] --out FILE.md

Per model: parameters (all, and the image tower's), file sizes (image tower ONNX; the checkpoint, or for the
int8 model the int8 towers it ships), CPU latency of the image tower at batch 1 with 1 and 2 threads in ONNX
Runtime and PyTorch, and retrieval on the split (zoom 1, every metadata field): I2A, A2I, image->text R@10% and
median rank, with the retention of each R@10% in percent of the teacher's. fp32 models are scored with PyTorch,
the int8 model with ONNX Runtime on its int8 towers (the fp32 graphs match PyTorch to ~1e-6, export/).
The compression targets are checked at the end: int8 keeps >= 95% of the teacher's I2A and image->text R@10%, its
image tower is >= 5x smaller on disk and >= 3x faster (ORT, batch 1) than the teacher's.
The three folders must belong together (fingerprints): the int8 folder made from this student, the student
distilled from this teacher. Writes FILE.md and FILE.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from compress.latency import ort_latency, torch_latency
from contracts.artifacts import QUANT_FILE, QUANTIZED_TOWERS, WEIGHTS_FILE, ArtifactKind
from contracts.errors import CheckpointError, ConfigError
from core.cli_args import add_shared

TARGETS = {"retention_pct": 95.0, "size_ratio": 5.0, "speed_ratio": 3.0}
METRICS = ("i2a_r10", "i2a_mr", "a2i_r10", "a2i_mr", "i2t_r10", "i2t_mr")
R10 = ("i2a_r10", "a2i_r10", "i2t_r10")


def check_lineage(teacher: Any, student: Any, int8_manifest: dict[str, Any], int8_path: Path) -> list[str]:
    """CheckpointError unless int8 <- student <- teacher by fingerprint; returns notes for softer mismatches."""
    notes = []
    if int8_manifest.get("kind") != ArtifactKind.INT8:
        raise CheckpointError(f"{int8_path} is not an int8 model folder (kind {int8_manifest.get('kind')!r}, "
                              f"expected {ArtifactKind.INT8.value!r}); make one with `sat2sound quantize`")
    if int8_manifest.get("source_fingerprint") != student.fingerprint:
        source = str(int8_manifest.get("source_fingerprint"))[:12]
        raise CheckpointError(f"{int8_path} was quantized from model {source}, not from the student {student.path} "
                              f"({student.fingerprint[:12]})")
    t_fp = student.manifest.get("teacher_fingerprint")
    if t_fp is None:
        notes.append(f"{student.path} records no teacher; it is compared with {teacher.path} as given")
    elif t_fp != teacher.fingerprint:
        raise CheckpointError(f"the student {student.path} was distilled from teacher {t_fp[:12]}, not from "
                              f"{teacher.path} ({teacher.fingerprint[:12]})")
    return notes


def _torch_figures(model: Any, table: Any, zoom: int, progress: bool) -> dict[str, float]:
    from compress.onnx_eval import retrieval_figures
    from core.evaluate import embed_table

    emb = embed_table(model, table, [zoom], ["all"], progress=progress, desc="fp32 embeddings")
    return retrieval_figures({"image": emb["image"][(zoom, "all")], "audio": emb["audio"],
                              "image_caption": emb["image_caption"][zoom]})


def _latencies(onnx_path: Path | None, model: Any, feed: dict[str, np.ndarray], threads: tuple[int, ...],
               runs: int) -> dict[str, float | None]:
    import torch

    out: dict[str, float | None] = {}
    for t in threads:
        out[f"ort_{t}"] = ort_latency(onnx_path, feed, t, runs=runs) if onnx_path is not None else None
    if model is not None:
        from export.towers import ImageTower, tower_inputs

        tower = ImageTower(model.eval()).eval()
        args = tuple(torch.from_numpy(feed[k]) for k in tower_inputs("image"))
        for t in threads:
            out[f"torch_{t}"] = torch_latency(tower, args, t, runs=runs)
    else:
        for t in threads:
            out[f"torch_{t}"] = None
    return out


def compress_report(teacher: str | Path, student: str | Path, int8: str | Path, data: str | Path, *,
                    split: str = "test", threads: tuple[int, ...] = (1, 2), runs: int = 50,
                    cache_dir: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Measure the three models (see the module docstring); returns the JSON-able report."""
    from compress.onnx_eval import OrtTowers, embed_with_ort, eval_zoom, retrieval_figures, torch_text_fallback
    from compress.onnx_feeds import image_feed
    from compress.quantize import export_fp32, int8_filename
    from compress.student import tower_parameters
    from core.checkpoint import load_checkpoint, read_manifest
    from core.data.features import FeatureTable
    from core.model import count_parameters

    t_loaded, s_loaded = load_checkpoint(teacher), load_checkpoint(student)
    int8 = Path(int8)
    q_loaded = load_checkpoint(int8)
    q_manifest = read_manifest(int8)
    notes = check_lineage(t_loaded, s_loaded, q_manifest, int8)
    quant = json.loads((int8 / QUANT_FILE).read_text()) if (int8 / QUANT_FILE).is_file() else {}
    q_towers = {t: int8 / int8_filename(t) for t in QUANTIZED_TOWERS if (int8 / int8_filename(t)).is_file()}
    if "image" not in q_towers or "audio" not in q_towers:
        raise CheckpointError(f"{int8} lacks the int8 image or audio tower")

    t_table = FeatureTable.build(data, split, t_loaded.cfg, progress=progress)
    s_table = FeatureTable.build(data, split, s_loaded.cfg, progress=progress)
    if len(s_table) < 2:
        raise ConfigError(f"split {split!r} of {data} has {len(s_table)} sample(s); retrieval needs at least 2")
    zoom = eval_zoom(s_loaded.cfg)

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="s2s-report-") as work:
        work = Path(work)
        for name, loaded, table in (("teacher fp32", t_loaded, t_table), ("student fp32", s_loaded, s_table)):
            onnx_path = export_fp32(loaded.model.eval(), loaded.cfg, "image", work / name.split()[0],
                                    fingerprint=loaded.fingerprint, cache_dir=cache_dir)
            feed = image_feed(table.batch([0], zoom=zoom))
            rows.append({
                "model": name, "path": str(loaded.path), "preset": loaded.cfg.name,
                "parameters": count_parameters(loaded.model),
                "image_tower_parameters": tower_parameters(loaded.model, "image"),
                "image_onnx_bytes": onnx_path.stat().st_size,
                "model_bytes": (loaded.path / WEIGHTS_FILE).stat().st_size, "model_file": WEIGHTS_FILE,
                "latency_ms": _latencies(onnx_path, loaded.model, feed, threads, runs),
                "retrieval": _torch_figures(loaded.model, table, zoom, progress),
            })
        feed = image_feed(s_table.batch([0], zoom=zoom))
        fallback = None if "text" in q_towers else torch_text_fallback(s_loaded.model)
        q_emb = embed_with_ort(OrtTowers(q_towers), s_table, s_loaded.cfg, zoom=zoom, text_fallback=fallback,
                               progress=progress, desc="int8 towers")
        rows.append({
            "model": "student int8", "path": str(int8), "preset": q_loaded.cfg.name,
            "scheme": quant.get("scheme", q_manifest.get("scheme")),
            "parameters": count_parameters(q_loaded.model),
            "image_tower_parameters": tower_parameters(q_loaded.model, "image"),
            "image_onnx_bytes": q_towers["image"].stat().st_size,
            "model_bytes": sum(p.stat().st_size for p in q_towers.values()),
            "model_file": " + ".join(p.name for p in q_towers.values()),
            "latency_ms": _latencies(q_towers["image"], None, feed, threads, runs),
            "retrieval": retrieval_figures(q_emb),
            "text": "int8 text tower" if "text" in q_towers else "fp32 PyTorch text path",
        })
    base = rows[0]["retrieval"]
    for row in rows:
        row["retention_pct"] = {k: (round(100.0 * row["retrieval"][k] / base[k], 1) if base.get(k) else None)
                                for k in R10}
    teacher_row, int8_row = rows[0], rows[2]
    ort1 = f"ort_{threads[0]}"
    size_ratio = teacher_row["image_onnx_bytes"] / int8_row["image_onnx_bytes"]
    speed = {f"ort_{t}": teacher_row["latency_ms"][f"ort_{t}"] / int8_row["latency_ms"][f"ort_{t}"]
             for t in threads}
    checks = {
        "i2a_retention": _check(int8_row["retention_pct"]["i2a_r10"], TARGETS["retention_pct"], "%"),
        "i2t_retention": _check(int8_row["retention_pct"]["i2t_r10"], TARGETS["retention_pct"], "%"),
        "image_tower_size_ratio": _check(size_ratio, TARGETS["size_ratio"], "x"),
        "image_tower_speed_ratio": _check(speed[ort1], TARGETS["speed_ratio"], "x"),
    }
    return {"kind": ArtifactKind.COMPRESS_REPORT, "data": str(data), "split": t_table.split, "n": len(s_table),
            "zoom": zoom, "metadata": "all", "threads": list(threads), "runs": runs, "rows": rows,
            "speed_ratio": speed, "size_ratio": size_ratio, "checks": checks, "notes": notes,
            "machine_note": "latency on a shared CPU: minimum over rounds of the median of runs"}


def _check(value: float | None, target: float, unit: str) -> dict[str, Any]:
    return {"value": value, "target": target, "unit": unit, "passed": value is not None and value >= target}


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f}"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def to_markdown(rep: dict[str, Any]) -> str:
    th = rep["threads"]
    lines = [f"# Compression report: {rep['split']} split, N = {rep['n']}, zoom {rep['zoom']}, all metadata", "",
             f"- data: `{rep['data']}`",
             "- latency: image tower, batch 1, CPU; " + rep["machine_note"],
             "- fp32 rows scored with PyTorch, the int8 row with ONNX Runtime on its int8 towers", ""]
    lines += [f"- note: {n}" for n in rep["notes"]]
    lat_cols = [f"ORT {t}t ms" for t in th] + [f"PyTorch {t}t ms" for t in th]
    lines += ["## Size and speed", "",
              "| model | preset | params | image-tower params | image ONNX MB | model MB | "
              + " | ".join(lat_cols) + " |",
              "|---|---|---:|---:|---:|---:|" + "---:|" * len(lat_cols)]
    for r in rep["rows"]:
        lat = [_ms(r["latency_ms"][f"ort_{t}"]) for t in th] + [_ms(r["latency_ms"][f"torch_{t}"]) for t in th]
        lines.append(f"| {r['model']} | {r['preset']} | {r['parameters']:,} | {r['image_tower_parameters']:,} | "
                     f"{_mb(r['image_onnx_bytes'])} | {_mb(r['model_bytes'])} | " + " | ".join(lat) + " |")
    lines += ["", "model MB: the fp32 checkpoint (model.safetensors); for int8, the int8 ONNX towers it ships.", "",
              "## Retrieval", "",
              "| model | I2A R@10% | I2A MR | A2I R@10% | A2I MR | I2T R@10% | I2T MR | I2A ret. % | A2I ret. % | "
              "I2T ret. % |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rep["rows"]:
        f, ret = r["retrieval"], r["retention_pct"]
        lines.append(f"| {r['model']} | {f['i2a_r10']:.3f} | {f['i2a_mr']:.1f} | {f['a2i_r10']:.3f} | "
                     f"{f['a2i_mr']:.1f} | {f['i2t_r10']:.3f} | {f['i2t_mr']:.1f} | "
                     + " | ".join("-" if ret[k] is None else f"{ret[k]:.1f}" for k in R10) + " |")
    lines += ["", "## Targets", "", "| check | value | target | result |", "|---|---:|---:|---|"]
    for name, c in rep["checks"].items():
        value = "-" if c["value"] is None else f"{c['value']:.2f}{c['unit']}"
        lines.append(f"| {name.replace('_', ' ')} | {value} | >= {c['target']:g}{c['unit']} | "
                     f"{'PASS' if c['passed'] else 'FAIL'} |")
    lines.append("")
    return "\n".join(lines)


def write_report(rep: dict[str, Any], out: str | Path) -> tuple[Path, Path]:
    out = Path(out)
    md = out if out.suffix.lower() == ".md" else out.with_suffix(out.suffix + ".md" if out.suffix else ".md")
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(to_markdown(rep))
    js = md.with_suffix(".json")
    js.write_text(json.dumps(rep, indent=2) + "\n")
    return md, js


# ----------------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--teacher", required=True, help="teacher checkpoint folder")
    parser.add_argument("--student", required=True, help="student checkpoint folder (from `sat2sound distill`)")
    parser.add_argument("--int8", required=True, help="int8 folder (from `sat2sound quantize` on the student)")
    parser.add_argument("--data", required=True, help="dataset folder")
    parser.add_argument("--split", default="test", help="split to score (default test)")
    parser.add_argument("--out", required=True, help="FILE.md (FILE.json is written beside it)")
    parser.add_argument("--threads", default="1,2", help="thread counts to time (default 1,2)")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per round (3 rounds, min of medians)")
    add_shared(parser, "cache-dir", "no-progress")


def run(args: argparse.Namespace) -> int:
    try:
        threads = tuple(int(t) for t in args.threads.split(",") if t.strip())
    except ValueError:
        raise ConfigError(f"--threads must be comma-separated integers, got {args.threads!r}") from None
    if not threads or min(threads) < 1:
        raise ConfigError("--threads needs at least one count >= 1")
    if args.runs < 1:
        raise ConfigError("--runs must be >= 1")
    rep = compress_report(args.teacher, args.student, args.int8, args.data, split=args.split, threads=threads,
                          runs=args.runs, cache_dir=args.cache_dir, progress=not args.no_progress)
    md, js = write_report(rep, args.out)
    print(to_markdown(rep))
    print(f"wrote {md} and {js}")
    return 0


if __name__ == "__main__":
    from core.cli import main

    sys.exit(main(["compress-report", *sys.argv[1:]]))
