"""The pipeline's final report: one markdown page (+ JSON) gathering what every stage measured.

It only reads the stages' own outputs (each stage writes its figures as JSON/markdown beside its artifact), so it can
be regenerated at any time with ``python -m core.report RUN_DIR``; a stage that has not run yet is listed as missing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from contracts.artifacts import MANIFEST_FILE, WORLD_FILE

# The paper's headline figures (Table 1 at zoom 1, I2A R@10% / median rank; Table 2 image->text).
PAPER = {
    "GeoSound-Bing, no metadata": {"GeoCLAP": "0.399 / 1500", "PSM": "0.423 / 1401", "Sat2Sound": "0.534 / 872"},
    "GeoSound-Bing, metadata": {"PSM": "0.828 / 261", "Sat2Sound": "0.871 / 168"},
    "SoundingEarth, no metadata": {"GeoCLAP": "0.454 / 667", "PSM": "0.514 / 547", "Sat2Sound": "0.570 / 438"},
    "SoundingEarth, metadata": {"PSM": "0.563 / 454", "Sat2Sound": "0.626 / 358"},
    "image->text R@10% (GeoSound-Bing, mean over zooms)": {"Sat2Sound no meta": "0.898", "Sat2Sound meta": "0.923"},
}


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _section(title: str, body: str | None, missing: str) -> list[str]:
    return [f"## {title}", "", body if body else f"_Not available: {missing}._", ""]


def _world(run: Path) -> tuple[str | None, dict]:
    meta = _json(run / "world" / WORLD_FILE)
    if not meta:
        return None, {}
    lines = [f"- samples per split: {meta.get('counts')}", f"- fingerprint: `{str(meta.get('fingerprint'))[:16]}`"]
    oracle = _json(run / "eval" / "oracle.json")
    if oracle is None and (run / "world" / WORLD_FILE).exists():
        try:
            from world.oracle import oracle_r10

            oracle = oracle_r10(run / "world", split="test")
            (run / "eval").mkdir(parents=True, exist_ok=True)
            (run / "eval" / "oracle.json").write_text(json.dumps(oracle, indent=1))
        except Exception as exc:  # the report must not die on one part
            lines.append(f"- oracle: could not be computed ({exc})")
    if oracle:
        lines.append(f"- oracle that knows each place's true plausible sources: image->audio R@10% "
                     f"{oracle['i2a']['r10']:.3f} (median rank {oracle['i2a']['median_rank']:.0f} of {oracle['n']}); "
                     "the world is honestly one-to-many, so even perfect knowledge does not reach 1")
    return "\n".join(lines), {"world": meta.get("counts"), "oracle": oracle}


def _maps(run: Path) -> tuple[str | None, list]:
    rows, out = [], []
    for f in sorted((run / "maps").glob("summary-*.json")):
        s = _json(f) or {}
        for q in s.get("queries", []):
            if "auc" in q:
                rows.append(f"| {s['bbox']} | {s['tiles']} | {q['query']} | {', '.join(q['sources'])} | "
                            f"{q['auc']:.3f} | {q['spearman']:.3f} | {q['query_ms']:.2f} |")
                out.append({"bbox": s["bbox"], **q})
    if not rows:
        return None, []
    head = ["| region | tiles | query | sources it names | ROC-AUC | Spearman | query ms |",
            "|---|---|---|---|---|---|---|"]
    pngs = sorted((run / "maps").glob("map-*.png"))[:2]
    pics = "\n".join(f"![{p.stem}](maps/{p.name})" for p in pngs)
    return "\n".join(head + rows) + "\n\n" + pics, out


def _export_table(manifest: dict) -> str:
    """Every exported file with its size and parity against PyTorch, then the retrieval check of the exports."""
    sizes = {f.get("path"): f.get("bytes") for f in manifest.get("files", [])}
    parity = manifest.get("parity") or {}
    rows = ["| file | MB | min cosine | mean cosine | gate | passed |", "|---|---:|---:|---:|---|---|"]
    methods = (manifest.get("quantization") or {}).get("methods")
    if methods:  # which int8 implementation each target's files come from (docs/int8_methods.md)
        rows = ["int8 method per target: " + ", ".join(f"{t} **{m}**" for t, m in methods.items()) + ".", ""] + rows
    for f in parity.get("files", []):
        if not f.get("ran"):
            rows.append(f"| {f['file']} | {(sizes.get(f['file']) or 0) / 1e6:.2f} | - | - | not run here "
                        f"({f.get('note') or f.get('reason') or 'needs another platform'}) | - |")
            continue
        rows.append(f"| {f['file']} | {(sizes.get(f['file']) or 0) / 1e6:.2f} | {f['min_cosine']:.5f} | "
                    f"{f['mean_cosine']:.5f} | {f['gate']} >= {f['threshold']} | {'yes' if f['passed'] else 'NO'} |")
    ret = parity.get("retrieval") or {}
    if ret.get("files"):
        rows += ["", f"I2A R@10% on the {ret.get('split')} split (N={ret.get('n')}, zoom {ret.get('zoom')}): PyTorch "
                 f"{ret.get('pytorch_i2a_r10', float('nan')):.3f}; " +
                 ", ".join(f"{k} {v['i2a_r10']:.3f}" for k, v in ret["files"].items()) +
                 " (each within the gate of its drop)."]
    return "\n".join(rows)


def _gallery_text(index: dict | None) -> str | None:
    """The gallery's size and the HNSW search it chose at build time (gallery/index.json)."""
    if not index or "count" not in index:
        return None
    params = index.get("params", {})
    lines = [f"{index['count']} items, {index.get('dim')}-d, model `{str(index.get('fingerprint'))[:12]}`; HNSW M "
             f"{params.get('M')}, ef_construction {params.get('ef_construction')}, target recall@10 "
             f"{params.get('target_recall')}.", "", "| index | mode | ef | recall@10 | top-1 | p50 ms |",
             "|---|---|---:|---:|---:|---:|"]
    for kind, measured in (index.get("measured") or {}).items():
        c = measured.get("chosen", {})
        lines.append(f"| {kind} | {params.get('mode', {}).get(kind)} | {c.get('ef')} | {c.get('recall', 0):.3f} | "
                     f"{c.get('top1', 0):.3f} | {c.get('p50_ms', 0):.3f} |")
    return "\n".join(lines)


