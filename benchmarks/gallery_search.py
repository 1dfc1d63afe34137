"""Gallery search benchmark: HNSW recall@10 against exact search, build time and query latency, per ef.

    python -m benchmarks.gallery_search [--n 100000] [--data clustered|codebook] [--m 16,32] [--out FILE.json]
    python -m benchmarks.gallery_search --gallery runs/gallery --out FILE.json
    python -m benchmarks.gallery_search --ckpt runs/demo/teacher --world runs/demo/world --n 100000

Data: a built gallery's real embeddings (``--gallery``: the caption vectors are the items and the clip
embeddings are the queries - a cross-modal query as at run time); a trained checkpoint's real embeddings at any
scale (``--ckpt``: world-tile image embeddings as items, caption-text and place embeddings as queries; see
``benchmarks/teacher_embeddings.py``, cached under ``--cache``); or synthetic "embedding-like" unit vectors:
``clustered`` (a mixture of tight clusters of varied spread) or ``codebook`` (sparse convex mixtures of a random
codebook's entries, the shape the Sat2Sound sparsemax head produces). Queries are fresh draws, not gallery items.
On random Gaussian data HNSW recall collapses, so never tune on that.

Latency is one query per call on one thread, as on a device. Writes FILE.json and FILE.md.
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
import tempfile
import time
from pathlib import Path

import numpy as np

from core.cli_args import DeprecatedAlias, add_ckpt
from gallery import index as vindex
from gallery.layout import EF_LADDER, HNSW_EF_CONSTRUCTION, TARGET_RECALL


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


def gallery_data(path: Path, q: int, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    from gallery.query import Gallery

    with Gallery.open(path) as g:
        items, _ = g.vectors("caption")
        audio, _ = g.vectors("audio")
        fp = g.fingerprint
    rng = np.random.default_rng(seed)
    queries = audio[rng.choice(len(audio), size=min(q, len(audio)), replace=False)]
    return items.copy(), queries.copy(), f"real gallery embeddings of {path} (model {fp[:12]}): captions as items, " \
        "clip embeddings as queries"


def exact_latency(items: np.ndarray, queries: np.ndarray, k: int, reps: int = 100) -> dict:
    times = []
    for qv in queries[:reps]:
        t0 = time.perf_counter()
        vindex.exact_topk(items, qv[None, :], k)
        times.append(time.perf_counter() - t0)
    ms = np.asarray(times) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90))}


def end_to_end(path: Path, queries: np.ndarray, reps: int = 200) -> dict:
    """What the device pays per tap: Gallery.search (index + reading the hits' rows from SQLite), k=10."""
    from gallery.query import Gallery

    out = {}
    with Gallery.open(path) as g:
        for name, exact in (("hnsw", False), ("exact", True)):
            g.search(queries[0], k=10, exact=exact)  # load the index / vectors once, as the app does at start
            times = []
            for qv in queries[:reps]:
                t0 = time.perf_counter()
                g.search(qv, k=10, exact=exact)
                times.append(time.perf_counter() - t0)
            ms = np.asarray(times) * 1e3
            out[name] = {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90))}
        out["ef"] = g.ef
        out["mode"] = g.index_info.get("params", {}).get("mode")
    return out


def _recall_by_kind(measure, queries: np.ndarray, kinds: np.ndarray | None, key: str) -> dict:
    """{query kind: {setting: recall}} from ``measure`` run on each kind's queries alone (latency is the same search,
    so only the recall is kept)."""
    if kinds is None:
        return {}
    return {kind: {row[key]: row["recall"] for row in measure(queries[kinds == kind])}
            for kind in sorted(set(kinds.tolist()))}


def run_one(items: np.ndarray, queries: np.ndarray, *, m: int, ef_construction: int, threads: int,
            efs: list[int], k: int = 10, kinds: np.ndarray | None = None) -> dict:
    labels = np.arange(len(items), dtype=np.int64)
    t0 = time.perf_counter()
    index = vindex.build_hnsw(items, labels, m=m, ef_construction=ef_construction, threads=threads)
    build_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.hnsw"
        t0 = time.perf_counter()
        index.save_index(str(path))
        save_s = time.perf_counter() - t0
        size = path.stat().st_size
        t0 = time.perf_counter()
        index = vindex.load_hnsw(path, items.shape[1], len(items), efs[0])
        load_s = time.perf_counter() - t0
    table = vindex.measure_ef(index, items, labels, queries, k=k, ladder=efs)
    best = vindex.choose_ef(table, TARGET_RECALL)
    by_kind = _recall_by_kind(lambda qs: vindex.measure_ef(index, items, labels, qs, k=k, ladder=efs), queries,
                              kinds, "ef")
    return {"M": m, "ef_construction": ef_construction, "build_threads": threads, "build_s": build_s,
            "save_s": save_s, "load_s": load_s, "index_bytes": size, "table": table, "chosen": best,
            "recall_by_query_kind": by_kind}


