"""A large gallery through the product's own path: write N items with GalleryWriter, let ``finish`` choose the search
mode (HNSW, else IVF lists, else exact), then time ``Gallery.search`` (index + SQLite hits) and check its recall.

    python -m benchmarks.gallery_scale --ckpt runs/demo/teacher --world runs/demo/world --n 100000

Items: the checkpoint's image embeddings of N world tiles (benchmarks/teacher_embeddings.py, cached) stand in for
caption vectors; each item's "clip" is a 0.1 s silent WAV (the search does not read clips). ``finish`` tunes the
caption index with the items' audio vectors, so what those are decides the search mode: ``--tune-with copies``
makes each one its item's vector plus noise (queries like the items), ``--tune-with captions`` (default) cycles
the text embeddings of the world's *validation* captions (cross-modal, like real queries, and disjoint from the
test captions that are scored). The queries that are timed and scored come from outside the items: test-split
caption-text and place embeddings, as in gallery_search. Writes FILE.json and FILE.md.
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # one query, one thread, as on a device
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from core.cli_args import DeprecatedAlias, add_ckpt

SR = 8000


def build(root: Path, items: np.ndarray, tune: np.ndarray, fingerprint: str, *, seed: int = 0, batch: int = 2000,
          progress: bool = True) -> tuple[dict, float, float]:
    """Write the gallery and finish it; (index.json, write seconds, finish seconds)."""
    from tqdm.auto import tqdm

    from gallery.clips import encode_clip
    from gallery.store import GalleryRow, GalleryWriter

    rng = np.random.default_rng(seed)
    clip = encode_clip(np.zeros(int(0.1 * SR), np.float32), SR, "wav")
    base = tune[np.arange(len(items)) % len(tune)]
    noisy = base + 0.05 * rng.normal(size=items.shape).astype(np.float32) / np.sqrt(items.shape[1])
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    t0 = time.perf_counter()
    with GalleryWriter.open(root, fingerprint=fingerprint, dim=items.shape[1], clip_format="wav",
                            sample_rate=SR) as w:
        for s in tqdm(range(0, len(items), batch), desc="writing items", unit="batch", disable=not progress):
            rows = [GalleryRow(id=f"tile{i:07d}", caption=f"world tile {i}", clip=clip, clip_format="wav",
                               sample_rate=SR, seconds=0.1, caption_vector=items[i], audio_vector=noisy[i],
                               renderer="benchmark") for i in range(s, min(s + batch, len(items)))]
            w.add_batch(rows)
        write_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        info = w.finish(threads=2)
    return info, write_s, time.perf_counter() - t0


def measure(root: Path, queries: np.ndarray, kinds: np.ndarray) -> dict:
    """Gallery.search(k=10) as recorded at build time vs exact=True: recall@10 (tie-aware) and latency per call."""
    from gallery.index import recall_at_k
    from gallery.query import Gallery

    out: dict = {}
    with Gallery.open(root) as g:
        g.search(queries[0], k=10)  # load the index and vectors once, as the app does at start
        g.search(queries[0], k=10, exact=True)
        for name, exact in (("recorded", None), ("exact", True)):
            times, scores = [], []
            for q in queries:
                t0 = time.perf_counter()
                hits = g.search(q, k=10, exact=exact)
                times.append(time.perf_counter() - t0)
                scores.append([h.score for h in hits])
            ms = np.asarray(times) * 1e3
            out[name] = {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
                         "scores": np.asarray(scores, np.float32)}
        out["mode"] = g.index_info["params"]["mode"]
    truth = out["exact"].pop("scores")
    found = out["recorded"].pop("scores")
    out["recall_at_10"] = recall_at_k(found, truth)
    out["recall_by_query_kind"] = {k: recall_at_k(found[kinds == k], truth[kinds == k])
                                   for k in sorted(set(kinds.tolist()))}
    return out


def markdown(r: dict) -> str:
    m = r["search"]
    tuned = {"captions": "text embeddings of the validation split's captions (cross-modal)",
             "copies": "noisy copies of the items (queries like the items)"}[r["tune_with"]]
    lines = [f"# A {r['n']}-item gallery through the product path", "", f"Data: {r['data']}.",
             f"The builder tuned the caption index with {tuned}.", "",
             f"Written in {r['write_s']:.1f} s, finished (indexes built and tuned) in {r['finish_s']:.1f} s; db "
             f"{r['db_mb']:.1f} MB. Search mode chosen by the builder: {m['mode']} "
             f"(HNSW ef {r['index']['params']['ef']}, IVF nprobe {r['index']['params'].get('nprobe')}).", "",
             "| `Gallery.search(k=10)` | p50 ms | p90 ms | recall@10 vs exact |", "|---|---:|---:|---:|",
             f"| as recorded ({m['mode']['caption']} for captions) | {m['recorded']['p50_ms']:.3f} | "
             f"{m['recorded']['p90_ms']:.3f} | {m['recall_at_10']:.4f} "
             f"({', '.join(f'{k} {v:.4f}' for k, v in m['recall_by_query_kind'].items())}) |",
             f"| exact | {m['exact']['p50_ms']:.3f} | {m['exact']['p90_ms']:.3f} | 1 |", "",
             "Times include reading the ten hits' rows from SQLite.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_ckpt(p, required=False, old=("--teacher",), default="runs/demo/teacher",
             help="teacher checkpoint whose embeddings of world tiles are the items (default: runs/demo/teacher)")
    p.add_argument("--world", type=Path, default=Path("runs/demo/world"))
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--cache-dir", type=Path, default=Path("runs/bench/cache/tiles"),
                   help="where the tile embeddings are kept (resumable; shared with gallery_search)")
    p.add_argument("--cache", dest="cache_dir", type=Path, action=DeprecatedAlias, new="--cache-dir")
    p.add_argument("--work", type=Path, default=Path("runs/bench/gallery-scale"), help="the gallery (replaced)")
    p.add_argument("--out", type=Path, default=Path("runs/bench/gallery_scale.json"))
    p.add_argument("--tune-with", choices=("captions", "copies"), default="captions",
                   help="the audio vectors finish() tunes the caption index with (see the module doc)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    from benchmarks.teacher_embeddings import ZOOMS, _embed_texts, teacher_data
    from core.checkpoint import load_checkpoint, read_manifest
    from world.shards import read_split

    data = teacher_data(Path(args.ckpt), args.world, args.n, args.queries, args.seed, args.cache_dir,
                        progress=not args.no_progress)
    if args.work.exists():
        shutil.rmtree(args.work)
    fingerprint = read_manifest(args.ckpt)["fingerprint"]
    if args.tune_with == "captions":
        cols = read_split(args.world, "validation", columns=[f"llava_caption_bingmap_zl{z}" for z in ZOOMS]).to_pydict()
        texts = sorted({c for col in cols.values() for c in col if c})
        tune = _embed_texts(load_checkpoint(args.ckpt), texts)
        tune /= np.linalg.norm(tune, axis=1, keepdims=True)
    else:
        tune = data.items
    info, write_s, finish_s = build(args.work, data.items, tune, fingerprint, seed=args.seed,
                                    progress=not args.no_progress)
    report = {"n": len(data.items), "data": data.description, "tune_with": args.tune_with,
              "write_s": write_s, "finish_s": finish_s,
              "db_mb": (args.work / "gallery.db").stat().st_size / 1e6,
              "index": {"params": info["params"], "files": info["files"]},
              "search": measure(args.work, data.queries, data.query_kinds)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
