"""`sat2sound ground`: where in a tile a sound belongs, as a heat map over the tile; `--evaluate` scores it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from contracts.errors import ConfigError, DataError
from core.cli_args import add_ckpt, add_shared, parse_lat_lon

DEFAULT_EVAL_QUERIES = (
    "birds chirping in the trees", "waves crashing on the beach", "sounds of farm machinery",
    "cars and traffic on the road", "a train passing by", "frogs croaking in the marsh",
    "people talking in a crowd", "water flowing in a stream",
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_ckpt(p, help="checkpoint folder (codebook head)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--tile", help="an aerial image file (treated as a native Bing-like tile, cropped for --zoom)")
    src.add_argument("--at", help="LAT,LON: render the embedded world's tile there")
    p.add_argument("--text", action="append", default=[], help="text to ground (repeatable)")
    p.add_argument("--zoom", type=int, default=1)
    p.add_argument("--out", default="runs/grounding", help="output folder")
    p.add_argument("--evaluate", action="store_true", help="score grounding on a dataset split's places")
    p.add_argument("--data", help="dataset folder (for --evaluate)")
    p.add_argument("--split", default="test")
    p.add_argument("--n", type=int, default=200, help="places tried per query in --evaluate")
    add_shared(p, "no-progress")


def _file_view(path: Path, cfg, zoom: int) -> np.ndarray:
    from contracts.image_prep import decode_image, prepare_tile

    if not path.is_file():
        raise DataError("tile image not found", path=path)
    img = decode_image(path, name_for_errors=path, field="tile")
    return prepare_tile(img, zoom, cfg.image.image_size, cfg.image.imagery)


def save_overlay(path: Path, view: np.ndarray, heat: np.ndarray, title: str, cover: np.ndarray | None = None,
                 relevance_note: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from core.grounding.heatmap import upsample

    size = 320
    from contracts.image_prep import resize

    big = resize(view, size)
    h = upsample(heat, size)
    h = (h - h.min()) / max(float(np.ptp(h)), 1e-9)
    n = 3 if cover is not None else 2
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 4.4), constrained_layout=True)
    axes[0].imshow(big)
    axes[0].set_title("tile")
    axes[1].imshow(big)
    axes[1].imshow(h, cmap="jet", alpha=0.45, extent=(0, size, size, 0))
    axes[1].set_title(f"“{title}”", fontsize=10)
    if cover is not None:
        from world.cover_classes import FINE_CLASSES

        palette = plt.get_cmap("tab20", len(FINE_CLASSES))
        axes[2].imshow(cover, cmap=palette, vmin=-0.5, vmax=len(FINE_CLASSES) - 0.5, interpolation="nearest")
        present = np.unique(cover)
        axes[2].set_title("ground truth cover" + (f"\n{relevance_note}" if relevance_note else ""), fontsize=9)
        from matplotlib.patches import Patch

        axes[2].legend(handles=[Patch(color=palette(int(c)), label=FINE_CLASSES[c]) for c in present],
                       fontsize=7, loc="lower left", framealpha=0.8)
    for ax in axes:
        ax.axis("off")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run(args: argparse.Namespace) -> int:
    from core.checkpoint import load_checkpoint

    if args.evaluate:
        if not args.data:
            raise ConfigError("--evaluate needs --data DIR")
        from core.grounding.evaluate import evaluate_grounding

        loaded = load_checkpoint(args.ckpt)
        result = evaluate_grounding(loaded, args.data, args.split, args.text or list(DEFAULT_EVAL_QUERIES),
                                    zoom=args.zoom, n=args.n, out=Path(args.out), progress=not args.no_progress)
        print(json.dumps(result["overall"], indent=2))
        return 0
    if not args.text:
        raise ConfigError("give --text 'birds chirping' (repeatable)")
    if not args.tile and not args.at:
        raise ConfigError("give --tile IMAGE or --at LAT,LON")
    from core.grounding.heatmap import ground_text, patch_relevance
    from core.grounding.scoring import relevant_classes, score_tile
    from core.maps.cli import slug
    from core.maps.tiles import WorldTiles

    loaded = load_checkpoint(args.ckpt)
    cfg = loaded.cfg
    if args.zoom not in cfg.image.zooms:
        raise ConfigError(f"--zoom must be one of {cfg.image.zooms}")
    cover = None
    if args.at:
        lat, lon = parse_lat_lon(args.at)
        tv = WorldTiles(cfg).view(lat, lon, args.zoom)
        view, cover, where = tv.image, tv.cover, f"{lat:.4f},{lon:.4f}"
    else:
        view, where = _file_view(Path(args.tile), cfg, args.zoom), Path(args.tile).stem
    gsd = WorldTiles(cfg).gsd
    from world.sources import sources_in_text

    for text in args.text:
        g = ground_text(loaded, view, args.zoom, gsd, text)
        note, result = "", {}
        if cover is not None:
            named = sources_in_text(text)
            if named:
                rel = patch_relevance(cover, relevant_classes(named), cfg.image.grid)
                result = score_tile(g.heat, rel)
                note = f"relevant to {', '.join(named)}: hit={result['pointing_hit']} AUC={result['auc']:.2f}"
        png = save_overlay(Path(args.out) / f"ground-{slug(where)}-{slug(text)}-z{args.zoom}.png", view, g.heat,
                           text, cover, note)
        words = ", ".join(f"{w['token']}->#{w['code']}" for w in g.words)
        print(f"{text!r}: {png}  words: {words}" + (f"  {note}" if note else ""))
    return 0
