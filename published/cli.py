"""``sat2sound import``: a released Sat2Sound ``.ckpt`` -> this project's checkpoint folder.

    sat2sound import bingmap_withmeta.ckpt --text-encoder DIR --out runs/published-bingmap-meta

``DIR`` is a local copy of ``google/flan-t5-large`` (config, weights, tokenizer), read with no download. The result
is a ``--ckpt`` folder like any other: evaluate, map, distill, quantize, export, gallery and bundle take it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.cli_args import add_shared
from core.config import get_preset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="FILE.ckpt",
                        help="a released checkpoint, e.g. bingmap_withmeta.ckpt (Lightning format)")
    parser.add_argument("--text-encoder", required=True, metavar="DIR",
                        help="local FLAN-T5-large folder (config.json, weights, tokenizer); nothing is downloaded")
    parser.add_argument("--out", required=True, metavar="DIR", help="checkpoint folder to write")
    parser.add_argument("--force", action="store_true", help="replace an existing checkpoint at --out")
    add_shared(parser, "preset", preset_default=None)


def run(args: argparse.Namespace) -> int:
    from published.importer import import_checkpoint

    base = get_preset(args.preset) if args.preset else None
    report = import_checkpoint(Path(args.source), Path(args.text_encoder), Path(args.out), base=base,
                               force=args.force)
    print(f"imported {report.source} (sha256 {report.sha256[:12]}, mapping v{report.mapping_version}, "
          f"preset {report.preset})")
    print(f"  {report.keys} tensors in the file: {report.mapped} mapped, {report.derived} checked against our own "
          f"buffers, {len(report.dropped)} dropped on purpose; coverage {report.coverage:.0%}")
    for key, reason in sorted(report.dropped.items()):
        print(f"  dropped {key}: {reason}")
    for key, value in sorted(report.initialised.items()):
        print(f"  not in the file, set to the authors' initial value {value:.4f}: {key}")
    print(f"  wrote {args.out}")
    return 0
