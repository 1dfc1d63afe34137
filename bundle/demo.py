"""Build side: a small, complete bundle from nothing (an untrained checkpoint, its export, a gallery, the map).

Tests, the latency benchmark and first-time users need a bundle without waiting for a trained teacher. Every step
uses the project's real code: ``core.checkpoint.save_checkpoint``, the exporter's ONNX export and manifest
builder, the one int8 quantization (``export.int8.quantize_tower``), ``gallery.build.build_gallery`` with the
procedural renderer, and ``build_bundle``. With an untrained model the answers are meaningless but the machinery is
the one a trained model goes through.

    python -m bundle.demo --out runs/demo-bundle [--preset tiny] [--region ...]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from contracts.artifacts import MANIFEST_FILE
from contracts.errors import run_guarded

# A lakeside town (Konstanz, on Lake Constance): town, lake, shore, forest and meadows within a few km.
DEMO_REGION = "9.155,47.655,9.195,47.680"
TEST_REGION = "9.165,47.660,9.185,47.672"
# The tests' map: one overview level and a tile of surroundings (seconds to draw, still fills the app's window).
TEST_BUNDLE_OPTIONS = {"overview_levels": 1, "context_tiles": 1}

DEMO_CAPTIONS = [
    "birds singing in a quiet forest with leaves rustling in the wind",
    "busy city street with traffic, car horns and people talking",
    "gentle waves lapping on the lake shore with gulls calling",
    "church bells ringing over the old town square",
    "crickets and frogs at night near a pond",
    "a train passing on the railway line",
    "wind blowing over open meadows with distant cows",
    "a tractor working in the fields with birds around",
    "children and crowds chatting at a busy beach",
    "construction work with drilling and hammering in a built-up area",
    "a stream flowing through the woods with birdsong",
    "sirens and traffic on a main road through the town",
    "dogs barking in a residential neighbourhood",
    "rain falling on the roofs of the houses",
    "an owl hooting in the forest at night",
    "insects buzzing over a wetland marsh",
]


# What a demo bundle is made from: when none of these files (or the libraries below) changed, a demo built
# earlier is the same demo, so the tests may reuse it from pytest's cache instead of exporting again.
_SOURCES = ("core/config.py", "core/checkpoint.py", "contracts", "core/model", "core/data/audio_frontend.py",
            "core/data/logmel_numpy.py", "world", "export", "gallery", "bundle",
            "mobile_app/mbtiles.py", "mobile_app/mercator.py", "mobile_app/bundle.py")


def source_fingerprint(root: Path | None = None) -> str:
    """sha256 over the sources and library versions a demo bundle depends on (a cache key)."""
    root = root or Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for rel in _SOURCES:
        p = root / rel
        for f in sorted(p.rglob("*.py")) if p.is_dir() else [p]:
            if f.is_file():
                h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    for dist in ("torch", "onnx", "onnxruntime", "onnxscript", "numpy", "pillow", "usearch", "hnswlib", "transformers"):
        try:
            h.update(f"{dist}={metadata.version(dist)}".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{dist}=none".encode())
    return h.hexdigest()


def export_image_tower(ckpt: Path, out: Path, *, via_cli: bool = True, tflite: bool = False) -> Path:
    """An export folder with the image tower (fp32 + int8).

    ``via_cli``: the real `sat2sound export` (ORT format and TFLite too) when the export CLI is installed;
    otherwise, or when False (tests: seconds instead of a minute), its ONNX export, the int8 quantization and the
    manifest builder directly (batch-1 graphs, which is what the app runs).
    """
    if via_cli:
        try:
            import export.cli  # noqa: F401
        except ImportError:
            via_cli = False
    if via_cli:
        from core.cli import main as cli_main

        code = cli_main(["export", "--ckpt", str(ckpt), "--target", "ort", "--target", "tflite", "--towers",
                         "image", "--out", str(out), "--force"])
        if code != 0:
            raise RuntimeError(f"sat2sound export failed with exit code {code}")
        return out
    return _export_direct(ckpt, out, tflite=tflite)


def _export_direct(ckpt: Path, out: Path, *, ort_format: bool = True, tflite: bool = False) -> Path:
    from core.checkpoint import load_checkpoint
    from export.int8 import quantize_tower
    from export.manifest import build_manifest, file_entry, write_manifest
    from export.onnx_export import export_onnx
    from export.towers import tower_inputs

    loaded = load_checkpoint(ckpt)
    cfg = loaded.cfg
    out.mkdir(parents=True, exist_ok=True)
    io = {"inputs": [{"name": n} for n in tower_inputs("image")], "outputs": [{"name": "embedding"}], "batch": 1}
    fp32 = export_onnx(loaded.model, cfg, "image", out / "image.fp32.onnx", dynamic_batch=False)
    int8 = out / "image.int8.onnx"
    quant = quantize_tower(fp32, int8, "dynamic", tower="image")
    entries = [file_entry(out, fp32, target="onnx", tower="image", variant="fp32", **io),
               file_entry(out, int8, target="onnx", tower="image", variant="int8", quantization=quant, **io)]
    if ort_format:
        from export.ort_format import convert_to_ort

        ort_file = convert_to_ort({"image.int8": int8}, out)["image.int8"]
        entries.append(file_entry(out, ort_file, target="ort", tower="image", variant="int8", quantization=quant,
                                  **io))
    if tflite:
        from export.tflite_export import export_tflite, quantize_tflite_int8

        t32 = export_tflite(loaded.model, cfg, "image", out / "image.fp32.tflite")
        t8 = out / "image.int8.tflite"
        tq = quantize_tflite_int8(t32, t8, tower="image")
        entries += [file_entry(out, t32, target="tflite", tower="image", variant="fp32", **io),
                    file_entry(out, t8, target="tflite", tower="image", variant="int8", quantization=tq, **io)]
    targets = ["onnx", *(["ort"] if ort_format else []), *(["tflite"] if tflite else [])]
    write_manifest(out, build_manifest(loaded, targets=targets, towers=("image",), files=entries))
    return out


def build_demo(work: str | Path, *, preset: str = "tiny", region: str = DEMO_REGION, seed: int = 0,
               captions: list[str] | None = None, progress: bool = False, force: bool = True,
               export_via_cli: bool = True, **bundle_options: Any) -> dict[str, Path]:
    """checkpoint -> export -> gallery -> bundle under ``work``; returns the folders.

    ``bundle_options`` go to ``build_bundle`` (e.g. ``overview_levels=1, context_tiles=0`` for a quick test map).
    """
    import torch

    from bundle.build import build_bundle
    from core.checkpoint import save_checkpoint
    from core.config import get_preset
    from core.model import build_model
    from gallery.build import build_gallery
    from gallery.captions import read_captions
    from gallery.embedder import TeacherEmbedder
    from gallery.renderers import ProceduralRenderer

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    cfg = get_preset(preset)
    ckpt = work / "checkpoint"
    if not (ckpt / MANIFEST_FILE).is_file():
        save_checkpoint(build_model(cfg).eval(), cfg, ckpt)
    export_dir = work / "export"
    if not (export_dir / MANIFEST_FILE).is_file():
        export_image_tower(ckpt, export_dir, via_cli=export_via_cli)
    gallery_dir = work / "gallery"
    if not (gallery_dir / "index.json").is_file():
        text = work / "captions.txt"
        text.write_text("\n".join(captions or DEMO_CAPTIONS) + "\n")
        embedder = TeacherEmbedder(ckpt, threads=1)
        build_gallery(read_captions(text), gallery_dir, embedder,
                      ProceduralRenderer(seconds=min(4.0, cfg.audio.clip_seconds), sample_rate=embedder.sample_rate),
                      progress=progress)
    bundle = work / "bundle"
    if (bundle / MANIFEST_FILE).is_file() and not force:
        return {"checkpoint": ckpt, "export": export_dir, "gallery": gallery_dir, "bundle": bundle}
    build_bundle(export_dir, gallery_dir, region, bundle, force=force, world_seed=cfg.world.seed, progress=progress,
                 **bundle_options)
    return {"checkpoint": ckpt, "export": export_dir, "gallery": gallery_dir, "bundle": bundle}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bundle.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="work folder (checkpoint/, export/, gallery/, bundle/)")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--region", default=DEMO_REGION)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    def go() -> int:
        paths = build_demo(args.out, preset=args.preset, region=args.region, seed=args.seed, progress=True)
        for name, path in paths.items():
            print(f"{name}: {path}")
        return 0

    return run_guarded(parser.prog, go)  # the one error path: one line, non-zero exit, no traceback


if __name__ == "__main__":
    sys.exit(main())
