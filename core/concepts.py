"""`sat2sound concepts`: which codebook concepts a dataset's tiles activate, and what the tiles sharing one look like.

Paper section 12 / Figure 6: each sample's image is embedded; its sparsemax weights over the M codes say which
concepts it uses. The most used codes are listed, samples are grouped by their strongest code, and a contact sheet
shows each group's tiles with the group's land-cover make-up (ground truth from the embedded world) and its most
common recorded sources, so a person can judge whether a concept means something (e.g. "coast", "farmland").
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from contracts.errors import ConfigError
from core.cli_args import DeprecatedAlias, add_ckpt, add_shared

DEFAULT_FEATURE_CACHE = "runs/cache/features"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_ckpt(p, help="checkpoint folder (teacher or student)")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--split", default="test")
    p.add_argument("--zoom", type=int, default=1)
    p.add_argument("--groups", type=int, default=8, help="how many concept groups on the sheet")
    p.add_argument("--per-group", type=int, default=6, help="tiles shown per group")
    p.add_argument("--out", default="runs/concepts")
    add_shared(p, "cache-dir", "no-progress")
    p.add_argument("--cache", dest="cache_dir", action=DeprecatedAlias, new="--cache-dir")


@torch.no_grad()
def concept_weights(loaded, table, zoom: int, batch_size: int = 256) -> np.ndarray:
    model = loaded.model
    if not hasattr(model.head, "codebook"):
        raise ConfigError("this checkpoint is the global-pooling baseline: it has no codebook concepts")
    out = []
    meta_keys = ("lat", "lon", "month", "hour", "audio_source", "caption_source", "meta_mask")
    for start in range(0, len(table), batch_size):
        b = table.batch(np.arange(start, min(start + batch_size, len(table))), zoom)
        enc = model.encode_image(b["image"], b["zoom"], b["gsd"], {k: b[k] for k in meta_keys})
        out.append(enc.weights.numpy())
    return np.concatenate(out)


def group_by_top_code(weights: np.ndarray, n_groups: int) -> list[tuple[int, np.ndarray]]:
    """The n largest groups of samples sharing their strongest code, each sorted by that code's weight."""
    top = weights.argmax(axis=1)
    counts = Counter(top.tolist())
    groups = []
    for code, _ in counts.most_common(n_groups):
        members = np.flatnonzero(top == code)
        groups.append((code, members[np.argsort(-weights[members, code])]))
    return groups


def run(args: argparse.Namespace) -> int:
    from core.checkpoint import load_checkpoint
    from core.data.features import FeatureTable

    loaded = load_checkpoint(args.ckpt)
    table = FeatureTable.build(args.data, args.split, loaded.cfg, cache_dir=args.cache_dir or DEFAULT_FEATURE_CACHE,
                              progress=not args.no_progress)
    if args.zoom not in table.zooms:
        raise ConfigError(f"--zoom must be one of {table.zooms}")
    w = concept_weights(loaded, table, args.zoom)
    usage = (w > 0).mean(axis=0)
    mean_w = w.mean(axis=0)
    ranked = np.argsort(-mean_w)[:20]
    groups = group_by_top_code(w, args.groups)
    extras = table.extras
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"checkpoint": loaded.fingerprint, "split": args.split, "zoom": args.zoom, "samples": len(table),
               "codes_used": int((usage > 0).sum()), "codebook_size": int(w.shape[1]),
               "mean_active_codes_per_sample": float((w > 0).sum(axis=1).mean()),
               "top_codes": [{"code": int(c), "mean_weight": float(mean_w[c]), "used_by": float(usage[c])}
                             for c in ranked],
               "groups": []}
    from world.cover_classes import FINE_CLASSES

    for code, members in groups:
        fr = [np.asarray(extras[i].get("gt_cover_fractions") or [], np.float32) for i in members]
        fr = [f for f in fr if f.size == len(FINE_CLASSES)]
        makeup = dict(zip(FINE_CLASSES, np.mean(fr, axis=0).round(3).tolist())) if fr else {}
        sources = Counter(s for i in members for s in (extras[i].get("gt_present") or []))
        summary["groups"].append({"code": int(code), "size": int(len(members)),
                                  "cover": {k: v for k, v in sorted(makeup.items(), key=lambda kv: -kv[1]) if v > 0.02},
                                  "sources": dict(sources.most_common(4)),
                                  "members": [table.sample_ids[i] for i in members[: args.per_group]]})
    (out / f"concepts-{args.split}-z{args.zoom}.json").write_text(json.dumps(summary, indent=2))
    png = contact_sheet(out / f"concepts-{args.split}-z{args.zoom}.png", table, args.zoom, summary["groups"], groups,
                        args.per_group)
    print(f"{summary['codes_used']} of {summary['codebook_size']} codes used; "
          f"{summary['mean_active_codes_per_sample']:.1f} active per sample; sheet: {png}")
    return 0


def contact_sheet(path: Path, table, zoom: int, described: list[dict], groups, per_group: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    zi = table.zooms.index(zoom)
    images = table.array("images")  # (N, Z, S, S, 3) of this split
    rows = len(groups)
    fig, axes = plt.subplots(rows, per_group + 1, figsize=(1.7 * (per_group + 1) + 2.2, 1.8 * rows),
                             gridspec_kw={"width_ratios": [1] * per_group + [2.4]}, squeeze=False)
    for r, ((code, members), info) in enumerate(zip(groups, described)):
        for c in range(per_group):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(members):
                ax.imshow(images[members[c], zi])
        ax = axes[r][per_group]
        ax.axis("off")
        cover = ", ".join(f"{k} {v:.0%}" for k, v in list(info["cover"].items())[:4])
        sources = ", ".join(list(info["sources"])[:4])
        ax.text(0, 0.5, f"code #{code}  ({info['size']} tiles)\ncover: {cover}\nheard: {sources}", fontsize=7,
                va="center", wrap=True)
    fig.suptitle(f"Concept groups: samples sharing their strongest codebook concept (zoom {zoom})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