def run_ivf(items: np.ndarray, queries: np.ndarray, *, n_lists: int | None, k: int = 10,
            kinds: np.ndarray | None = None) -> dict:
    """The numpy IVF candidate (gallery/ivf.py): build time, recall and latency per nprobe, the cheapest good one."""
    from gallery.ivf import NPROBE_LADDER, build_ivf, measure_nprobe

    t0 = time.perf_counter()
    index = build_ivf(items, n_lists)
    build_s = time.perf_counter() - t0
    table = measure_nprobe(index, items, queries, k=k, ladder=NPROBE_LADDER)
    chosen = vindex.choose_ef(table, TARGET_RECALL, key="nprobe")
    ladder = [r["nprobe"] for r in table]
    by_kind = _recall_by_kind(lambda qs: measure_nprobe(index, items, qs, k=k, ladder=ladder), queries, kinds,
                              "nprobe")
    return {"n_lists": index.n_lists, "build_s": build_s, "table": table, "chosen": chosen,
            "recall_by_query_kind": by_kind}


def _ladder_table(run: dict, key: str) -> list[str]:
    """The markdown rows of one tuning ladder (``key`` "ef" or "nprobe"): recall, top-1 and latency per setting,
    recall per query kind when measured, the chosen row marked, and the verdict against TARGET_RECALL."""
    kinds = {k: {int(n): r for n, r in v.items()} for k, v in run.get("recall_by_query_kind", {}).items()}
    lines = [f"| {key} | recall@10 | top-1 | p50 ms | p90 ms |" + "".join(f" recall@10 {k} |" for k in kinds),
             "|---:|---:|---:|---:|---:|" + "---:|" * len(kinds)]
    for row in run["table"]:
        mark = " **" if row[key] == run["chosen"][key] else ""
        extra = "".join(f" {kinds[k][row[key]]:.4f} |" for k in kinds)
        lines.append(f"| {row[key]}{mark} | {row['recall']:.4f} | {row['top1']:.3f} | {row['p50_ms']:.3f} | "
                     f"{row['p90_ms']:.3f} |{extra}")
    c = run["chosen"]
    ok = c["recall"] >= TARGET_RECALL
    return lines + ["", f"Chosen {key} {c[key]} (cheapest with recall@10 >= {TARGET_RECALL}): recall "
                    f"{c['recall']:.4f}, p50 {c['p50_ms']:.3f} ms" + ("" if ok else " - TARGET NOT REACHED"), ""]


