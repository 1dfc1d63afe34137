"""The pictures of AR field audio (docs/ar_audio.md): a walk rendered by ``sat2sound walk`` drawn as its route on
the map, the places that sound at three moments and the stereo waveform; and the field app itself, headless.

    python -m benchmarks.ar_pictures --bundle DIR [--walk docs/ar_walk.png] [--app docs/ar_field_app.png]

Build side (matplotlib); called by benchmarks.ar_audio too.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mobile_app.engine import Soundscape
from mobile_app.surround import offset_m

REPO = Path(__file__).resolve().parents[1]


def walk_route(bundle: Path, gpx: Path, *, length_m: float = 1600.0,
               at: tuple[float, float] | None = None) -> list[tuple[float, float]]:
    """A GPX track of about ``length_m`` with two bends, centred on ``at`` (lat, lon; default the region's centre)
    and kept inside the region, written to ``gpx``."""
    import gpxpy.gpx

    with Soundscape.open(bundle, threads=1) as s:
        r = s.bundle.region
    lat_c, lon_c = at or (r.center[1], r.center[0])
    side = min(length_m / 3.0, 0.3 * r.width_m(), 0.3 * r.height_m())
    dlat = side / (mercator_m_per_deg())
    dlon = dlat / math.cos(math.radians(lat_c))
    shape = [(-0.5, -1.0), (-0.5, 0.0), (0.5, 0.2), (0.6, 1.0)]  # (north, east) in units of side
    pts = [(lat_c + n * dlat, lon_c + e * dlon) for n, e in shape]
    g = gpxpy.gpx.GPX()
    track = gpxpy.gpx.GPXTrack()
    seg = gpxpy.gpx.GPXTrackSegment()
    seg.points.extend(gpxpy.gpx.GPXTrackPoint(lat, lon) for lat, lon in pts)
    track.segments.append(seg)
    g.tracks.append(track)
    gpx.write_text(g.to_xml())
    return pts


def mercator_m_per_deg() -> float:
    from mobile_app import mercator

    return mercator.EQUATOR_M / 360.0


def walk_picture(bundle: Path, work: Path, png: Path, *, speed: float = 4.0,
                 at: tuple[float, float] | None = None) -> dict[str, Any]:
    """Render a walk with ``sat2sound walk`` and draw the route, the sounding places and the stereo waveform."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import soundfile as sf

    from mobile_app import mercator
    from mobile_app.walk import main as walk_main

    work.mkdir(parents=True, exist_ok=True)
    walk_route(bundle, work / "walk.gpx", at=at)
    audio_path, summary_path = work / "walk.ogg", work / "walk.json"
    rc = walk_main(["--bundle", str(bundle), "--route", str(work / "walk.gpx"), "--out", str(audio_path),
                    "--summary", str(summary_path), "--speed", str(speed), "--clock", "2026-06-21T07:30"])
    if rc != 0:
        raise RuntimeError(f"sat2sound walk failed ({rc})")
    summary = json.loads(summary_path.read_text())
    audio, sr = sf.read(audio_path, dtype="float32", always_2d=True)
    lats, lons = [p[0] for p in summary["route"]], [p[1] for p in summary["route"]]
    lat_c, lon_c = (min(lats) + max(lats)) / 2, (min(lons) + max(lons)) / 2
    ex, ny = offset_m((min(lats), min(lons)), (max(lats), max(lons)))
    ground = max(ex, ny) + 5 * summary["spacing_m"]
    with Soundscape.open(bundle, threads=1) as s:
        level = min(s.map.info.maxzoom, max(s.map.info.minzoom, mercator.level_for_resolution(ground / 1400,
                                                                                              lat_c)))
        image = s.map.read_view(lon_c, lat_c, ground, level)
    fig = plt.figure(figsize=(12, 9.2), dpi=100)
    ax = fig.add_axes((0.06, 0.36, 0.58, 0.6))
    half = ground / 2
    ax.imshow(image, extent=(-half, half, -half, half))
    route = np.array([offset_m((lat_c, lon_c), tuple(p)) for p in summary["route"]])
    ax.plot(route[:, 0], route[:, 1], color="white", lw=2.2, alpha=0.9)
    trace = summary["trace"]
    moments = [trace[int(f * (len(trace) - 1))] for f in (0.2, 0.5, 0.8)]
    for label, m in zip("ABC", moments, strict=True):
        x, y = offset_m((lat_c, lon_c), (m["lat"], m["lon"]))
        for src in m["sounding"]:
            if src["key"] == "centre":
                continue
            sx, sy = offset_m((lat_c, lon_c), (src["lat"], src["lon"]))
            share = src["right"] / max(1e-9, src["left"] + src["right"])
            colour = (0.2 + 0.75 * share, 0.45, 0.95 - 0.75 * share)
            ax.add_patch(plt.Circle((sx, sy), 0.45 * summary["spacing_m"] * math.sqrt(src["gain"] / 0.5),
                                    facecolor=(*colour, 0.45), edgecolor=colour, lw=1.2))
            ax.plot([x, sx], [y, sy], color=colour, lw=0.8, alpha=0.7)
        h = math.radians(m["heading"])
        reach = 0.7 * summary["spacing_m"]
        ax.annotate("", xy=(x + reach * math.sin(h), y + reach * math.cos(h)), xytext=(x, y),
                    arrowprops={"arrowstyle": "-|>", "color": "yellow", "lw": 2})
        ax.plot([x], [y], "o", color="yellow", ms=8, mec="black")
        ax.text(x + 0.15 * summary["spacing_m"], y - 0.35 * summary["spacing_m"], f"{label}  t={m['t']:.0f} s",
                color="yellow", fontsize=11, weight="bold")
    ax.set_xlim(-half, half)
    ax.set_ylim(-half, half)
    ax.set_xlabel("metres east")
    ax.set_ylabel("metres north")
    ax.set_title("The walk: heading (arrow) and the places that sound (disc: loudness; blue left ear, orange right)",
                 fontsize=10)
    side = fig.add_axes((0.68, 0.33, 0.3, 0.64))
    side.axis("off")
    lines = [f"sat2sound walk: {summary['metres']:.0f} m, {summary['seconds']:.0f} s at {speed:g} m/s",
             f"{summary['places_asked']} places asked, {summary['clips_decoded']} clips decoded",
             f"grid cell = model view: {summary['spacing_m']:.0f} m", ""]
    for label, m in zip("ABC", moments, strict=True):
        lines.append(f"{label}: facing {m['heading']:.0f} deg")
        for src in [x for x in m["sounding"] if x["key"] != "centre"][:4]:
            lines.append(f"   {src['azimuth_deg']:+5.0f} deg  {src['distance_m']:4.0f} m  {src['sounds'][:34]}")
        centre = next((x for x in m["sounding"] if x["key"] == "centre"), None)
        if centre:
            lines.append(f"   here: {centre['sounds'][:40]}")
    side.text(0, 1, "\n".join(lines), va="top", family="monospace", fontsize=8.5)
    wav = fig.add_axes((0.06, 0.06, 0.9, 0.2))
    t = np.arange(len(audio)) / sr
    step = max(1, len(audio) // 3000)
    for ch, colour, sign, name in ((0, "tab:blue", 1, "left"), (1, "tab:orange", -1, "right")):
        env = np.abs(audio[: len(audio) // step * step, ch]).reshape(-1, step).max(axis=1)
        wav.fill_between(t[::step][: len(env)], 0, sign * env, color=colour, alpha=0.8, label=name)
    for label, m in zip("ABC", moments, strict=True):
        wav.axvline(m["t"], color="black", lw=0.8, ls="--")
        wav.text(m["t"], wav.get_ylim()[1] * 0.85, f" {label}", fontsize=10)
    wav.set_xlim(0, t[-1] if len(t) else 1)
    wav.set_xlabel("seconds")
    wav.set_ylabel("left up / right down")
    wav.legend(loc="upper right", fontsize=8)
    wav.set_title(f"Stereo waveform of {audio_path.name} (peak |x| per bin)", fontsize=10)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)
    from PIL import Image

    Image.open(png).convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE).save(png, optimize=True)
    return {k: v for k, v in summary.items() if k not in ("route", "trace")} | {"picture": str(png)}


def app_screenshot(bundle: Path, png: Path, work: Path, *, at: tuple[float, float] | None = None,
                   heading: float = 60.0, level: int | None = None) -> dict[str, Any]:
    """The field app (headless, AR audio on) standing at ``at`` facing ``heading``: what a person sees."""
    with Soundscape.open(bundle, threads=1) as s:
        r = s.bundle.region
        lat, lon = at or (r.center[1], r.center[0])
        level = level or s.bundle.views[1].level
    steps = [{"do": "wait_tiles", "timeout": 20}, {"do": "position", "lat": lat, "lon": lon},
             {"do": "heading", "deg": heading}, {"do": "center", "lat": lat, "lon": lon, "level": level},
             {"do": "wait", "s": 1.0}, {"do": "wait_tiles", "timeout": 20}, {"do": "snapshot", "name": "shot"},
             {"do": "screenshot", "path": str(png)}]
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "KIVY_HOME": str(work / "kivy"), "SDL_VIDEODRIVER": "offscreen", "SDL_AUDIODRIVER": "dummy",
           "PYTHONPATH": str(REPO)}
    out = work / "app.json"
    subprocess.run([sys.executable, "-m", "mobile_app.autopilot", "--bundle", str(bundle), "--script",
                    json.dumps(steps), "--out", str(out), "--data-dir", str(work / "data"), "--headless", "--field",
                    "--clock", "2026-06-21T07:30", "--size", "1280x800"], env=env, cwd=REPO, check=True,
                   capture_output=True)
    result = json.loads(out.read_text())
    from PIL import Image

    Image.open(png).convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE).save(png, optimize=True)
    return {"errors": result["errors"], "field_mode": result["snapshots"]["shot"]["field_mode"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ar_pictures", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--work", default="runs/bench/ar_audio")
    parser.add_argument("--walk", default=None, help="walk picture (PNG)")
    parser.add_argument("--app", default=None, help="field app screenshot (PNG)")
    parser.add_argument("--at", default=None, help="LAT,LON to walk around / stand at (default: region centre)")
    parser.add_argument("--heading", type=float, default=60.0)
    args = parser.parse_args(argv)
    at = tuple(float(v) for v in args.at.split(",")) if args.at else None
    if args.walk:
        summary = walk_picture(Path(args.bundle), Path(args.work) / "walk", Path(args.walk), at=at)
        print(json.dumps({k: v for k, v in summary.items() if k != "skipped"}, indent=1, default=str))
    if args.app:
        shot = app_screenshot(Path(args.bundle), Path(args.app), Path(args.work) / "app", at=at, heading=args.heading)
        print(json.dumps(shot["errors"]), [(s["key"], round(s["azimuth_deg"]), round(s["gain"], 2), s["caption"])
                                           for s in shot["field_mode"]["scene"]["sounding"]][:6])
    return 0


if __name__ == "__main__":
    sys.exit(main())