def write_report(run: str | Path) -> Path:
    run = Path(run)
    parts: list[str] = [f"# Sat2Sound Edge run report: `{run}`", ""]
    data: dict[str, Any] = {"run": str(run)}
    pipeline = _json(run / "pipeline.json") or {}
    if pipeline:
        parts += ["Stage timings (seconds, last run of each): " +
                  ", ".join(f"{k} {v['seconds']}" for k, v in pipeline.get("stages", {}).items()), ""]
        data["pipeline"] = pipeline
    body, data["world"] = _world(run)
    parts += _section("Embedded world", body, "run the `world` stage")
    parts += _section("Teacher retrieval (test split)", _text(run / "eval" / "teacher.md"), "run `evaluate`")
    ablations = [(_text(p), p.stem) for p in sorted((run / "eval").glob("ablation-*.md"))]
    parts += _section("Ablations (same data and budget)",
                      "\n\n".join(f"### {name}\n\n{t}" for t, name in ablations if t) or None,
                      "run `python -m benchmarks.ablations`")
    paper = ["| benchmark | " + " | ".join(["method", "I2A R@10% / MR"]) + " |", "|---|---|---|"]
    for bench, methods in PAPER.items():
        for m, v in methods.items():
            paper.append(f"| {bench} | {m} | {v} |")
    parts += _section("The paper's figures (real data, GPU scale) for comparison", "\n".join(paper), "")
    body, data["maps"] = _maps(run)
    parts += _section("Soundscape maps scored against ground truth", body, "run `maps`")
    parts += _section("Grounding", _text(run / "grounding" / "grounding-eval-z1.md"), "run `grounding`")
    parts += _section("Compression", _text(run / "compress" / "report.md"), "run `student`, `int8`, `compress-report`")
    export = _json(run / "export" / MANIFEST_FILE)
    if export:
        data["export"] = {"parity": export.get("parity"), "files": len(export.get("files", []))}
    parts += _section("Export", _export_table(export) if export else None, "run `export`")
    parts += _section("Gallery", _gallery_text(_json(run / "gallery" / "index.json")), "run `gallery`")
    bundle = _json(run / "bundle" / MANIFEST_FILE)
    parts += _section("Bundle", f"{len(bundle.get('files', {}))} files, verified by `sat2sound bundle --verify`"
                      if bundle else None, "run `bundle`")
    parts += _section("Latency", _text(run / "benchmarks" / "latency.md"), "run `python -m benchmarks.latency`")
    path = run / "report.md"
    path.write_text("\n".join(parts) + "\n")
    (run / "report.json").write_text(json.dumps(data, indent=2, default=str))
    return path


if __name__ == "__main__":
    print(write_report(sys.argv[1] if len(sys.argv) > 1 else "runs/demo"))
