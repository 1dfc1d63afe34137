"""Pictures for the real-imagery benchmark: the contact sheet (real crop beside the world's tile of the same place,
with the MODIS label and each one's top-1 class), soundscape maps over the Sentinel-2 scene, and the app running
on a bundle drawn from it (headless, the autopilot's screenshot)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MAP_QUERIES = ("waves crashing on the beach", "sounds of farm machinery", "frogs croaking in the marsh",
               "birds chirping, leaves rustling in the forest")
APP_REGION = "-75.700,37.650,-75.630,37.700"  # farmland, marsh and the lagoon's shore (about 6 x 5.5 km)


def small_png(path: Path) -> Path:
    """Rewrite a PNG with 256 colours (as the README's other pictures), so it stays small in the repository."""
    from PIL import Image

    img = Image.open(path).convert("RGB")
    img.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.FLOYDSTEINBERG).save(path, optimize=True)
    return path


def contact_sheet(path: Path, real: np.ndarray, world: np.ndarray, labels: np.ndarray, real_top1: list[int],
                  world_top1: list[int], n: int = 48, cols: int = 6, cell: int = 112) -> Path:
    """n places spread over the set: [real | world] pairs, captioned label / real's top-1 / world's top-1."""
    from PIL import Image, ImageDraw

    from world.cover_classes import AREA_CLASSES

    idx = np.linspace(0, len(real) - 1, min(n, len(real))).round().astype(int)
    rows = (len(idx) + cols - 1) // cols
    pad = 16
    sheet = Image.new("RGB", (cols * (2 * cell + 6), rows * (cell + pad)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for k, i in enumerate(idx):
        x, y = (k % cols) * (2 * cell + 6), (k // cols) * (cell + pad)
        sheet.paste(Image.fromarray(real[i]).resize((cell, cell)), (x, y + pad))
        sheet.paste(Image.fromarray(world[i]).resize((cell, cell)), (x + cell, y + pad))
        ok_r = "+" if real_top1[i] == labels[i] else "-"
        ok_w = "+" if world_top1[i] == labels[i] else "-"
        text = f"{AREA_CLASSES[labels[i]]}: {ok_r}{AREA_CLASSES[real_top1[i]]} | {ok_w}{AREA_CLASSES[world_top1[i]]}"
        draw.text((x + 2, y + 2), text, fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)
    return small_png(path)


def soundscape_maps(args: argparse.Namespace, scene: Path) -> list[Path]:
    """`sat2sound map --imagery` over the whole Sentinel-2 scene at zoom 3; the first query's PNG goes to docs."""
    from core.cli import main as cli

    out = Path(args.out).parent / "real_imagery_maps"
    argv = ["map", "--ckpt", str(args.ckpt), "--imagery", str(scene), "--zoom", "3", "--cols", "40", "--out", str(out),
            "--no-progress"]
    for q in MAP_QUERIES:
        argv += ["--query", q]
    if cli(argv) != 0:
        raise RuntimeError("the imagery map failed")
    pngs = sorted(out.glob("map-*-z3-imagery-*.png"))
    if args.docs:
        for png in pngs:
            if png.name.startswith("map-waves"):
                small_png(Path(shutil.copy(png, Path(args.docs_dir) / "real_imagery_map.png")))
            if png.name.startswith("map-sounds-of-farm"):
                small_png(Path(shutil.copy(png, Path(args.docs_dir) / "real_imagery_map_farm.png")))
    return pngs


def app_screenshot(args: argparse.Namespace, scene: Path) -> Path:
    """Bundle a region of the Sentinel-2 scene, run the app headless, tap a field inland and one past the scene's
    edge, and save the screenshot after the first tap."""
    from core.cli import main as cli

    if not args.gallery:
        raise RuntimeError("--app needs --gallery (a gallery of the export's model, current index format)")
    work = Path(args.out).parent / "real_imagery_app"
    bundle = work / "bundle"
    if cli(["bundle", "--export", str(args.export), "--gallery", str(args.gallery), f"--region={APP_REGION}",
            "--imagery", str(scene), "--out", str(bundle), "--force", "--overview-levels", "2",
            "--context-tiles", "1", "--no-progress"]) != 0:
        raise RuntimeError("the imagery bundle failed")
    shot = (Path(args.docs_dir) if args.docs else work) / "real_imagery_app.png"
    steps = [{"do": "wait_tiles", "timeout": 20}, {"do": "tap", "lat": 37.688, "lon": -75.685},
             {"do": "snapshot", "name": "field"}, {"do": "wait_tiles", "timeout": 20},
             {"do": "screenshot", "path": str(shot)}, {"do": "tap", "lat": 37.675, "lon": -75.636},
             {"do": "snapshot", "name": "marsh"}]
    env = {**os.environ, "KIVY_HOME": str(work / "kivy"), "SDL_VIDEODRIVER": "offscreen", "SDL_AUDIODRIVER": "dummy",
           "PYTHONPATH": str(REPO)}
    out = work / "autopilot.json"
    cmd = [sys.executable, "-m", "mobile_app.autopilot", "--bundle", str(bundle), "--script", json.dumps(steps),
           "--out", str(out), "--data-dir", str(work / "data"), "--headless", "--clock", "2026-06-21T07:30",
           "--size", "1280x800", "--threads", "1"]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"the app failed: {proc.stderr[-2000:]}")
    result = json.loads(out.read_text())
    for name, snap in result.get("snapshots", {}).items():
        hits = [h.get("caption", "")[:90] for h in (snap.get("hits") or [])[:3]]
        print(f"app tap {name}: playing {snap.get('playing')}, error {snap.get('error')}, top captions {hits}")
    return small_png(shot) if args.docs else shot
