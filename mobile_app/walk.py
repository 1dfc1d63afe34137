"""``sat2sound walk --bundle B --route track.gpx --out walk.ogg``: the AR soundscape of a walk, rendered to a file.

A listener walks the GPX track (at the track's own timestamps when it has them, else at ``--speed``), facing the
direction of travel (the bearing to the point ``--look-ahead`` metres further along, so a zig-zag of GPS jitter
does not swing the head); every ``--step`` seconds the spatial scene (mobile_app.surround) is moved and turned and
that much stereo is mixed. What the field app would play, offline and repeatable: for exhibits, previews and tests.

Bad input is one clear line: a route file that is not XML or not GPX, is empty, has no track points, or leaves the
bundle's region; a walk longer than ``--max-minutes``. A clip that fails to decode on the way is skipped (the next
hit of that place sounds instead) and listed in the summary; the walk goes on.

The month and hour the model hears: ``--clock``, else the track's first timestamp, else now. Output format by
extension: .ogg (Vorbis), .flac or .wav (soundfile; without it, .wav only). ``--summary`` writes JSON: the route,
the heading and the sounding places over time, skipped clips and timings (what docs/ar_audio.md plots).

Desktop tooling on the device code (gpxpy, numpy, soundfile); not staged for the phone. Never torch.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import time
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from contracts.errors import ConfigError, DataError, run_guarded
from mobile_app.engine import Soundscape
from mobile_app.place import When
from mobile_app.surround import SpatialScene, bearing_deg, offset_m

FORMATS = {".ogg": ("OGG", "VORBIS"), ".flac": ("FLAC", "PCM_16"), ".wav": ("WAV", "PCM_16")}


def read_route(path: str | Path) -> tuple[np.ndarray, list[dt.datetime | None]]:
    """(points (n, 2) lat/lon, times) of every track point of a GPX file, in order; DataError when unusable."""
    import gpxpy
    import gpxpy.gpx

    path = Path(path)
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise DataError("the route file is empty", path=path)
    try:
        gpx = gpxpy.parse(text)
    except gpxpy.gpx.GPXXMLSyntaxException:
        raise DataError("the route is not XML (expected a GPX file)", path=path) from None
    except gpxpy.gpx.GPXException as exc:
        raise DataError(f"the route is not a usable GPX file: {str(exc).splitlines()[0]}", path=path) from None
    pts = [p for t in gpx.tracks for seg in t.segments for p in seg.points]
    if not pts:
        raise DataError("the route has no track (no <trk> with points); record or export it as a GPX track",
                        path=path)
    latlon = np.array([[p.latitude, p.longitude] for p in pts], dtype=np.float64)
    if not np.all(np.isfinite(latlon)):
        raise DataError("the route has points without a finite latitude/longitude", path=path)
    return latlon, [p.time for p in pts]


def timeline(latlon: np.ndarray, times: list[dt.datetime | None], speed: float) -> tuple[np.ndarray, np.ndarray]:
    """(seconds from the start, metres along the route) of each point: the track's times when every point has
    one and they never go back, else a walk at ``speed`` m/s."""
    steps = [math.hypot(*offset_m(tuple(a), tuple(b))) for a, b in zip(latlon[:-1], latlon[1:], strict=True)]
    along = np.concatenate([[0.0], np.cumsum(steps)])
    if all(t is not None for t in times):
        secs = np.array([(t - times[0]).total_seconds() for t in times])
        if np.all(np.diff(secs) >= 0) and secs[-1] > 0:
            return secs, along
    return along / speed, along


def point_at(latlon: np.ndarray, along: np.ndarray, metres: float) -> tuple[float, float]:
    """(lat, lon) ``metres`` along the route (clamped to its ends)."""
    m = min(max(metres, 0.0), float(along[-1]))
    return float(np.interp(m, along, latlon[:, 0])), float(np.interp(m, along, latlon[:, 1]))


def when_of(clock: dt.datetime | None, first: dt.datetime | None, lon: float) -> When:
    """The month and hour the model hears: ``clock`` as given, else the track's first time (a GPX time is UTC:
    shifted by the longitude's time zone, lon / 15 hours, near enough for the hour of day), else now."""
    if clock is None and first is not None:
        clock = first
        if first.tzinfo is not None:
            clock = first.astimezone(dt.UTC).replace(tzinfo=None) + dt.timedelta(hours=round(lon / 15.0))
    clock = clock or dt.datetime.now()
    return When(clock.month, clock.hour)