def markdown(report: dict) -> str:
    lines = [f"# Gallery search benchmark ({report['n']} items x {report['dim']}-d, {report['queries']} queries)", "",
             f"Data: {report['data']}.",
             f"Machine: {report['machine']}; latency = one query per call, 1 thread. recall@10 is tie-aware (a "
             "returned item counts when it scores at least the exact 10th best); top-1 = the first hit scores within "
             "1e-4 of the exact best (what the app plays).", "",
             f"Exact numpy search: p50 {report['exact']['p50_ms']:.2f} ms, p90 {report['exact']['p90_ms']:.2f} ms.",
             ""]
    if "end_to_end" in report:
        e = report["end_to_end"]
        lines += [f"End to end, `Gallery.search(k=10)` incl. reading the hits from SQLite (gallery ef {e['ef']}, "
                  f"recorded mode {e['mode']}): HNSW p50 {e['hnsw']['p50_ms']:.3f} ms / p90 {e['hnsw']['p90_ms']:.3f} "
                  f"ms; exact p50 {e['exact']['p50_ms']:.3f} ms / p90 {e['exact']['p90_ms']:.3f} ms.", ""]
    for run in report["runs"]:
        lines += [f"## HNSW M={run['M']}, ef_construction={run['ef_construction']}", "",
                  f"Build {run['build_s']:.1f} s on {run['build_threads']} threads; index "
                  f"{run['index_bytes'] / 1e6:.1f} MB; save {run['save_s']:.2f} s, load {run['load_s']:.2f} s.", "",
                  *_ladder_table(run, "ef")]
    ivf = report.get("ivf")
    if ivf:
        lines += [f"## IVF (numpy, gallery/ivf.py): {ivf['n_lists']} lists", "",
                  f"Build (spherical k-means, 8 iterations) {ivf['build_s']:.1f} s.", "", *_ladder_table(ivf, "nprobe")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000, help="gallery size (synthetic data)")
    p.add_argument("--dim", type=int, default=256, help="embedding width (default preset codebook dim)")
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--data", default="clustered", choices=("clustered", "codebook"))
    p.add_argument("--gallery", type=Path, default=None, help="benchmark a built gallery's real embeddings instead")
    add_ckpt(p, required=False, old=("--teacher",),
             help="benchmark this checkpoint's real embeddings of --n world tiles instead (needs --world)")
    p.add_argument("--world", type=Path, default=Path("runs/demo/world"), help="world folder (test captions)")
    p.add_argument("--cache-dir", type=Path, default=Path("runs/bench/cache/tiles"),
                   help="where --ckpt keeps its tile embeddings (resumable; reused by later runs)")
    p.add_argument("--cache", dest="cache_dir", type=Path, action=DeprecatedAlias, new="--cache-dir")
    p.add_argument("--m", default="16", help="HNSW M values, comma-separated")
    p.add_argument("--ef-construction", type=int, default=HNSW_EF_CONSTRUCTION)
    p.add_argument("--efs", default=",".join(map(str, EF_LADDER)), help="search ef values, comma-separated")
    p.add_argument("--threads", type=int, default=2, help="index build threads")
    p.add_argument("--ivf", action="store_true", help="also measure the numpy IVF index (gallery/ivf.py)")
    p.add_argument("--ivf-lists", type=int, default=None, help="IVF lists (default about 1.6 sqrt(n))")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/bench/gallery_search.json"))
    args = p.parse_args(argv)

    kinds = None
    if args.gallery is not None:
        items, queries, data = gallery_data(args.gallery, args.queries, args.seed)
    elif args.ckpt is not None:
        from benchmarks.teacher_embeddings import teacher_data

        real = teacher_data(Path(args.ckpt), args.world, args.n, args.queries, args.seed, args.cache_dir)
        items, queries, data, kinds = real.items, real.queries, real.description, real.query_kinds
    else:
        items, queries, data = make_data(args.data, args.n, args.queries, args.dim, args.seed)
    efs = sorted({int(e) for e in args.efs.split(",")})
    report = {"n": len(items), "dim": int(items.shape[1]), "queries": len(queries), "data": data,
              "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores".strip(),
              "exact": exact_latency(items, queries, 10), "runs": []}
    print(f"{data}: {len(items)} x {items.shape[1]}; exact p50 {report['exact']['p50_ms']:.2f} ms", flush=True)
    if args.gallery is not None:
        report["end_to_end"] = end_to_end(args.gallery, queries)
        e2e = report["end_to_end"]
        print(f"Gallery.search k=10 (HNSW at the gallery's ef + SQLite hits): p50 {e2e['hnsw']['p50_ms']:.3f} ms; "
              f"exact: p50 {e2e['exact']['p50_ms']:.3f} ms", flush=True)
    for m in (int(v) for v in args.m.split(",")):
        run = run_one(items, queries, m=m, ef_construction=args.ef_construction, threads=args.threads, efs=efs,
                      kinds=kinds)
        report["runs"].append(run)
        c = run["chosen"]
        print(f"M={m}: build {run['build_s']:.1f}s; chosen ef {c['ef']} recall {c['recall']:.4f} "
              f"p50 {c['p50_ms']:.3f} ms", flush=True)
    if args.ivf:
        report["ivf"] = run_ivf(items, queries, n_lists=args.ivf_lists, kinds=kinds)
        c = report["ivf"]["chosen"]
        print(f"IVF {report['ivf']['n_lists']} lists: build {report['ivf']['build_s']:.1f}s; chosen nprobe "
              f"{c['nprobe']} recall {c['recall']:.4f} p50 {c['p50_ms']:.3f} ms", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    args.out.with_suffix(".md").write_text(markdown(report))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
