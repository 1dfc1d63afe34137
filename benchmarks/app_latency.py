"""Device-app latency: cold start (bundle open -> ready) and tap-to-sound, p50 over many taps.

    python -m benchmarks.app_latency [--bundle DIR] [--taps 100] [--runtime onnx] [--out runs/app_latency.json]

Without ``--bundle`` it builds (once, reused afterwards) a demo bundle from an untrained ``--preset`` model
(bundle.demo: real export, gallery and map code) under ``runs/app-latency-<preset>/``; latency does not
depend on the weights' values. Measured, each in fresh processes where it matters:

- ``cold_open``: a new process imports the device code and opens the bundle (full SHA-256 check, map, gallery,
  model session) and answers one place; p50 over ``--cold`` runs, with the hash check from scratch and from the
  hash cache (what a second start on a phone costs);
- ``engine_tap``: in one process, a tap's work without the screen: cut the view from the map, run the tower,
  search the gallery, fetch and check the clip; p50/p90 over ``--taps`` random places and zooms;
- ``app``: the real Kivy app (headless, dummy audio), driven by the autopilot: time from app start to the first
  frame, its own bundle-open time, and tap-to-sound = touch released -> ``play()`` returned, p50/p90 over taps,
  with where it goes (``parts_ms``: the engine's view / model / search, the clip's decode check, temp file, audio
  load and start, Kivy's touch dispatch around them, and the screen update the app does after the sound started).
Writes JSON (and prints a summary). Timings are wall-clock on this machine; nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from contracts.artifacts import MANIFEST_FILE

REPO = Path(__file__).resolve().parents[1]

_COLD = r"""
import json, sys, time
t0 = time.perf_counter()
from mobile_app.engine import Soundscape
from mobile_app.place import When
t1 = time.perf_counter()
s = Soundscape.open(sys.argv[1], runtime=sys.argv[2], hash_cache=sys.argv[3] or None, threads=int(sys.argv[4]))
t2 = time.perf_counter()
lon, lat = s.bundle.region.center
a = s.listen(lon, lat, 1, audio_source="aporee", when=When(6, 8))
s.clip(a.top.id)
t3 = time.perf_counter()
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "open_ms": (t2 - t1) * 1e3, "first_tap_ms": (t3 - t2) * 1e3,
                  "ready_ms": (t2 - t0) * 1e3, "parts": s.open_ms, "torch_loaded": "torch" in sys.modules}))
