"""Gallery search benchmark: every candidate library on the same vectors and queries, and the product path.

    python -m benchmarks.gallery_search --ckpt runs/demo/teacher --world runs/demo/world --n 100000,1000000 \\
        --product usearch,hnswlib,exact
    python -m benchmarks.gallery_search --data clustered --n 20000          # synthetic vectors, quick

Candidates (benchmarks/gallery_candidates.py): exact numpy, FAISS flat, FAISS IVF, FAISS HNSW, hnswlib, USearch
f32 / f16 / i8 (graphs at the same M and ef_construction), and the gallery's IVF fallback (gallery/ivf.py). Each
is built on ``--threads`` threads, saved, tuned on the *tuning* half of the queries (the cheapest ef / nprobe
whose recall@10 reaches the target for every kind of query), then opened in a fresh process and scored on the
*held-out* half: recall@10 against exact search (FAISS flat; tie-aware), p50/p99 per query (one query a call, one
thread), open time and resident memory (VmRSS before and after opening, and after the queries), size on disk.

``--product`` then writes a real gallery (GalleryWriter: the items as caption vectors, tiny silent clips) and lets
the builder index it with each ``--index`` choice, tuned with the same tuning queries, and measures what a device
pays: ``Gallery.open`` (verify "quick" hashes the index files, "header" does not), the first search, then
``Gallery.search(k=10)`` per held-out query (index + the hits' rows and vectors from SQLite), recall and memory.

Data: a checkpoint's real embeddings (``--ckpt``: world-tile image embeddings as items; caption-text and place
queries, benchmarks/teacher_embeddings.py, cached); sizes above ``--real-max`` grow the real set with derived
between-tile vectors (``expand_items``). Or synthetic unit vectors (``--data clustered|codebook``). Sizes from
``--large-from`` on run only ``--large-candidates`` (graph builds take minutes there). Writes FILE.json, FILE.md.
"""

from __future__ import annotations

import os

# Latency is measured as on a device: one query, one thread. Multi-threaded BLAS on a shared 2-core machine turns a
# 0.2 ms matrix-vector product into 10+ ms of thread hand-off, so pin it before numpy loads.
# (Only when run as a script: imported, e.g. by its test, it must not change the host process's environment.)
if __name__ == "__main__":
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import gallery_candidates as cands
from core.cli_args import DeprecatedAlias, add_ckpt
from gallery import index as vindex
from gallery.ivf import NPROBE_LADDER as IVF_LADDER
from gallery.layout import DEFAULT_DTYPE, EF_LADDER, HNSW_EF_CONSTRUCTION, HNSW_M, TARGET_RECALL

