"""End to end on a bundle, the app's own code path (mobile_app.engine.Soundscape): location -> MBTiles view read ->
preprocessing -> int8 image tower -> gallery search -> clip bytes, per runtime the bundle ships and thread count."""

from __future__ import annotations

import contextlib
import json
import random
import time
from pathlib import Path
from typing import Any

from benchmarks.latency.models import read_manifest
from benchmarks.latency.plan import ROLES
from compress.latency import Budget, measure, stats
from contracts.artifacts import MANIFEST_FILE
from core.config import student_preset_for


def bundle_trained(bundle: Path, run: Path | None) -> bool | None:
    """True when the bundle's model is one of the run's trained checkpoints (or maps into their space); None when
    that cannot be told."""
    model = (read_manifest(bundle) or {}).get("model") or {}
    mine = {model.get("fingerprint"), model.get("space_fingerprint")} - {None}
    known = {(read_manifest(run / role) or {}).get("fingerprint") for role in ROLES} - {None} if run is not None \
        else set()
    return True if mine & known else None


def resolve_bundle(bundle: Path | None, run: Path | None, preset: str, work: Path, quick: bool,
                   progress: bool = True) -> tuple[Path, bool | None, str]:
    """(bundle folder, trained? (None: unknown), where from): ``--bundle``, the run's bundle, or a demo bundle of an
    untrained student (bundle.demo: the real export, gallery and map code) built once under ``work``."""
    if bundle is not None:
        return bundle, bundle_trained(bundle, run), str(bundle)
    if run is not None and read_manifest(run / "bundle") is not None:
        return run / "bundle", bundle_trained(run / "bundle", run), str(run / "bundle")
    from bundle.demo import DEMO_REGION, TEST_BUNDLE_OPTIONS, TEST_REGION, build_demo

    model_preset = student_preset_for(preset) or preset
    region, options = (TEST_REGION, TEST_BUNDLE_OPTIONS) if quick else (DEMO_REGION, {})
    folder = work / f"bundle-{model_preset}{'-quick' if quick else ''}"
    # the full pass exports through `sat2sound export` (ORT format + LiteRT, parity-gated), so the bundle ships both
    # runtimes' files as the pipeline's does; the quick pass exports ONNX/ORT directly (seconds)
    paths = build_demo(folder, preset=model_preset, region=region, force=False, export_via_cli=not quick,
                       progress=progress, **options)
    return paths["bundle"], False, f"demo bundle of an untrained {model_preset} ({paths['bundle']})"


def bundle_model_files(bundle: Path) -> dict[str, Any]:
    """The model files a bundle ships (bytes each), and the file each runtime loads."""
    from mobile_app.bundle import load_bundle

    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    files = {rel: e["bytes"] for rel, e in manifest["files"].items()
             if rel.startswith("model/") and rel.endswith((".onnx", ".ort", ".tflite"))}
    b = load_bundle(bundle, verify=False)
    loads = {}
    for runtime in ("onnx", "tflite"):
        with contextlib.suppress(Exception):
            path = b.model_file(runtime)
            loads[runtime] = {"file": path.relative_to(bundle).as_posix(), "bytes": path.stat().st_size}
    return {"files": files, "total_bytes": sum(files.values()), "runtime_loads": loads,
            "model_kind": manifest["model"].get("kind"), "variant": manifest["model"].get("variant"),
            "gallery_items": manifest["gallery"].get("count"), "image_size": manifest["model"].get("image_size")}


def bench_end_to_end(bundle: Path, threads: tuple[int, ...], budget: Budget, *, seed: int = 0) -> dict[str, Any]:
    """Taps at random places / zooms / recording styles of the bundle's region: Soundscape.listen + clip bytes."""
    from mobile_app.engine import Soundscape
    from mobile_app.place import When

    info = bundle_model_files(bundle)
    runs = []
    for runtime in [r for r in ("onnx", "tflite") if r in info["runtime_loads"]]:
        for t in threads:
            rng = random.Random(seed)
            parts: dict[str, list[float]] = {"view": [], "model": [], "search": [], "clip": []}
            with Soundscape.open(bundle, runtime=runtime, threads=t) as s:
                r = s.bundle.region

                def tap(s=s, r=r, rng=rng, parts=parts) -> None:
                    lon, lat = rng.uniform(r.west, r.east), rng.uniform(r.south, r.north)
                    a = s.listen(lon, lat, rng.choice(s.zooms), audio_source=rng.choice(["aporee", "yfcc", None]),
                                 when=When(6, 8))
                    t0 = time.perf_counter()
                    data, _fmt = s.clip(a.top.id)
                    parts["clip"].append((time.perf_counter() - t0) * 1e3)
                    if not data:
                        raise RuntimeError(f"clip {a.top.id} has no bytes")
                    for k in ("view", "model", "search"):
                        parts[k].append(a.ms[k])

                total = measure(tap, budget)
                n = total["n"]
                runs.append({"runtime": runtime, "threads": t, "file": info["runtime_loads"][runtime]["file"],
                             "total": total, **{k: stats(v[-n:]) for k, v in parts.items()}})
    return {**info, "runs": runs}