def check_inside(latlon: np.ndarray, engine: Soundscape, route: Path) -> None:
    r = engine.bundle.region
    for k, (lat, lon) in enumerate(latlon):
        if not r.contains(lon, lat):
            raise DataError(f"track point {k} ({lat:.5f}, {lon:.5f}) lies outside the bundle's region (lat "
                            f"{r.south:.4f} to {r.north:.4f}, lon {r.west:.4f} to {r.east:.4f}); the whole walk must "
                            "lie inside it", path=route)


def render_walk(engine: Soundscape, latlon: np.ndarray, secs: np.ndarray, along: np.ndarray,
                write: Callable[[np.ndarray], None], *, zoom: int = 1, style: str | None = "aporee",
                when: When | None = None, step_s: float = 0.1, look_ahead_m: float = 15.0,
                trace_every_s: float = 2.0) -> dict[str, Any]:
    """Mix the walk block by block into ``write`` (stereo float32 (n, 2) blocks); returns the summary. The heading
    is the bearing to the point ``look_ahead_m`` further along; standing still keeps the last one."""
    scene = SpatialScene(engine, zoom=zoom, audio_source=style, when=when)
    sr = scene.sample_rate
    n_steps = max(1, int(math.ceil(secs[-1] / step_s)))
    block = int(round(step_s * sr))
    heading, move_ms, turn_ms, mix_s, trace, peak = 0.0, [], [], 0.0, [], 0.0
    next_trace = 0.0
    for k in range(n_steps):
        t = k * step_s
        metres = float(np.interp(t, secs, along))
        lat, lon = point_at(latlon, along, metres)
        e, n = offset_m((lat, lon), point_at(latlon, along, metres + look_ahead_m))
        if math.hypot(e, n) > 0.5:
            heading = bearing_deg(e, n)
        move_ms.append(scene.move(lat, lon)["total"])
        turn_ms.append(scene.turn(heading))
        t0 = time.perf_counter()
        mixed = scene.render(block)
        mix_s += time.perf_counter() - t0
        peak = max(peak, float(np.abs(mixed).max()))
        write(mixed)
        if t >= next_trace:
            trace.append({"t": round(t, 2), "lat": lat, "lon": lon, "heading": round(heading, 1),
                          "sounding": [s.as_dict() for s in scene.sounding()]})
            next_trace += trace_every_s
    snap = scene.snapshot()
    seconds = n_steps * block / sr
    return {
        "seconds": seconds, "sample_rate": sr, "metres": float(along[-1]), "points": len(latlon),
        "zoom": zoom, "spacing_m": scene.spacing_m, "style": style, "step_s": step_s,
        "places_asked": snap["places_cached"], "clips_decoded": snap["clips_decoded"], "skipped": snap["skipped"],
        "clipped_samples": snap["clipped"], "peak": peak,
        "ms": {"move_p50": _pct(move_ms, 50), "move_p90": _pct(move_ms, 90), "move_max": max(move_ms),
               "turn_p50": _pct(turn_ms, 50), "turn_p90": _pct(turn_ms, 90),
               "mix_per_audio_s": mix_s * 1e3 / seconds},
        "route": latlon.tolist(), "trace": trace,
    }


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


