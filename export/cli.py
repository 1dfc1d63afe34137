"""`sat2sound export`: the towers of a teacher/student checkpoint to ONNX / ORT / Core ML / TFLite, parity-checked.

    sat2sound export --ckpt DIR --target onnx|ort|coreml|tflite [--target ...] --out DIR [--force]
                     [--int8/--no-int8] [--towers image,audio,audio_wave,text] [--data DIR --split test]

Also ``python -m export ...`` (same arguments). Exits 2 with the figures when a file fails its parity gate, and
then writes nothing.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from contracts.artifacts import MANIFEST_FILE
from core.cli_args import DeprecatedAlias, add_ckpt, add_shared
from export.parity import FP32_MIN_COSINE, INT8_MEAN_COSINE, MAX_R10_DROP, Gates

if TYPE_CHECKING:
    from export.exporter import ExportResult


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_ckpt(parser, help="checkpoint folder (teacher, student or a quantize output)", old=("--model",))
    parser.add_argument("--target", action="append", required=True, metavar="TARGET",
                        help="onnx, ort, coreml or tflite; repeat or comma-separate for several")
    parser.add_argument("--out", required=True, help="output folder (refused if it exists, unless --force)")
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    parser.add_argument("--int8", action=argparse.BooleanOptionalAction, default=True,
                        help="also write int8 variants (default: yes)")
    parser.add_argument("--towers", default=None,
                        help="comma-separated: image, image_grounding, audio, audio_wave, text "
                             "(default: image,audio,audio_wave,text)")
    parser.add_argument("--data", default=None, help="dataset folder: also check I2A R@10%% against PyTorch")
    parser.add_argument("--split", default="test", help="split of --data to evaluate (default: test)")
    parser.add_argument("--fp32-min-cos", type=float, default=FP32_MIN_COSINE,
                        help=f"float files: minimum cosine per embedding (default {FP32_MIN_COSINE})")
    parser.add_argument("--int8-min-cos", type=float, default=INT8_MEAN_COSINE,
                        help=f"int8 files: minimum mean cosine (default {INT8_MEAN_COSINE})")
    parser.add_argument("--max-r10-drop", type=float, default=MAX_R10_DROP,
                        help=f"largest I2A R@10%% drop vs PyTorch with --data (default {MAX_R10_DROP})")
    parser.add_argument("--threads", type=int, default=1, help="runtime threads for the parity runs (default 1)")
    add_shared(parser, "no-progress")
    parser.add_argument("--quiet", dest="no_progress", action=DeprecatedAlias, new="--no-progress", nargs=0,
                        const=True)


def _summary(result: ExportResult) -> str:
    lines = [f"{'file':44s} {'MB':>8s}  parity"]
    for e in result.files:
        p = e.get("parity", {})
        if p.get("ran"):
            figure = f"{p['gate']} {p[p['gate']]:.6f} (>= {p['threshold']})"
        else:
            figure = p.get("note", "-")
        lines.append(f"{e['path']:44s} {e['bytes'] / 1e6:8.2f}  {figure}")
    r = result.retrieval
    if r and "pytorch_i2a_r10" in r:
        lines.append(f"I2A R@10% on {r['split']} (n={r['n']}): PyTorch {r['pytorch_i2a_r10']:.4f}; "
                     + ", ".join(f"{k} {v['i2a_r10']:.4f}" for k, v in r["files"].items()))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from export.exporter import export_model

    gates = Gates(fp32_min_cosine=args.fp32_min_cos, int8_mean_cosine=args.int8_min_cos,
                  max_r10_drop=args.max_r10_drop)
    result = export_model(args.ckpt, args.out, args.target, towers=args.towers, int8=args.int8,
                          force=args.force, data=args.data, split=args.split, gates=gates,
                          progress=not args.no_progress, threads=args.threads)
    print(_summary(result))
    print(f"wrote {len(result.files)} file(s) and {MANIFEST_FILE} to {result.out}")
    return 0
