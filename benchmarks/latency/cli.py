"""CPU latency of every hot path, at batch 1 on 1 and 2 threads, against the product's targets and the paper.

    python -m benchmarks.latency [--preset default] [--run runs/demo] [--out runs/bench/latency] [--quick]

What is timed (each item after a warm-up, then as many calls as fit in a fixed time box; median and p90):

- towers: image (+ the five metadata fields), audio (log-mel in) and text (token ids in) of the teacher and the
  student, per runtime: PyTorch fp32, PyTorch int8 (``torch.ao.quantization.quantize_dynamic`` of every Linear),
  ONNX Runtime fp32 / int8 and LiteRT fp32 / int8. The student shares the teacher's frozen text tower (MiniLM, text
  query map and codebook are copied), so text is timed once. Each runtime's embedding is compared with PyTorch
  fp32 (cosine), so a fast but broken file shows;
- gallery search: exact numpy top-10 vs HNSW (gallery/index.py, the product's M / ef_construction and its rule for
  ef: the cheapest reaching recall@10 0.99) over embedding-like unit vectors at 10k and 100k items;
- end to end on a bundle (mobile_app.engine.Soundscape, the app's own code path): location -> MBTiles view read ->
  preprocessing -> int8 image tower -> gallery search -> clip bytes.

Artifacts: trained ones from ``--run`` (the pipeline's layout: teacher/, student/, int8/, export/, bundle/; each
checked through its manifest and fingerprint) where present; otherwise untrained models of the preset, exported
here (latency does not depend on the weights' values; the output says "untrained"). Exports and the synthetic
galleries' HNSW indexes are cached under ``--work``, keyed by model fingerprint / data parameters, so a rerun
times instead of rebuilding.

Writes ``OUT.json`` and ``OUT.md`` and prints the table. Speed-ups are ratios of figures measured in this run.
Nothing here asserts a time: a missed target is reported as a finding.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.latency.end_to_end import bench_end_to_end, resolve_bundle
from benchmarks.latency.gallery import bench_gallery
from benchmarks.latency.machine import load_average, machine_info
from benchmarks.latency.markdown import markdown
from benchmarks.latency.models import load_models, prune_exports
from benchmarks.latency.plan import (
    DEFAULT_GALLERY_SIZES,
    FULL,
    QUICK,
    QUICK_GALLERY_SIZES,
    ROLES,
    RUNTIMES,
    SECTIONS,
    TOWERS,
)
from benchmarks.latency.towers import bench_towers, speedups
from benchmarks.latency.verdicts import check_targets, headline_speedups, paper_comparison, projected_search
from contracts.artifacts import ArtifactKind
from core.config import get_preset

if TYPE_CHECKING:
    from benchmarks.latency.models import ModelEntry
    from compress.latency import Budget

TORCH_INT8_NOTE = ("PyTorch int8 = torch.ao.quantization.quantize_dynamic (Linear layers, qint8): works on torch 2.13 "
                   "but is deprecated there (it warns it will be removed); the codebook head has no Linear and stays "
                   "float.")


def _csv(text: str, allowed: tuple[str, ...] | None = None, name: str = "") -> tuple[str, ...]:
    items = tuple(x.strip() for x in text.split(",") if x.strip())
    if allowed is not None:
        bad = [x for x in items if x not in allowed]
        if bad:
            raise SystemExit(f"unknown {name} {', '.join(bad)}; expected some of {', '.join(allowed)}")
    return items


def _gallery_part(args: argparse.Namespace, models: dict[str, ModelEntry], run: Path | None, sizes: tuple[int, ...],
                  threads: tuple[int, ...], budget: Budget, work: Path, notes: list[str]) -> dict[str, Any]:
    """The gallery section: the run's trained teacher's own vectors where it has them (``--gallery-data auto``)."""
    dim = models["teacher"].cfg.model.codebook.dim
    real = (run / "teacher", run / "world") if run is not None and models["teacher"].trained and \
        (run / "world").is_dir() else None
    kind = args.gallery_data if args.gallery_data != "auto" else ("teacher" if real else "codebook")
    gallery = bench_gallery(sizes, dim, threads, budget, work, kind=kind, queries=50 if args.quick else 200,
                            seed=args.seed, build_threads=args.build_threads, progress=not args.no_progress,
                            real=real)
    if not gallery["sizes"][0]["exact_blas_threads_limited"]:
        notes.append("threadpoolctl is not installed: exact search ran with numpy's default BLAS threads")
    return gallery


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Everything ``main`` does except parsing and writing; returns the result dict."""
    get_preset(args.preset)  # an unknown preset fails before any work
    towers = _csv(args.towers, TOWERS, "tower")
    runtimes = _csv(args.runtimes, RUNTIMES, "runtime")
    sections = _csv(args.sections, SECTIONS, "section")
    threads = tuple(int(t) for t in _csv(args.threads))
    roles = _csv(args.roles, ROLES, "role")
    budget = QUICK if args.quick else FULL
    sizes = tuple(int(s) for s in _csv(args.gallery_sizes)) if args.gallery_sizes else (
        QUICK_GALLERY_SIZES if args.quick else DEFAULT_GALLERY_SIZES)
    run = Path(args.run) if args.run else None
    if run is not None and not run.is_dir():
        run = None
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    result: dict[str, Any] = {
        "kind": ArtifactKind.LATENCY, "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "preset": args.preset, "quick": bool(args.quick), "run": str(run) if run else None,
        "budget": budget.__dict__, "machine": machine_info(threads), "notes": notes,
    }
    print(f"{result['machine']['cpu']}, {result['machine']['cores']} cores; load average "
          f"{result['machine']['load_avg_start']}", flush=True)
    models = load_models(args.preset, run, roles, seed=args.seed, notes=notes) if "towers" in sections or \
        "gallery" in sections else {}
    result["models"] = {role: {"source": e.source, "trained": e.trained, "fingerprint": e.fingerprint,
                               "preset": e.cfg.name, "params": e.params} for role, e in models.items()}
    if "towers" in sections:
        rows = bench_towers(models, towers, runtimes, threads, budget, work, run, progress=not args.no_progress)
        speedups(rows, threads)
        prune_exports(work, {e.fingerprint for e in models.values()})
        result["towers"] = rows
        result["headline_speedups"] = headline_speedups(rows, threads)
        if "torch-int8" in runtimes:
            notes.append(TORCH_INT8_NOTE)
    if "gallery" in sections:
        result["gallery"] = _gallery_part(args, models, run, sizes, threads, budget, work, notes)
    if "e2e" in sections:
        try:
            bundle, trained, source = resolve_bundle(Path(args.bundle) if args.bundle else None, run, args.preset,
                                                     work, args.quick, progress=not args.no_progress)
            e2e = bench_end_to_end(bundle, threads, budget if not args.quick else QUICK, seed=args.seed)
            result["end_to_end"] = {"bundle": str(bundle), "trained": trained, "source": source, **e2e}
            result["projected"] = projected_search(result)
        except Exception as exc:
            result["end_to_end"] = None
            notes.append(f"end to end not measured: {type(exc).__name__}: {exc}")
    result["paper"] = paper_comparison(result)
    result["targets"] = check_targets(result)
    result["machine"]["load_avg_end"] = load_average()
    if any(x > (os.cpu_count() or 1) for x in result["machine"]["load_avg_start"][:1]
           + result["machine"]["load_avg_end"][:1]):
        notes.append("the machine was busy (load average above its core count) during the run: figures are slower "
                     "and noisier than on an idle machine")
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.latency", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="default", help="model preset of untrained models (and its student-<preset>)")
    p.add_argument("--run", default="runs/demo", help="pipeline run folder whose trained artifacts are used")
    p.add_argument("--out", default="runs/bench/latency", help="writes OUT.json and OUT.md")
    p.add_argument("--work", default="runs/bench/cache", help="cache of exports, synthetic galleries, demo bundle")
    p.add_argument("--quick", action="store_true", help="short time boxes, small galleries: a fast pass")
    p.add_argument("--towers", default=",".join(TOWERS))
    p.add_argument("--roles", default=",".join(ROLES))
    p.add_argument("--runtimes", default=",".join(RUNTIMES))
    p.add_argument("--threads", default="1,2")
    p.add_argument("--sections", default=",".join(SECTIONS), help="towers, gallery, e2e")
    p.add_argument("--gallery-sizes", default=None, help="comma-separated (default 10000,100000; quick 1000,10000)")
    p.add_argument("--gallery-data", default="auto", choices=("auto", "teacher", "codebook", "clustered"),
                   help="teacher: the run's trained teacher's own embeddings of world tiles (first run embeds them, "
                   "~15 min at 100k); codebook/clustered: synthetic (benchmarks/gallery_search.py); auto: teacher "
                   "when the run has a trained one, else codebook")
    p.add_argument("--build-threads", type=int, default=2, help="threads for building the synthetic HNSW indexes")
    p.add_argument("--bundle", default=None, help="bundle for the end-to-end figures (default: the run's, else a "
                   "demo bundle of an untrained student)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = run_benchmark(args)
    out = Path(args.out)
    json_path = out if out.suffix == ".json" else out.with_name(out.name + ".json")
    md_path = json_path.with_suffix(".md")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    text = markdown(result)
    fd, name = tempfile.mkstemp(prefix=".latency.", dir=json_path.parent)
    os.close(fd)
    tmp = Path(name)
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, json_path)
    md_path.write_text(text + "\n")
    print(text)
    print(f"wrote {json_path} and {md_path}")
    return 0
