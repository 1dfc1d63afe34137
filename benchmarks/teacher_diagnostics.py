"""Which side holds image->audio retrieval back? The teacher's test images ranked against four galleries.

    python -m benchmarks.teacher_diagnostics --ckpt runs/demo/teacher --data runs/demo/world [--split test]
        [--zoom 1] [--metadata all] [--out runs/demo/eval/teacher_diagnostics]

Galleries, all embedded by the checkpoint itself, one item per test sample:
- ``audio``: the recordings (the paper's I2A);
- ``ideal_recogniser``: a clean Qwen-style caption naming exactly the sources mixed into each recording
  (gt_present, loudest first) - what a perfect audio recogniser would know, with no loudness, no noise;
- ``clip_caption``: each recording's own caption (these carry place and time-of-day words besides the sources);
- and, from the audio side, audio -> clip caption (how well the audio tower recognises what it hears).
If the ideal recogniser gallery scores no better than the audio, the audio tower is not the bottleneck.
Numbers are R@10% and median rank with the paper's protocol (core.metrics.retrieval_report).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from core.errors import DataError, Sat2SoundError


def clean_captions(presents: list[list[str]], seed: int = 0) -> list[str]:
    """One Qwen-style caption per recording naming exactly its sources, loudest first ("The audio features birds
    chirping, accompanied by wind blowing in the background.")."""
    from core.world.captions import audio_caption

    rng = np.random.default_rng(seed)
    if any(not p for p in presents):
        raise DataError("every recording needs at least one ground-truth source (gt_present)", field="gt_present")
    return [audio_caption(list(p), "qwen", rng) for p in presents]


def diagnose(ckpt: str | Path, data: str | Path, *, split: str = "test", zoom: int = 1, metadata: str = "all",
             progress: bool = True) -> dict:
    import torch

    from core.checkpoint import load_checkpoint
    from core.data.features import FeatureTable
    from core.evaluate import _embed_texts, embed_table
    from core.metrics import retrieval_report
    from core.world.shards import read_split

    data = Path(data)
    model = load_checkpoint(ckpt).model
    table = FeatureTable.build(data, split, model.cfg, progress=progress)
    if zoom not in table.zooms:
        raise DataError(f"zoom {zoom} is not in the data (zooms {list(table.zooms)})", field="zoom")
    cols = read_split(data, split, columns=["sample_id", "gt_present"]).to_pydict()
    if list(cols["sample_id"]) != list(table.sample_ids):
        raise DataError("the split's rows and the feature table disagree on the sample order", path=data)
    setting = metadata if getattr(model, "metadata", None) is not None else "none"
    emb = embed_table(model, table, [zoom], [setting], progress=progress, desc="diagnostics")
    with torch.no_grad():
        ideal = _embed_texts(model, clean_captions(cols["gt_present"]), 128)
    image, audio, clip_caption = emb["image"][(zoom, setting)], emb["audio"], emb["audio_caption"]

    def row(query: np.ndarray, gallery: np.ndarray) -> dict[str, float]:
        r = retrieval_report(query, gallery)
        return {"r10": float(r["r10"]), "median_rank": float(r["mr"])}

    return {"checkpoint": str(ckpt), "split": split, "n": len(table), "zoom": zoom, "metadata": setting,
            "rows": {"image -> audio": row(image, audio),
                     "image -> ideal recogniser caption": row(image, ideal),
                     "image -> clip caption": row(image, clip_caption),
                     "audio -> clip caption": row(audio, clip_caption),
                     "audio -> ideal recogniser caption": row(audio, ideal)}}


def to_markdown(res: dict) -> str:
    lines = [f"Teacher diagnostics, {res['split']} split (N={res['n']}), zoom {res['zoom']}, metadata "
             f"{res['metadata']}; chance R@10% 0.100.", "", "| query -> gallery | R@10% | MR |", "|---|---:|---:|"]
    lines += [f"| {k} | {v['r10']:.3f} | {v['median_rank']:.1f} |" for k, v in res["rows"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.teacher_diagnostics", description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--zoom", type=int, default=1)
    p.add_argument("--metadata", default="all", help="metadata given to the image tower: all or none")
    p.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.metadata not in ("all", "none"):
        p.error(f"--metadata must be all or none, got {args.metadata!r}")
    try:
        res = diagnose(args.ckpt, args.data, split=args.split, zoom=args.zoom, metadata=args.metadata,
                       progress=not args.no_progress)
    except Sat2SoundError as exc:
        print(f"error: {exc}")
        return 2
    text = to_markdown(res)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(res, indent=1))
        out.with_suffix(".md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
