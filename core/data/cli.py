"""``sat2sound data``: build the embedded world, draw its contact sheet, measure its oracle reference.

    sat2sound data build --preset default --out DIR [--audio real|synthetic] [--seed S] [--n-samples N] [--workers W]
    sat2sound data sheet DIR --out PNG [--n 24] [--split test]
    sat2sound data oracle DIR [--split test] [--json] [--resample K] [--resample-audio K]
    sat2sound data check DIR [--split test] [--media] [--preset default]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from contracts.artifacts import WORLD_FILE
from contracts.errors import ConfigError
from core.cli_args import add_shared
from engine.config import add_engine_options, engine_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="build the embedded world dataset (GeoSound layout)")
    b.add_argument("--out", required=True, type=Path, help="output folder")
    b.add_argument("--seed", type=int, default=None, help="world seed (default: the preset's)")
    b.add_argument("--audio", choices=("real", "synthetic"), default=None,
                   help="real: sources are excerpts of real recordings where installed (megaglest-data, "
                        "openttd-opensfx), the rest synthesised; synthetic: all synthesised (default: the preset's)")
    b.add_argument("--n-samples", type=int, default=None, help="number of samples (default: the preset's)")
    b.add_argument("--workers", type=int, default=2, help="worker processes (default: 2)")
    add_shared(b, "preset", "no-progress")
    add_engine_options(b)
    s = sub.add_parser("sheet", help="contact sheet PNG of a world folder (+ a few clips beside it)")
    s.add_argument("dataset", type=Path)
    s.add_argument("--out", required=True, type=Path, help="PNG file to write")
    s.add_argument("--n", type=int, default=24, help="number of samples on the sheet (default: 24)")
    s.add_argument("--split", default=None, help="only this split (default: all)")
    o = sub.add_parser("oracle", help="oracle image<->audio and image->caption retrieval that knows the true sources")
    o.add_argument("dataset", type=Path)
    o.add_argument("--split", default="test")
    o.add_argument("--json", action="store_true", help="print the full report as JSON")
    add_shared(o, "no-progress")
    o.add_argument("--resample", type=int, default=0, metavar="K",
                   help="also run the image->caption resampling oracle with K caption draws per image (0: off, the "
                        "default; K=64 takes about 30 s on a 600-place split)")
    o.add_argument("--resample-audio", type=int, default=0, metavar="K",
                   help="also run the image<->audio resampling oracle: exact likelihoods of each recording's sources "
                        "under each place's recording generator, and the same estimated from K recordings drawn per "
                        "place (0: off, the default; K=256 takes about 2 min on a 600-place split)")
    c = sub.add_parser("check", help="validate any dataset folder (GeoSound/SoundingEarth layout or the world)")
    c.add_argument("dataset", type=Path)
    c.add_argument("--split", default=None, help="only this split (default: every split found)")
    c.add_argument("--media", action="store_true", help="also decode every image and audio clip (slower)")
    add_shared(c, "preset", "no-progress")


def _print_audio_resampling(res: dict, seconds: float) -> None:
    print(f"image<->audio resampling oracle (each place's full tile and latitude known; exact likelihoods and "
          f"K={res['k']} recordings drawn per place, {seconds:.0f} s), R@10% / median rank:")
    print(f"  {'':44s} {'I2A likelihood':>15s} {'I2A ratio':>15s} {'A2I':>15s}")
    labels = {"meta": "platform, month, hour known", "no_meta": "platform, month, hour drawn"}
    for how in ("exact", "sampled"):
        for meta, by_sig in res.get(how, {}).items():
            for sig, r in by_sig.items():
                cells = " ".join(f"{r[d]['r10']:7.3f} / {r[d]['median_rank']:5.1f}"
                                 for d in ("i2a", "i2a_ratio", "a2i"))
                print(f"  {how:7s} {labels[meta]:27s} {sig:8s} {cells}")


def run(args: argparse.Namespace) -> int:
    if args.data_command == "build":
        from core.config import get_preset
        from world.build import build_world

        try:
            cfg = get_preset(args.preset)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        start = time.perf_counter()
        if args.audio:
            cfg = dataclasses.replace(cfg, world=dataclasses.replace(cfg.world, audio=args.audio))
        out = build_world(cfg, args.out, seed=args.seed, n_samples=args.n_samples, workers=args.workers,
                          progress=not args.no_progress, engine=engine_from_args(args))
        meta = json.loads((out / WORLD_FILE).read_text())
        size = sum(p.stat().st_size for p in (out / "data").glob("*.parquet"))
        print(f"world {out}: {meta['counts']} samples, {size / 1e6:.1f} MB, fingerprint {meta['fingerprint'][:12]}, "
              f"{time.perf_counter() - start:.1f} s")
        return 0
    if args.data_command == "sheet":
        from world.contact_sheet import contact_sheet

        path = contact_sheet(args.dataset, args.out, n=args.n, split=args.split)
        print(f"contact sheet {path} (clips in {path.parent / (path.stem + '_clips')})")
        return 0
    if args.data_command == "oracle":
        from world.audio_oracle import audio_resampling_oracle
        from world.caption_oracle import caption_resampling_oracle
        from world.oracle import caption_oracle_r10, oracle_r10

        for flag, value in (("--resample", args.resample), ("--resample-audio", args.resample_audio)):
            if value < 0:
                raise ConfigError(f"{flag} must be 0 (off) or a number of draws, got {value}")
        report = oracle_r10(args.dataset, split=args.split)
        report["image_to_caption"] = caption_oracle_r10(args.dataset, split=args.split)
        if args.resample:
            start = time.perf_counter()
            report["image_to_caption_resampling"] = caption_resampling_oracle(
                args.dataset, split=args.split, k=args.resample, progress=not args.no_progress)
            report["image_to_caption_resampling_seconds"] = round(time.perf_counter() - start, 1)
        if args.resample_audio:
            start = time.perf_counter()
            report["image_audio_resampling"] = audio_resampling_oracle(args.dataset, split=args.split,
                                                                       k=args.resample_audio,
                                                                       signatures=("set", "loudest", "order"),
                                                                       progress=not args.no_progress)
            report["image_audio_resampling_seconds"] = round(time.perf_counter() - start, 1)
        if args.json:
            print(json.dumps(report, indent=1))
        else:
            i2a, a2i = report["i2a"], report["a2i"]
            print(f"oracle on {report['split']} (N={report['n']}): image->audio R@10% {i2a['r10']:.3f} "
                  f"(median rank {i2a['median_rank']:.0f}), audio->image R@10% {a2i['r10']:.3f} "
                  f"(median rank {a2i['median_rank']:.0f}); chance 0.100")
            caps = ", ".join(f"zoom {z} {r['r10']:.3f}" for z, r in report["image_to_caption"].items())
            print(f"image->caption R@10% (the sources each caption names vs each place's plausible ones): {caps}")
            if args.resample:
                res = report["image_to_caption_resampling"]
                print(f"image->caption resampling oracle (K={args.resample} captions drawn from each image's own "
                      f"generator inputs, {report['image_to_caption_resampling_seconds']:.0f} s), R@10% / median rank:")
                for label, key in (("sources + scene words", None), ("  likelihood ratio", "ratio"),
                                   ("sources only", "sources_only"), ("  likelihood ratio", "sources_only_ratio")):
                    rows = {z: (r[key] if key else r) for z, r in res.items()}
                    cells = ", ".join(f"zoom {z} {r['r10']:.3f} / {r['median_rank']:.1f}" for z, r in rows.items())
                    mean = sum(r["r10"] for r in rows.values()) / len(rows)
                    print(f"  {label:24s} {cells}; mean R@10% {mean:.3f}")
            if args.resample_audio:
                _print_audio_resampling(report["image_audio_resampling"], report["image_audio_resampling_seconds"])
        return 0
    if args.data_command == "check":
        from core.config import get_preset
        from core.data.dataset import open_dataset
        from core.data.layouts import available_splits

        cfg = get_preset(args.preset)
        splits = [args.split] if args.split else available_splits(args.dataset)
        if not splits:
            raise ConfigError(f"{args.dataset} holds no split in a known layout")
        for split in splits:
            ds = open_dataset(args.dataset, split, cfg)
            n = ds.check(media=args.media, progress=not args.no_progress)
            print(f"{split}: {n} rows OK ({ds.kind} layout, imagery {ds.imagery}"
                  f"{', media decoded' if args.media else ''})")
        return 0
    raise ConfigError(f"unknown data action {args.data_command!r}")  # pragma: no cover - argparse restricts it