"""


def _stats(values: list[float]) -> dict[str, float]:
    v = sorted(values)
    if not v:
        return {}
    q = lambda p: v[min(len(v) - 1, int(round(p * (len(v) - 1))))]  # noqa: E731
    return {"n": len(v), "p50": statistics.median(v), "p90": q(0.9), "min": v[0], "max": v[-1],
            "mean": statistics.fmean(v)}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "SDL_VIDEODRIVER": os.environ.get("SDL_VIDEODRIVER", "offscreen"),
            "SDL_AUDIODRIVER": os.environ.get("SDL_AUDIODRIVER", "dummy")}


def cold_open(bundle: Path, runtime: str, runs: int, threads: int) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = str(Path(tmp) / "hashes.json")
        for label, cache_arg in (("fresh_hash_check", ""), ("hash_cache", cache)):
            rows = []
            if cache_arg:  # fill the cache once
                subprocess.run([sys.executable, "-c", _COLD, str(bundle), runtime, cache_arg, str(threads)],
                               env=_env(), cwd=REPO, check=True, capture_output=True)
            for _ in range(runs):
                p = subprocess.run([sys.executable, "-c", _COLD, str(bundle), runtime, cache_arg, str(threads)],
                                   env=_env(), cwd=REPO, check=True, capture_output=True, text=True)
                rows.append(json.loads(p.stdout.strip().splitlines()[-1]))
            out[label] = {k: _stats([r[k] for r in rows]) for k in ("import_ms", "open_ms", "ready_ms",
                                                                   "first_tap_ms")}
            out[label]["verify_ms"] = _stats([r["parts"]["verify"] for r in rows])
            out[label]["load_model_ms"] = _stats([r["parts"]["load_model"] for r in rows])
            out[label]["torch_loaded"] = any(r["torch_loaded"] for r in rows)
    return out


def engine_taps(bundle: Path, runtime: str, taps: int, threads: int, seed: int = 0) -> dict:
    from mobile_app.engine import Soundscape
    from mobile_app.place import When
    from mobile_app.player import check_decodable

    rng = random.Random(seed)
    rows: dict[str, list[float]] = {"view": [], "model": [], "search": [], "clip": [], "total": []}
    with Soundscape.open(bundle, runtime=runtime, threads=threads) as s:
        r = s.bundle.region
        s.listen(*r.center, 1)  # warm-up: first-call allocations are part of cold start, not of a tap
        for _ in range(taps):
            lon = rng.uniform(r.west, r.east)
            lat = rng.uniform(r.south, r.north)
            zoom = rng.choice(s.zooms)
            t0 = time.perf_counter()
            a = s.listen(lon, lat, zoom, audio_source=rng.choice(["aporee", "yfcc", None]), when=When(6, 8))
            t1 = time.perf_counter()
            data, fmt = s.clip(a.top.id)
            check_decodable(data, fmt)
            t2 = time.perf_counter()
            for k in ("view", "model", "search"):
                rows[k].append(a.ms[k])
            rows["clip"].append((t2 - t1) * 1e3)
            rows["total"].append((t2 - t0) * 1e3)
    return {k: _stats(v) for k, v in rows.items()}


def app_taps(bundle: Path, runtime: str, taps: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        steps = [{"do": "wait_tiles", "timeout": 20}, {"do": "bench_taps", "n": taps, "seed": 1}]
        t0 = time.perf_counter()
        env = {**_env(), "KIVY_HOME": str(Path(tmp) / "kivy"), "SAT2SOUND_LAUNCH_TIME": repr(time.time())}
        subprocess.run([sys.executable, "-m", "mobile_app.autopilot", "--bundle", str(bundle), "--script",
                        json.dumps(steps), "--out", str(out), "--data-dir", str(Path(tmp) / "data"), "--headless",
                        "--runtime", runtime, "--threads", str(threads), "--timeout", str(60 + 2 * taps)],
                       env=env, cwd=REPO, check=True,
                       capture_output=True)
        wall = time.perf_counter() - t0
        r = json.loads(out.read_text())
    rows = r.get("bench_taps", [])
    start = r["snapshots"]["start"]
    parts = {k: _stats([t["timings_ms"][k] for t in rows if k in t["timings_ms"]])
             for k in ("view", "model", "search", "play", "play_check", "play_file", "play_load", "play_start",
                       "total")}
    parts["kivy_dispatch"] = _stats([t["handle_ms"] - t["timings_ms"].get("total", 0.0) for t in rows])
    parts["ui_after_sound"] = _stats([t["ui_after_sound_ms"] for t in rows if t.get("ui_after_sound_ms") is not None])
    return {
        "tap_to_sound_ms": _stats([t["handle_ms"] for t in rows]),
        "parts_ms": {k: v for k, v in parts.items() if v},
        "in_app_total_ms": _stats([t["timings_ms"].get("total", 0.0) for t in rows]),
        "taps_that_played": sum(t["ok"] for t in rows),
        "taps": len(rows),
        "first_frame_ms": r.get("first_frame_ms"),
        "launch_to_first_frame_ms": r.get("launch_to_first_frame_ms"),
        "app_build_ms": start.get("cold_start_ms"),
        "app_open_parts_ms": start.get("open_ms"),
        "process_wall_s": wall,
        "errors": r.get("errors", []),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.app_latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default=None, help="bundle to measure (default: build/reuse a demo bundle)")
    parser.add_argument("--preset", default="default", help="model preset of the demo bundle")
    parser.add_argument("--runtime", choices=("onnx", "tflite"), default="onnx")
    parser.add_argument("--taps", type=int, default=100)
    parser.add_argument("--cold", type=int, default=5, help="fresh-process cold starts per variant")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-app", action="store_true", help="skip the Kivy app run")
    parser.add_argument("--out", default="runs/app_latency.json")
    args = parser.parse_args(argv)

    if args.bundle:
        bundle = Path(args.bundle)
    else:
        from bundle.demo import DEMO_REGION, build_demo

        work = REPO / "runs" / f"app-latency-{args.preset}"
        bundle = build_demo(work, preset=args.preset, region=DEMO_REGION, force=False, export_via_cli=False,
                            progress=True)["bundle"]
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    result = {
        "bundle": str(bundle),
        "bundle_mb": sum(e["bytes"] for e in manifest["files"].values()) / 1e6,
        "model": {k: manifest["model"][k] for k in ("kind", "variant", "image_size", "files")},
        "gallery_items": manifest["gallery"]["count"],
        "map_tiles": manifest["map"].get("tiles"),
        "runtime": args.runtime,
        "threads": args.threads,
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "load_avg_at_start": os.getloadavg()},
    }
    print(f"bundle {bundle} ({result['bundle_mb']:.1f} MB, {result['gallery_items']} clips)")
    result["cold_open"] = cold_open(bundle, args.runtime, args.cold, args.threads)
    c = result["cold_open"]
    print("cold open p50: fresh hashes {:.0f} ms, cached hashes {:.0f} ms (ready; +first tap {:.0f} ms)".format(
        c["fresh_hash_check"]["ready_ms"]["p50"], c["hash_cache"]["ready_ms"]["p50"],
        c["hash_cache"]["first_tap_ms"]["p50"]))
    result["engine_tap"] = engine_taps(bundle, args.runtime, args.taps, args.threads)
    e = result["engine_tap"]
    print("engine tap p50 {:.1f} ms (view {:.1f}, model {:.1f}, search {:.2f}, clip {:.1f}); p90 {:.1f} ms".format(
        e["total"]["p50"], e["view"]["p50"], e["model"]["p50"], e["search"]["p50"], e["clip"]["p50"],
        e["total"]["p90"]))
    if not args.skip_app:
        result["app"] = app_taps(bundle, args.runtime, args.taps, args.threads)
        a = result["app"]
        t = a["tap_to_sound_ms"]
        print("app: launch to first frame {:.0f} ms, tap-to-sound p50 {:.1f} ms p90 {:.1f} ms ({}/{} played)".format(
            a["launch_to_first_frame_ms"] or 0, t.get("p50", 0), t.get("p90", 0), a["taps_that_played"], a["taps"]))
        print("  where (p50 ms): " + ", ".join(f"{k} {v['p50']:.2f}" for k, v in a["parts_ms"].items()))
    result["machine"]["load_avg_at_end"] = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