LARGE_CANDIDATES = "exact-numpy,faiss-flat,faiss-ivf,usearch-f16,gallery-ivf"


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(n: int, dim: int, rng: np.random.Generator, per_cluster: int = 50) -> np.ndarray:
    """Unit vectors around n/per_cluster random centres, each cluster with its own spread (cosine to centre 0.6-0.9).

    Like captions: many items per theme ("birds and wind in a forest"), themes of varied tightness.
    """
    clusters = max(1, n // per_cluster)
    centres = _unit(rng.normal(size=(clusters, dim)))
    spread = rng.uniform(0.5, 1.3, size=clusters)
    which = rng.integers(0, clusters, n)
    noise = rng.normal(size=(n, dim)) / np.sqrt(dim)
    return _unit(centres[which] + spread[which, None] * noise)


class CodebookMixtures:
    """Sparse convex mixtures of codebook entries (1-6 active codes, Zipf-popular codes, Dirichlet weights)."""

    def __init__(self, dim: int, rng: np.random.Generator, size: int = 1024):
        self.codes = _unit(rng.normal(size=(size, dim)))
        pop = 1.0 / np.arange(1, size + 1) ** 0.8
        self.pop = pop / pop.sum()

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        out = np.zeros((n, self.codes.shape[1]), dtype=np.float32)
        active = rng.integers(1, 7, n)
        for i, a in enumerate(active):
            idx = rng.choice(len(self.codes), size=a, replace=False, p=self.pop)
            out[i] = rng.dirichlet(np.ones(a)) @ self.codes[idx]
        return _unit(out)


def make_data(kind: str, n: int, q: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    rng = np.random.default_rng(seed)
    if kind == "clustered":
        both = clustered(n + q, dim, rng)
        clusters = max(1, (n + q) // 50)
        return both[:n], both[n:], f"synthetic clustered unit vectors ({clusters} clusters of varied spread)"
    if kind == "codebook":
        gen = CodebookMixtures(dim, rng)
        return gen.draw(n, rng), gen.draw(q, rng), "synthetic sparse mixtures of a 1024-entry random codebook"
    raise SystemExit(f"unknown --data {kind!r}")


# ---------------------------------------------------------------------------------------------------- candidates


def run_candidate(name: str, items: np.ndarray, tune: tuple, held: tuple, truth: dict[str, np.ndarray], *,
                  m: int, ef_construction: int, threads: int, work: Path, target: float) -> dict[str, Any]:
    """Build, save, tune (tuning queries) and probe (held-out queries, fresh process) one candidate."""
    c = cands.CANDIDATES[name]
    t0 = time.perf_counter()
    index = cands.build(name, items, m=m, ef_construction=ef_construction, threads=threads)
    build_s = time.perf_counter() - t0
    path = work / f"{name}-{len(items)}.{c.suffix}"
    size = cands.save(name, index, path)
    setting, table = None, []
    if c.knob:
        ladder = EF_LADDER if c.knob == "ef" else (IVF_LADDER if name == "gallery-ivf" else cands.NPROBE_LADDER)
        table = cands.ladder_table(name, index, items, tune[0], tune[1], truth["tune"], ladder, target)
        ok = [r for r in table if vindex.worst_recall(r) >= target]
        setting = (min(ok, key=lambda r: r["setting"]) if ok else max(table, key=vindex.worst_recall))["setting"]
    del index
    spec = {"name": name, "path": str(path), "count": len(items), "queries": str(work / "held.npy"),
            "found": str(work / "found.npy"), "k": 10, "setting": setting}
    probe = cands.run_probe(spec)
    found = np.load(work / "found.npy")
    path.unlink()
    cands.vectors_path(path).unlink(missing_ok=True)
    out = {"name": name, "label": c.label, "device": c.device, "knob": c.knob, "setting": setting,
           "build_s": build_s, "bytes": size, "tune_table": table, "tuned_to_target": not c.knob or any(
               vindex.worst_recall(r) >= target for r in table)}
    return out | _scored(items, held, truth["held"], found, probe)


def _scored(items: np.ndarray, held: tuple, truth: np.ndarray, found: np.ndarray, probe: dict) -> dict[str, Any]:
    """Recall (overall, per kind) of a probe's answers, its latency percentiles and memory."""
    scores = cands.score_found(items, held[0], found)
    times = np.asarray(probe.pop("times_ms"))
    return {**probe, "recall": vindex.recall_at_k(scores, truth),
            "recall_by_kind": {k: vindex.recall_at_k(scores[held[1] == k], truth[held[1] == k])
                               for k in sorted(set(held[1].tolist()))},
            "p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}


# ---------------------------------------------------------------------------------------------------- product path


def write_gallery(root: Path, items: np.ndarray) -> float:
    """The items as a gallery's caption (and audio) vectors with a tiny silent WAV clip each; seconds to write."""
    from gallery.clips import encode_clip
    from gallery.store import GalleryRow, GalleryWriter

    clip = encode_clip(np.zeros(8, np.float32), 8000, "wav")
    t0 = time.perf_counter()
    with GalleryWriter.open(root, fingerprint="bench" * 8, dim=items.shape[1], clip_format="wav",
                            sample_rate=8000) as w:
        for s in range(0, len(items), 5000):
            w.add_batch([GalleryRow(id=f"item{i:07d}", caption=f"item {i}", clip=clip, clip_format="wav",
                                    sample_rate=8000, seconds=0.001, caption_vector=items[i], audio_vector=items[i],
                                    renderer="benchmark", lat=float(i % 90), lon=0.0, zoom=1, sources=["wind"])
                         for i in range(s, min(s + 5000, len(items)))])
    return time.perf_counter() - t0


def run_product(root: Path, items: np.ndarray, tune: tuple, held: tuple, truth: np.ndarray, *, index: str,
                dtype: str, m: int, ef_construction: int, threads: int) -> dict[str, Any]:
    """Index the gallery at ``root`` with ``index`` through GalleryWriter.finish, then probe Gallery.open/search."""
    from gallery.store import GalleryWriter

    queries = {kind: tune[0][tune[1] == kind] for kind in sorted(set(tune[1].tolist()))}
    with GalleryWriter.open(root, fingerprint="bench" * 8, dim=items.shape[1], clip_format="wav",
                            sample_rate=8000) as w:
        t0 = time.perf_counter()
        info = w.finish(index=index, dtype=dtype, m=m, ef_construction=ef_construction, threads=threads,
                        tune_queries=queries, kinds=("caption",))
        finish_s = time.perf_counter() - t0
    np.save(root.parent / "held.npy", held[0])
    out: dict[str, Any] = {"index": index, "dtype": info["params"]["dtype"], "finish_s": finish_s,
                           "mode": info["params"]["mode"]["caption"], "ef": info["params"]["ef"]["caption"],
                           "nprobe": info["params"]["nprobe"].get("caption"),
                           "bytes": sum(f["bytes"] for f in info["files"].values()),
                           "db_bytes": (root / "gallery.db").stat().st_size,
                           "tuned": info.get("measured", {}).get("caption", {}).get("chosen")}
    spec = {"root": str(root), "queries": str(root.parent / "held.npy"), "found": str(root.parent / "found.npy")}
    quick = cands.run_probe({**spec, "verify": "quick", "limit": 5}, module="benchmarks.gallery_search")
    probe = cands.run_probe({**spec, "verify": "header"}, module="benchmarks.gallery_search")
    out["open_quick_ms"] = quick["open_ms"]
    return out | _scored(items, held, truth, np.load(root.parent / "found.npy"), probe)


def product_probe(spec: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: Gallery.open, the first search, then Gallery.search(k=10) per query; memory throughout."""
    from gallery.query import Gallery

    queries = np.load(spec["queries"])[: spec.get("limit")]
    before = cands.rss_mb()
    t0 = time.perf_counter()
    g = Gallery.open(spec["root"], verify=spec["verify"])
    open_ms = (time.perf_counter() - t0) * 1e3
    after_open = cands.rss_mb()
    t0 = time.perf_counter()
    g.search(queries[0], k=10)
    first_ms = (time.perf_counter() - t0) * 1e3
    found, times = np.full((len(queries), 10), -1, dtype=np.int64), []
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        hits = g.search(q, k=10)
        times.append((time.perf_counter() - t0) * 1e3)
        found[i, :len(hits)] = [h.label for h in hits]
    np.save(spec["found"], found)
    return {"open_ms": open_ms, "first_search_ms": first_ms, "rss_before_mb": before, "rss_open_mb": after_open,
            "rss_search_mb": cands.rss_mb(), "times_ms": times}


# ---------------------------------------------------------------------------------------------------- main


def load_data(args: argparse.Namespace, n_max: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(items, queries, query kinds, description) for the largest size asked."""
    if args.ckpt is not None:
        from benchmarks.teacher_embeddings import expand_items, teacher_data

        real = teacher_data(Path(args.ckpt), args.world, min(n_max, args.real_max), args.queries, args.seed,
                            args.cache_dir)
        items, desc = real.items, real.description
        if n_max > len(items):
            desc += (f"; sizes above {len(items)} add derived vectors between real tiles (a random mix of a real item "
                     "and one of its 8 nearest real items, renormalised)")
            items = expand_items(items, n_max, args.seed)
        return items, real.queries, real.query_kinds, desc
    items, queries, desc = make_data(args.data, n_max, args.queries, args.dim, args.seed)
    kinds = np.array(["fresh-a", "fresh-b"] * (len(queries) // 2 + 1))[: len(queries)]
    return items, queries, kinds, desc


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--probe":
        print(json.dumps(product_probe(json.loads(sys.argv[2]))))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", default="100000", help="gallery sizes, comma-separated")
    p.add_argument("--dim", type=int, default=256, help="embedding width (synthetic data)")
    p.add_argument("--queries", type=int, default=1000, help="queries, half for tuning and half held out")
    p.add_argument("--data", default="clustered", choices=("clustered", "codebook"))
    add_ckpt(p, required=False, old=("--teacher",),
             help="benchmark this checkpoint's real embeddings of world tiles instead (needs --world)")
    p.add_argument("--world", type=Path, default=Path("runs/demo/world"), help="world folder (test captions)")
    p.add_argument("--cache-dir", type=Path, default=Path("runs/bench/cache/tiles"),
                   help="where --ckpt keeps its tile embeddings (resumable; reused by later runs)")
    p.add_argument("--cache", dest="cache_dir", type=Path, action=DeprecatedAlias, new="--cache-dir")
    p.add_argument("--real-max", type=int, default=100_000, help="real tile embeddings at most (--ckpt)")
    p.add_argument("--candidates", default=",".join(cands.CANDIDATES), help="comma-separated")
    p.add_argument("--large-from", type=int, default=500_000)
    p.add_argument("--large-candidates", default=LARGE_CANDIDATES)
    p.add_argument("--product", default="", help="index choices to run through the product path, e.g. usearch,exact")
    p.add_argument("--product-large", default="usearch", help="product-path choices from --large-from on")
    p.add_argument("--m", type=int, default=HNSW_M)
    p.add_argument("--ef-construction", type=int, default=HNSW_EF_CONSTRUCTION)
    p.add_argument("--threads", type=int, default=2, help="index build threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=None, help="index and gallery files (default: a temp folder)")
    p.add_argument("--out", type=Path, default=Path("runs/bench/gallery_search.json"))
    args = p.parse_args(argv)

    from benchmarks.teacher_embeddings import split_queries
    from gallery.tuning import exact_truth

    sizes = sorted(int(v) for v in args.n.split(","))
    items_all, queries, kinds, desc = load_data(args, sizes[-1])
    tune, held = split_queries(queries, kinds, args.seed)
    report: dict[str, Any] = {
        "data": desc, "dim": int(items_all.shape[1]), "tune_queries": len(tune[0]), "held_queries": len(held[0]),
        "query_kinds": sorted(set(kinds.tolist())), "M": args.m, "ef_construction": args.ef_construction,
        "build_threads": args.threads, "target_recall": TARGET_RECALL,
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores".strip(),
        "libraries": _versions(), "sizes": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for n in sizes:
            items = items_all[:n]
            truth = {"tune": exact_truth(items, tune[0], 10, args.threads)[1],
                     "held": exact_truth(items, held[0], 10, args.threads)[1]}
            np.save(work / "held.npy", held[0])
            large = n >= args.large_from
            names = (args.large_candidates if large else args.candidates).split(",")
            size: dict[str, Any] = {"n": n, "candidates": [], "product": []}
            report["sizes"].append(size)
            for name in filter(None, names):
                row = run_candidate(name, items, tune, held, truth, m=args.m, ef_construction=args.ef_construction,
                                    threads=args.threads, work=work, target=TARGET_RECALL)
                size["candidates"].append(row)
                print(f"{n} {row['label']}: {row['knob'] or ''} {row['setting'] or ''} recall {row['recall']:.4f} "
                      f"p50 {row['p50_ms']:.3f} ms, build {row['build_s']:.1f} s, open {row['open_ms']:.1f} ms",
                      flush=True)
                _write(args.out, report)
            choices = [c for c in (args.product_large if large else args.product).split(",") if c]
            if choices:
                root = work / f"gallery-{n}"
                size["write_s"] = write_gallery(root, items)
            for choice in choices:
                row = run_product(root, items, tune, held, truth["held"], index=choice, dtype=DEFAULT_DTYPE,
                                  m=args.m, ef_construction=args.ef_construction, threads=args.threads)
                size["product"].append(row)
                print(f"{n} Gallery.search via {choice}: recall {row['recall']:.4f} p50 {row['p50_ms']:.3f} ms, "
                      f"open {row['open_ms']:.1f} ms (quick {row['open_quick_ms']:.1f} ms)", flush=True)
                _write(args.out, report)
    _write(args.out, report)
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


def _kinds(row: dict[str, Any]) -> str:
    return " / ".join(f"{v:.4f}" for v in row["recall_by_kind"].values())


def _mem(row: dict[str, Any]) -> str:
    return (f"+{row['rss_open_mb'] - row['rss_before_mb']:.1f} / +{row['rss_search_mb'] - row['rss_before_mb']:.1f}")


def markdown(report: dict[str, Any]) -> str:
    """The report as tables: candidates per size, the product path, and each candidate's tuning ladder."""
    kinds = " / ".join(report["query_kinds"])
    lines = [f"# Gallery search on kept libraries ({report['dim']}-d, {report['tune_queries']} tuning + "
             f"{report['held_queries']} held-out queries: {kinds})", "", f"Data: {report['data']}.", "",
             f"Machine: {report['machine']}; libraries {report['libraries']}. Graphs: M {report['M']}, "
             f"ef_construction {report['ef_construction']}, built on {report['build_threads']} threads. Each setting "
             f"(ef / nprobe) is the cheapest whose recall@10 on the tuning queries reaches {report['target_recall']} "
             "for every kind of query; the figures are the held-out queries at that setting, opened and searched "
             "in a fresh process, one query a call, one thread. recall@10 is tie-aware against exact search (FAISS "
             "flat). Memory: resident memory added by opening / by opening and searching every held-out query.", ""]
    for size in report["sizes"]:
        lines += [f"## {size['n']:,} items", "",
                  f"| candidate | phone | setting | recall@10 | {kinds} | p50 ms | p99 ms | build s | MB on disk | "
                  "open ms | RSS MB open / +queries |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in size["candidates"]:
            setting = f"{r['knob']} {r['setting']}" if r["knob"] else "-"
            flag = "" if r["tuned_to_target"] else " (target not reached)"
            lines.append(f"| {r['label']} | {'yes' if r['device'] else 'no'} | {setting}{flag} | {r['recall']:.4f} | "
                         f"{_kinds(r)} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['build_s']:.1f} | "
                         f"{r['bytes'] / 1e6:.1f} | {r['open_ms']:.1f} | {_mem(r)} |")
        if size["product"]:
            lines += ["", f"Through the product path (`GalleryWriter.finish` then `Gallery.search(k=10)`, index + "
                      f"hits' rows and vectors from SQLite; gallery written in {size.get('write_s', 0):.1f} s):", "",
                      f"| --index | mode | ef / nprobe | recall@10 | {kinds} | p50 ms | p99 ms | open ms header / "
                      "quick | first search ms | RSS MB open / +queries | finish s | index MB | db MB |",
                      "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for r in size["product"]:
                setting = {"hnsw": f"ef {r['ef']}", "ivf": f"nprobe {r.get('nprobe')}"}.get(r["mode"], "-")
                lines.append(f"| {r['index']} {r['dtype'] if r['index'] == 'usearch' else ''} | {r['mode']} | "
                             f"{setting} | {r['recall']:.4f} | {_kinds(r)} | "
                             f"{r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['open_ms']:.1f} / {r['open_quick_ms']:.1f} | "
                             f"{r['first_search_ms']:.1f} | {_mem(r)} | {r['finish_s']:.1f} | {r['bytes'] / 1e6:.1f} "
                             f"| {r['db_bytes'] / 1e6:.1f} |")
        for r in size["candidates"]:
            if not r["tune_table"]:
                continue
            lines += ["", f"Tuning ladder, {r['label']} at {size['n']:,} (tuning queries):", "",
                      f"| {r['knob']} | recall@10 | {kinds} | p50 ms | p99 ms |", "|---:|---:|---:|---:|---:|"]
            lines += [f"| {t['setting']} | {t['recall']:.4f} | {_kinds(t)} | {t['p50_ms']:.3f} | {t['p99_ms']:.3f} |"
                      for t in r["tune_table"]]
        lines.append("")
    return "\n".join(lines) + "\n"


def _versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for dist in ("usearch", "faiss-cpu", "hnswlib", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _write(out: Path, report: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(markdown(report))


if __name__ == "__main__":
    raise SystemExit(main())