@contextmanager
def audio_writer(path: Path, sample_rate: int) -> Iterator[Callable[[np.ndarray], None]]:
    """A block writer for stereo float audio in the format of ``path``'s extension. Written to a temp file that
    is renamed at the end, so a failed walk leaves no half file."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"--out must end in {', '.join(FORMATS)}; got {path.name}")
    try:
        import soundfile as sf
    except (ImportError, OSError):
        sf = None
    if sf is None and suffix != ".wav":
        raise ConfigError(f"writing {suffix} needs soundfile (libsndfile); install it or write a .wav")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    try:
        if sf is not None:
            container, subtype = FORMATS[suffix]
            with sf.SoundFile(tmp, "w", sample_rate, 2, subtype=subtype, format=container) as f:
                yield lambda block: f.write(np.clip(block, -1.0, 1.0))
        else:
            with wave.open(str(tmp), "wb") as w:
                w.setnchannels(2)
                w.setsampwidth(2)
                w.setframerate(sample_rate)
                yield lambda block: w.writeframes((np.clip(block, -1.0, 1.0) * 32767).astype("<i2").tobytes())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, help="bundle folder written by `sat2sound bundle`")
    parser.add_argument("--route", required=True, help="GPX file with a track inside the bundle's region")
    parser.add_argument("--out", required=True, help="stereo audio file: .ogg, .flac or .wav")
    parser.add_argument("--zoom", type=int, default=1, help="model zoom: sets what each place is (its view)")
    parser.add_argument("--style", default="aporee", help="recording style (audio source), e.g. aporee, yfcc")
    parser.add_argument("--speed", type=float, default=1.4, help="walking speed (m/s) when the track has no times")
    parser.add_argument("--step", type=float, default=0.1, help="seconds between position/heading updates")
    parser.add_argument("--look-ahead", type=float, default=15.0, help="metres ahead that set the heading")
    parser.add_argument("--max-minutes", type=float, default=30.0, help="refuse longer walks")
    parser.add_argument("--clock", default=None, metavar="YYYY-MM-DDTHH:MM",
                        help="month and hour the model hears (default: the track's first time, else now)")
    parser.add_argument("--runtime", choices=("onnx", "tflite"), default="onnx")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--summary", default=None, help="write a JSON summary (route, trace, timings) here")


def run(args: argparse.Namespace) -> int:
    for name, value, low in (("--speed", args.speed, 0.0), ("--step", args.step, 0.0),
                             ("--max-minutes", args.max_minutes, 0.0), ("--look-ahead", args.look_ahead, -1e-9)):
        if not math.isfinite(value) or value <= low:
            raise ConfigError(f"{name} must be a positive number, got {value}")
    out = Path(args.out)
    if out.suffix.lower() not in FORMATS:
        raise ConfigError(f"--out must end in {', '.join(FORMATS)}; got {out.name}")
    route = Path(args.route)
    latlon, times = read_route(route)
    if len(latlon) < 2:
        raise DataError("the route has a single point; a walk needs at least two", path=route)
    clock = None
    if args.clock:
        try:
            clock = dt.datetime.fromisoformat(args.clock)
        except ValueError:
            raise ConfigError(f"--clock must look like 2026-06-21T05:30, got {args.clock!r}") from None
    when = when_of(clock, times[0], float(latlon[0, 1]))
    with Soundscape.open(args.bundle, runtime=args.runtime, threads=args.threads) as engine:
        check_inside(latlon, engine, route)
        secs, along = timeline(latlon, times, args.speed)
        if secs[-1] <= 0:
            raise DataError("the route does not move (every point is the same place)", path=route)
        if secs[-1] > args.max_minutes * 60:
            raise DataError(f"the walk takes {secs[-1] / 60:.1f} min, more than --max-minutes "
                            f"{args.max_minutes:g}", path=route)
        if args.zoom not in engine.bundle.views:
            raise ConfigError(f"--zoom {args.zoom} is not one of this model's zooms {engine.zooms}")
        t0 = time.perf_counter()
        sr = int(engine.gallery.meta.get("sample_rate") or 16000)
        with audio_writer(out, sr) as write:
            summary = render_walk(engine, latlon, secs, along, write, zoom=args.zoom, style=args.style, when=when,
                                  step_s=args.step, look_ahead_m=args.look_ahead)
        summary["render_s"] = time.perf_counter() - t0
    summary["out"] = str(out)
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=1, default=str))
    skipped = len(summary["skipped"])
    print(f"wrote {out}: {summary['seconds']:.1f} s of stereo, {summary['metres']:.0f} m, "
          f"{summary['places_asked']} places, {summary['clips_decoded']} clips"
          + (f", {skipped} clip(s) skipped (did not decode)" if skipped else "")
          + f"; rendered in {summary['render_s']:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mobile_app.walk", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run_guarded(parser.prog, lambda: run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
