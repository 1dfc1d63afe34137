"""Build side: gather what a device needs into one verified bundle folder.

``build_bundle(model_dir, gallery_dir, region, out)``:
1. reads the export folder's manifest and picks the image+metadata tower files the device runs (int8 preferred:
   ORT format for ONNX Runtime, TFLite for LiteRT; plain ONNX when there is no ORT file);
2. opens the gallery fully (integrity, every clip) and refuses when its vectors were not made in the model's
   embedding space (the checkpoint's fingerprint, or for a student its teacher's);
3. plans and renders the region's map (bundle.map_tiles) with levels matched to the model's zoom views;
4. copies everything, records SHA-256 + size of every file, versions and fingerprints in manifest.json;
5. all of it in a temp folder beside ``out``, renamed into place at the end: a failed build leaves nothing.

May use the build-side world renderer; the device side never imports this module.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bundle import map_tiles
from contracts.artifacts import MANIFEST_FILE, read_json, sha256_file
from contracts.durability import staging_folder
from contracts.faults import fault_point
from contracts.schema import ZOOM_CROP_FRACTION
from core import __version__
from gallery.errors import GalleryError
from gallery.layout import SCHEMA_VERSION as GALLERY_SCHEMA
from gallery.query import Gallery
from mobile_app import bundle as layout
from mobile_app import mercator
from mobile_app.errors import BundleError

MAX_TILES = 20000
MODEL_DIR = "model"
GALLERY_DIR = "gallery"
MAP_FILE = "map/region.mbtiles"
FILE_KINDS = ("ort", "onnx", "tflite")
_SUFFIX_KIND = {".ort": "ort", ".onnx": "onnx", ".tflite": "tflite"}


# ---------------------------------------------------------------------------------------------- the export


logger = logging.getLogger(__name__)


@dataclass
class ExportedTower:
    """The image tower of an export folder, as the bundle needs it."""

    root: Path
    manifest: dict[str, Any]
    files: dict[str, Path]  # ort / onnx / tflite -> file
    variant: str
    inputs: tuple[str, ...]
    output: str
    fingerprint: str
    space_fingerprint: str
    kind: str
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    gsd_m: float
    zooms: tuple[int, ...]
    crop_fraction: dict[int, float]
    tile_ground_m: float | None
    embedding_dim: int
    extras: list[Path] = field(default_factory=list)  # side files a runtime needs (required-operator configs...)


def _entries(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    files = manifest.get("files", [])
    if isinstance(files, dict):
        return [{"file": k, **v} if isinstance(v, dict) else {"file": k} for k, v in files.items()]
    return [dict(e) for e in files if isinstance(e, dict)]


def _path_of(entry: dict[str, Any]) -> str | None:
    for key in ("file", "path", "name"):
        if isinstance(entry.get(key), str):
            return entry[key]
    return None


def _first(d: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for k in keys:
        if k in d and d[k] is not None:
            return d[k]
    return default


def read_export(model_dir: str | Path) -> ExportedTower:
    """The image tower files and facts of an export folder; BundleError when it has no usable image tower."""
    root = Path(model_dir)
    path = root / MANIFEST_FILE
    if not root.is_dir():
        raise BundleError(f"model export folder {root} does not exist")
    if not path.is_file():
        raise BundleError(f"{root} is not an export folder (manifest.json is missing); run `sat2sound export` first")
    manifest = read_json(path, BundleError)
    by_variant: dict[str, dict[str, Path]] = {}
    io_names: dict[str, tuple[tuple[str, ...], str]] = {}
    for e in _entries(manifest):
        rel = _path_of(e)
        if rel is None or e.get("tower", "image") != "image":
            continue
        kind = _SUFFIX_KIND.get(Path(rel).suffix.lower())
        if kind is None:
            continue
        variant = str(e.get("variant", "fp32"))
        file = root / rel
        if not file.is_file():
            raise BundleError(f"export manifest lists {rel}, which is missing from {root}")
        by_variant.setdefault(variant, {}).setdefault(kind, file)
        names_in = e.get("inputs") or e.get("input_names")
        names_out = e.get("outputs") or e.get("output_names")
        if names_in:
            ins = tuple(i["name"] if isinstance(i, dict) else str(i) for i in names_in)
            outs = [o["name"] if isinstance(o, dict) else str(o) for o in (names_out or ["embedding"])]
            io_names[variant] = (ins, outs[0])
    if not by_variant:
        raise BundleError(f"export {root} has no image tower (ONNX/ORT/TFLite); export it with "
                          "`sat2sound export --towers image --target ort --target tflite`")
    variant = next((v for v in ("int8", "fp16", "fp32") if v in by_variant and
                    ({"ort", "onnx"} & set(by_variant[v]))), None)
    if variant is None:
        raise BundleError(f"export {root} has no ONNX Runtime file (.ort or .onnx) for the image tower; the app's "
                          "default runtime needs one")
    files = dict(by_variant[variant])
    if "ort" in files:  # ONNX Runtime runs the mobile ORT format directly: the .onnx would be dead weight
        files.pop("onnx", None)
    if "tflite" not in files:  # LiteRT may only exist in another variant: still better than none
        for v in ("int8", "fp32", "fp16"):
            if "tflite" in by_variant.get(v, {}):
                files["tflite"] = by_variant[v]["tflite"]
                break
    pre = _first(manifest, "preprocessing", "preprocess", default={}) or {}
    img = pre.get("image", pre) if isinstance(pre.get("image", pre), dict) else pre
    src = manifest.get("source", {}) if isinstance(manifest.get("source"), dict) else {}
    fingerprint = _first(src, "fingerprint", default=None) or manifest.get("fingerprint")
    if not fingerprint:
        raise BundleError(f"export manifest {path} names no source model fingerprint; re-export the model")
    space = (_first(src, "teacher_fingerprint", "space_fingerprint", default=None)
             or manifest.get("teacher_fingerprint") or manifest.get("space_fingerprint")
             or _teacher_of(src.get("path"), str(fingerprint)) or fingerprint)
    imagery = str(_first(img, "imagery", default="bingmap"))
    fractions = _first(img, "zoom_crop_fraction", "zoom_crop_fractions", "crop_fraction", default=None)
    if isinstance(fractions, dict) and imagery in fractions and isinstance(fractions[imagery], dict):
        fractions = fractions[imagery]
    if not isinstance(fractions, dict):
        fractions = ZOOM_CROP_FRACTION.get(imagery, ZOOM_CROP_FRACTION["bingmap"])
    gsd = _first(img, "gsd_m", "gsd", default=None)
    if isinstance(gsd, dict):
        gsd = gsd.get(imagery)
    if gsd is None:
        gsd_table = _first(img, "gsd_per_imagery", "imagery_gsd_m", default={}) or {}
        gsd = gsd_table.get(imagery, 0.6)
    ins, out = io_names.get(variant) or next(iter(io_names.values()), (None, "embedding"))
    if ins is None:  # the export's input names: the image, its zoom and GSD, then the metadata fields
        ins = ("image", "zoom", "gsd", "lat", "lon", "month", "hour", "audio_source", "caption_source", "meta_mask")
    extras = []
    if "ort" in files:  # the operator list for a size-reduced ORT build, next to the .ort file
        extras = sorted(p for p in files["ort"].parent.glob("required_operators*.config"))
    return ExportedTower(
        root=root, manifest=manifest, files=files, variant=variant, inputs=tuple(ins), output=str(out),
        fingerprint=str(fingerprint), space_fingerprint=str(space),
        kind=str(_first(src, "kind", default=manifest.get("kind", ""))),
        image_size=int(_first(img, "image_size", "size", default=0)),
        mean=tuple(float(v) for v in _first(img, "mean", default=(0.485, 0.456, 0.406))),
        std=tuple(float(v) for v in _first(img, "std", default=(0.229, 0.224, 0.225))), gsd_m=float(gsd),
        zooms=tuple(int(z) for z in _first(img, "zooms", default=sorted(int(k) for k in fractions))),
        crop_fraction={int(k): float(v) for k, v in fractions.items()},
        tile_ground_m=(float(_first(img, "tile_ground_m", "native_ground_m")) if
                       _first(img, "tile_ground_m", "native_ground_m") is not None else None),
        embedding_dim=int(_first(manifest, "embedding_dim", "dim", default=0) or
                          _first(manifest.get("model", {}) if isinstance(manifest.get("model"), dict) else {},
                                 "embedding_dim", default=0)),
        extras=extras)


def _teacher_of(source_path: Any, fingerprint: str) -> str | None:
    """A student's (or its int8 copy's) teacher fingerprint, read from the source checkpoint's own manifest.

    The export manifest records the checkpoint it came from; a student checkpoint (and a quantize folder, which
    carries the student's manifest) names its teacher, whose embedding space the student maps into.
    """
    if not source_path:
        return None
    try:
        m = json.loads((Path(str(source_path)) / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return None
    if m.get("fingerprint") not in (None, fingerprint) and m.get("source_fingerprint") != fingerprint:
        return None  # the folder changed since the export: do not trust what it says now
    teacher = m.get("teacher_fingerprint")
    return str(teacher) if teacher else None


# ---------------------------------------------------------------------------------------------- building


@dataclass
class BundleReport:
    out: Path
    files: int
    bytes: int
    tiles: int
    plan: str
    seconds: dict[str, float]

    def summary(self) -> str:
        t = ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items())
        return f"bundle {self.out}: {self.files} files, {self.bytes / 1e6:.1f} MB, {self.tiles} map tiles; time {t}"


def _tour(gallery, region: mercator.Bounds, n: int = 12) -> list[dict[str, Any]]:
    """Places for the kiosk's attract loop: gallery items recorded inside the region, else a grid over it."""
    places: list[dict[str, Any]] = []
    conn = gallery._conn
    rows = conn.execute("SELECT id, lat, lon, caption FROM items WHERE lat IS NOT NULL AND lon IS NOT NULL "
                        "AND lat BETWEEN ? AND ? AND lon BETWEEN ? AND ? ORDER BY label LIMIT ?",
                        (region.south, region.north, region.west, region.east, n)).fetchall()
    for item_id, lat, lon, caption in rows:
        places.append({"lat": float(lat), "lon": float(lon), "label": caption[:60], "item": item_id})
    if len(places) < 3:
        for fy in (0.3, 0.5, 0.7):
            for fx in (0.3, 0.5, 0.7):
                places.append({"lat": region.south + fy * (region.north - region.south),
                               "lon": region.west + fx * (region.east - region.west), "label": "grid"})
    return places[:n]


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)


