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

With ``--caption-draws K`` (K > 0) it asks the same of image->text, at the same zoom: it re-renders every test tile,
draws K fresh LLaVA-style captions per crop from the world's caption generator (the stored caption's inputs, other
random numbers), embeds them with the checkpoint's text tower and ranks the stored captions against
- ``fresh caption draw``: one fresh caption of the same crop (the mean R@10% over the K draws): the text tower alone;
- ``mean of the K draws``: the mean of the K fresh caption embeddings, the embedding an image tower would give if it
  knew exactly which captions its crop produces. If this is far above image -> stored caption (no metadata, the I2T
  row of the evaluation), the image side limits image->text; if it is near it, the text side does.
Numbers are R@10% and median rank with the paper's protocol (core.metrics.retrieval_report).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from contracts.errors import ConfigError, DataError, run_guarded


def clean_captions(presents: list[list[str]], seed: int = 0) -> list[str]:
    """One Qwen-style caption per recording naming exactly its sources, loudest first ("The audio features birds
    chirping, accompanied by wind blowing in the background.")."""
    from world.captions import audio_caption

    rng = np.random.default_rng(seed)
    if any(not p for p in presents):
        raise DataError("every recording needs at least one ground-truth source (gt_present)", field="gt_present")
    return [audio_caption(list(p), "qwen", rng) for p in presents]


FRESH_STREAM = 1_000_000  # offset of the fresh draws' random streams (the caption oracle uses 0..k-1)


def fresh_image_captions(data: Path, places: list[tuple[float, float]], zoom: int, draws: int,
                         progress: bool = False) -> list[list[str]]:
    """``draws`` new captions per place (lat, lon) from the generator that wrote the stored ones: the same tile,
    crop, plausible sources and cover (world seed and tile size from ``data``'s world.json), other random streams."""
    from tqdm.auto import tqdm

    from world.caption_oracle import caption_generator_inputs
    from world.captions import image_caption
    from world.shards import world_params as _world_params

    seed, tile_px, ground_m = _world_params(data, None)
    out = []
    for i, (lat, lon) in enumerate(tqdm(places, desc="fresh captions", unit="tile", disable=not progress,
                                        leave=False)):
        weights, cover = caption_generator_inputs(lat, lon, tile_px, ground_m, seed)[zoom]
        out.append([image_caption(weights, cover, np.random.default_rng([seed, i, zoom, FRESH_STREAM + s]), zoom=zoom)
                    for s in range(draws)])
    return out


def diagnose(ckpt: str | Path, data: str | Path, *, split: str = "test", zoom: int = 1, metadata: str = "all",
             progress: bool = True, caption_draws: int = 0) -> dict:
    import torch

    from core.checkpoint import load_checkpoint
    from core.data.features import FeatureTable
    from core.evaluate import _embed_texts, embed_table
    from core.metrics import retrieval_report
    from world.shards import read_split

    if isinstance(caption_draws, bool) or not isinstance(caption_draws, int) or caption_draws < 0:
        raise ConfigError(f"caption draws must be a whole number >= 0, got {caption_draws!r}")
    data = Path(data)
    model = load_checkpoint(ckpt).model
    table = FeatureTable.build(data, split, model.cfg, progress=progress)
    if zoom not in table.zooms:
        raise DataError(f"zoom {zoom} is not in the data (zooms {list(table.zooms)})", field="zoom")
    cols = read_split(data, split, columns=["sample_id", "gt_present", "latitude", "longitude"]).to_pydict()
    if list(cols["sample_id"]) != list(table.sample_ids):
        raise DataError("the split's rows and the feature table disagree on the sample order", path=data)
    setting = metadata if getattr(model, "metadata", None) is not None else "none"
    settings = [setting] if setting == "none" or not caption_draws else [setting, "none"]
    emb = embed_table(model, table, [zoom], settings, progress=progress, desc="diagnostics")
    with torch.no_grad():
        ideal = _embed_texts(model, clean_captions(cols["gt_present"]), 128)
    image, audio, clip_caption = emb["image"][(zoom, setting)], emb["audio"], emb["audio_caption"]

    def row(query: np.ndarray, gallery: np.ndarray) -> dict[str, float]:
        r = retrieval_report(query, gallery)
        return {"r10": float(r["r10"]), "median_rank": float(r["mr"])}

    rows = {}
    if caption_draws:
        fresh = fresh_image_captions(data, list(zip(cols["latitude"], cols["longitude"])), zoom, caption_draws,
                                     progress)
        stored = emb["image_caption"][zoom]
        with torch.no_grad():
            drawn = [_embed_texts(model, [row[s] for row in fresh], 128) for s in range(caption_draws)]
        single = [row(d, stored) for d in drawn]
        mean = np.mean(drawn, axis=0)
        mean /= np.linalg.norm(mean, axis=1, keepdims=True)
        rows = {"image (no metadata) -> stored image caption": row(emb["image"][(zoom, "none")], stored),
                "fresh caption draw -> stored image caption": {
                    k: float(np.mean([r[k] for r in single])) for k in ("r10", "median_rank")},
                f"mean of {caption_draws} fresh draws -> stored image caption": row(mean, stored)}
    return {"checkpoint": str(ckpt), "split": split, "n": len(table), "zoom": zoom, "metadata": setting,
            "caption_draws": caption_draws,
            "rows": {"image -> audio": row(image, audio),
                     "image -> ideal recogniser caption": row(image, ideal),
                     "image -> clip caption": row(image, clip_caption),
                     "audio -> clip caption": row(audio, clip_caption),
                     "audio -> ideal recogniser caption": row(audio, ideal), **rows}}


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
    p.add_argument("--caption-draws", type=int, default=0, metavar="K",
                   help="also diagnose image->text with K fresh caption draws per crop (0: skip; 8 is plenty)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.caption_draws < 0:
        p.error(f"--caption-draws must be >= 0, got {args.caption_draws}")
    if args.metadata not in ("all", "none"):
        p.error(f"--metadata must be all or none, got {args.metadata!r}")
    def go() -> int:
        res = diagnose(args.ckpt, args.data, split=args.split, zoom=args.zoom, metadata=args.metadata,
                       progress=not args.no_progress, caption_draws=args.caption_draws)
        text = to_markdown(res)
        print(text)
        if args.out:
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.with_suffix(".json").write_text(json.dumps(res, indent=1))
            out.with_suffix(".md").write_text(text)
        return 0

    return run_guarded(p.prog, go)


if __name__ == "__main__":
    raise SystemExit(main())