def build_bundle(model_dir: str | Path, gallery_dir: str | Path, region: str | mercator.Bounds, out: str | Path, *,
                 force: bool = False, tile_ground_m: float | None = None, image_size: int | None = None,
                 overview_levels: int = 3, context_tiles: int = 2, tile_format: str = "jpg", quality: int = 88,
                 world_seed: int = 0,
                 renderer: map_tiles.Renderer | None = None, max_tiles: int = MAX_TILES,
                 progress: bool = True, imagery: str | Path | None = None, bands: str | None = None) -> BundleReport:
    """Build a bundle folder at ``out`` (see the module docstring); BundleError on anything that does not fit."""
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    out = Path(out)
    try:
        bounds = region if isinstance(region, mercator.Bounds) else mercator.parse_bounds(region)
    except ValueError as exc:
        raise BundleError(f"--region: {exc}") from None
    if out.exists() and not out.is_dir():
        raise BundleError(f"output {out} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise BundleError(f"output folder {out} exists; pass --force to replace it")
    tower = read_export(model_dir)
    scenes = None
    if imagery is not None:  # the user's scene draws the map (PNG: no-data pixels stay transparent)
        from bundle.imagery_source import open_bundle_imagery

        scenes, bounds, renderer = open_bundle_imagery(imagery, bands, bounds)
        tile_format = "png"
    size = int(image_size or tower.image_size)
    if size <= 0:
        raise BundleError(f"export {tower.root} does not record the model's image size; pass --image-size")
    ground = tile_ground_m if tile_ground_m is not None else tower.tile_ground_m
    ground = 900.0 if ground is None else float(ground)  # Bing: 1500 px x 0.6 m; the embedded world uses 900 m too
    try:
        with Gallery.open(gallery_dir, verify="full") as g:
            if g.fingerprint != tower.space_fingerprint:
                raise BundleError(
                    f"model/gallery fingerprint mismatch: the gallery {gallery_dir} was embedded by model "
                    f"{g.fingerprint[:12]}, but the model in {tower.root} maps into {tower.space_fingerprint[:12]}'s "
                    "space; build the gallery with this model's checkpoint (or its teacher's), then bundle again")
            if tower.embedding_dim and g.dim != tower.embedding_dim:
                raise BundleError(f"the gallery's vectors are {g.dim}-d, the model's {tower.embedding_dim}-d")
            gallery_facts = {"fingerprint": g.fingerprint, "count": len(g), "dim": g.dim,
                             "schema_version": g.meta.get("schema_version"), "build_id": g.meta.get("build_id"),
                             "renderer": g.meta.get("renderer")}
            tour = _tour(g, bounds)
            gallery_files = [g.root / "gallery.db", g.root / "index.json"] + \
                [g.root / str(f["file"]) for f in g.index_info.get("files", {}).values()]
            dim = g.dim
    except GalleryError as exc:
        raise BundleError(f"gallery: {exc}") from None
    times["check"] = time.perf_counter() - t0
    try:
        plan = map_tiles.plan_map(bounds, map_tiles.ground_for_zooms(ground, {z: tower.crop_fraction[z]
                                                                             for z in tower.zooms}),
                                  size, overview_levels=overview_levels, context_tiles=context_tiles)
    except (ValueError, KeyError) as exc:
        raise BundleError(f"cannot plan the map: {exc}") from None
    if plan.n_tiles > max_tiles:
        raise BundleError(f"the region needs {plan.n_tiles} map tiles (more than {max_tiles}): choose a smaller "
                          f"region (this one is {bounds.width_m() / 1e3:.1f} x {bounds.height_m() / 1e3:.1f} km)")
    logger.info(map_tiles.describe_plan(plan))

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_folder(out)  # a killed build's staging is swept first
    try:
        t1 = time.perf_counter()
        model_files: dict[str, str] = {}
        for kind, src in sorted(tower.files.items()):
            rel = f"{MODEL_DIR}/{src.name}"
            _copy(src, tmp / rel)
            model_files[kind] = rel
        _copy(tower.root / MANIFEST_FILE, tmp / MODEL_DIR / "export_manifest.json")
        for extra in tower.extras:
            _copy(extra, tmp / MODEL_DIR / extra.name)
        for src in gallery_files:
            _copy(src, tmp / GALLERY_DIR / src.name)
        fault_point("bundle.copy")
        times["copy"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        render = renderer or map_tiles.world_renderer(world_seed)
        (tmp / MAP_FILE).parent.mkdir(parents=True, exist_ok=True)
        n_tiles = map_tiles.write_region_mbtiles(
            tmp / MAP_FILE, plan, render, fmt=tile_format, quality=quality, name="Sat2Sound region",
            description=f"imagery of {bounds.as_list()} for the model's views",
            attribution=(f"imagery: {Path(imagery).name}" if scenes is not None else
                         "Sat2Sound embedded world (land cover: NASA MODIS MCD12C1, public domain)"),
            progress=progress)
        times["map"] = time.perf_counter() - t2
        manifest = _manifest(tmp, tower, model_files, gallery_facts, plan, bounds, size, tour, dim, tile_format)
        if scenes is not None:
            from bundle.imagery_source import imagery_manifest

            imagery_manifest(manifest, scenes, n_tiles)
        (tmp / layout.MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        # Check what was written exactly as a device will, before it replaces anything.
        problems = layout.check_files(tmp, manifest) or layout.check_consistency(tmp, manifest)
        if problems:
            raise BundleError("the bundle failed its own check: " + "; ".join(problems))
        fault_point("bundle.publish")
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if scenes is not None:
            scenes.close()
    times["total"] = time.perf_counter() - t0
    total = sum(int(e["bytes"]) for e in manifest["files"].values())
    return BundleReport(out=out, files=len(manifest["files"]), bytes=total, tiles=n_tiles,
                        plan=map_tiles.describe_plan(plan), seconds=times)


def _manifest(tmp: Path, tower: ExportedTower, model_files: dict[str, str], gallery: dict[str, Any],
              plan: map_tiles.MapPlan, bounds: mercator.Bounds, size: int, tour: list[dict[str, Any]], dim: int,
              tile_format: str) -> dict[str, Any]:
    versions = {"sat2sound": __version__, "bundle_schema": layout.SCHEMA_VERSION, "gallery_schema": GALLERY_SCHEMA,
                "export_schema": tower.manifest.get("schema_version"), "mbtiles": "1.3"}
    try:
        import onnxruntime

        versions["onnxruntime_build"] = onnxruntime.__version__
    except ImportError:
        pass
    files = {}
    for path in sorted(p for p in tmp.rglob("*") if p.is_file() and p.name != layout.MANIFEST):
        rel = path.relative_to(tmp).as_posix()
        files[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return {
        "kind": layout.KIND,
        "schema_version": layout.SCHEMA_VERSION,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "versions": versions,
        "region": {"bounds": bounds.as_list(), "center": list(bounds.center)},
        "model": {
            "fingerprint": tower.fingerprint, "space_fingerprint": tower.space_fingerprint, "kind": tower.kind,
            "variant": tower.variant, "files": model_files, "inputs": list(tower.inputs), "output": tower.output,
            "image_size": size, "mean": list(tower.mean), "std": list(tower.std), "gsd_m": tower.gsd_m,
            "zooms": list(tower.zooms), "embedding_dim": int(tower.embedding_dim or dim),
            "export_manifest": f"{MODEL_DIR}/export_manifest.json",
        },
        "gallery": {"dir": GALLERY_DIR, **gallery},
        "map": {"file": MAP_FILE, "format": tile_format, "minzoom": plan.minzoom, "maxzoom": plan.maxzoom,
                "center_level": plan.center_level, "tiles": plan.n_tiles},
        "views": {str(z): {"ground_m": v["ground_m"], "level": int(v["level"]), "model_m_per_px": v["m_per_px"],
                           "map_m_per_px": v["map_m_per_px"]} for z, v in sorted(plan.views.items())},
        "tour": tour,
        "files": files,
    }


def _replace(tmp: Path, out: Path) -> None:
    """Move the finished bundle into place; an existing one is swapped out first and removed only afterwards."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}-{int(time.time())}"
        out.rename(old)
    try:
        tmp.rename(out)
    except BaseException:
        if old is not None:
            old.rename(out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
