"""AR field audio: does the mix come from the right direction, how fast does it follow, what does mixing cost.

    python -m benchmarks.ar_audio --bundle DIR [--out runs/bench/ar_audio.json] [--picture docs/ar_walk.png]

- ``correctness``: a copy of the bundle whose gallery holds one item per place around a listener (its vector is
  that place's own embedding, so each place hears itself) and whose only sounding clip is band-limited noise at
  the place one cell east (``build_loud_east``). Facing north the right ear must lead by the Woodworth ITD and be
  louder by the pan's level difference; facing south the left; facing east both are level. Measured on the mixed
  stereo (RMS ratio; cross-correlation peak, 32x upsampled) beside the values ``mobile_app.spatial`` promises.
- ``latency``: a heading change (``turn`` + the next 20 ms block mixed) and a position fix every 5 m along a walk
  across the region (``move``: new places asked and their clips decoded, the centre asked again every 25 m),
  p50/p90 over hundreds of updates; the first fix (everything cold) apart.
- ``mixing``: milliseconds of one core per second of audio, holding still and while turning, for the scene on
  the bundle and for 13 synthetic voices at 16 and 44.1 kHz; and pydub (the kept pure-Python mixing library
  that could run on a phone), doing less (pan + gain + overlay, no ITD, no gain ramps), when it is installed.
- ``picture`` (benchmarks.ar_pictures): a walk rendered by ``sat2sound walk``; the route on the map with the places that
  sound at three moments, and the stereo waveform of the walk (docs/ar_audio.md shows it).
Timings are wall clock on this machine; numpy's element-wise work is single-threaded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from contracts.artifacts import MANIFEST_FILE, sha256_file
from mobile_app.engine import Soundscape
from mobile_app.place import When
from mobile_app.spatial import Mixer, ear_cues
from mobile_app.surround import SpatialScene, bearing_deg, offset_m

WHEN = When(6, 7)
STYLE = "aporee"


def _stats(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"n": int(v.size), "p50": float(np.percentile(v, 50)), "p90": float(np.percentile(v, 90)),
            "max": float(v.max())}


# ------------------------------------------------------------------------------------------- the test bundle


def build_loud_east(src: Path, out: Path, *, zoom: int = 1, seconds: float = 2.0, force: bool = False) -> dict:
    """A copy of bundle ``src`` in ``out`` where one loud source lies one grid cell east of a listener standing on a
    cell centre near the region's middle, and every other place (the listener's own included) is silent."""
    from scipy import signal

    from gallery.clips import encode_clip
    from gallery.store import GalleryRow, GalleryWriter

    info_path = out / "loud_east.json"
    if info_path.is_file() and not force:
        return json.loads(info_path.read_text())
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("gallery"))
    with Soundscape.open(src, threads=1) as s:
        scene = SpatialScene(s, zoom=zoom, audio_source=STYLE, when=WHEN)
        r = s.bundle.region
        i = int((r.center[1] - r.south) / scene._dlat)
        j = int((r.center[0] - r.west) / scene._dlon)
        listener = scene.cell_centre(i, j)
        places = {f"{a},{b}": scene.cell_centre(a, b) for a, b in scene.cells_near(*listener)}
        places["centre"] = listener
        vectors = {k: s.embed(lon, lat, zoom, audio_source=STYLE, when=WHEN)[0] for k, (lat, lon) in places.items()}
        sr, fingerprint, dim = int(s.gallery.meta["sample_rate"]), s.bundle.model.space_fingerprint, s.gallery.dim
    east = f"{i},{j + 1}"
    rng = np.random.default_rng(0)
    b, a = signal.butter(4, 0.5)  # noise below half the Nyquist frequency, where soundscapes carry their energy
    noise = signal.lfilter(b, a, rng.standard_normal(int(seconds * sr)))
    loud = (0.3 * noise / noise.std()).astype(np.float32)
    quiet = np.zeros(int(seconds * sr), np.float32)
    rows = []
    for key, vec in vectors.items():
        wave = loud if key == east else quiet
        clip = encode_clip(wave, sr, "wav")
        rows.append(GalleryRow(id=hashlib.sha1(key.encode()).hexdigest(), caption="loud noise" if key == east
                               else f"silence at {key}", clip=clip, clip_format="wav", sample_rate=sr,
                               seconds=seconds, caption_vector=vec, audio_vector=vec, renderer="test"))
    with GalleryWriter.open(out / "gallery", fingerprint=fingerprint, dim=dim, clip_format="wav",
                            sample_rate=sr) as w:
        w.add_batch(rows)
        w.finish(index="exact")
    _rehash(out)
    info = {"bundle": str(out), "listener": list(listener), "east": list(places[east]), "zoom": zoom,
            "east_item": hashlib.sha1(east.encode()).hexdigest(), "sample_rate": sr}
    with Soundscape.open(out, threads=1) as s:  # each place must hear itself, or the test means nothing
        for key, (lat, lon) in places.items():
            top = s.listen(lon, lat, zoom, audio_source=STYLE, when=WHEN, k=1).top.id
            if (top == info["east_item"]) != (key == east):
                raise RuntimeError(f"place {key} hears {top[:8]}: the model cannot tell these places apart")
    info_path.write_text(json.dumps(info, indent=1))
    return info


def _rehash(bundle: Path) -> None:
    """The manifest lists and hashes the new gallery's files (the rest of the bundle is unchanged)."""
    path = bundle / MANIFEST_FILE
    m = json.loads(path.read_text())
    files = {k: v for k, v in m["files"].items() if not k.startswith("gallery/")}
    for f in sorted((bundle / "gallery").iterdir()):
        files[f"gallery/{f.name}"] = {"sha256": sha256_file(f), "bytes": f.stat().st_size}
    m["files"] = files
    from gallery.query import Gallery

    with Gallery.open(bundle / "gallery") as g:
        m["gallery"].update({"fingerprint": g.fingerprint, "count": len(g), "dim": g.dim})
    path.write_text(json.dumps(m, indent=2))


# ------------------------------------------------------------------------------------------- correctness


def ild_itd(stereo: np.ndarray, sample_rate: int, up: int = 32) -> tuple[float, float]:
    """(right-minus-left level in dB, how many ms the right channel leads) of a stereo signal."""
    left, right = stereo[:, 0].astype(np.float64), stereo[:, 1].astype(np.float64)
    ild = 10.0 * math.log10(max(1e-20, float(np.mean(right**2))) / max(1e-20, float(np.mean(left**2))))
    n = len(left)
    cross = np.fft.irfft(np.fft.rfft(left, 2 * n) * np.conj(np.fft.rfft(right, 2 * n)), 2 * n * up)
    k = int(np.argmax(cross))
    lag = k if k < n * up else k - 2 * n * up  # left lags right by this many (upsampled) samples
    return ild, lag / up / sample_rate * 1e3


def spatial_correctness(info: dict, *, threads: int = 1) -> list[dict[str, Any]]:
    rows = []
    with Soundscape.open(info["bundle"], threads=threads) as s:
        scene = SpatialScene(s, zoom=info["zoom"], audio_source=STYLE, when=WHEN)
        lat, lon = info["listener"]
        scene.move(lat, lon)
        sr = scene.sample_rate
        bearing = bearing_deg(*offset_m(tuple(info["listener"]), tuple(info["east"])))
        for name, heading in (("north", 0.0), ("south", 180.0), ("east", 90.0)):
            scene.turn(heading)
            scene.render(sr // 2)  # past the gain ramp
            ild, itd = ild_itd(scene.render(2 * sr), sr)
            cues = ear_cues(((bearing - heading + 180.0) % 360.0) - 180.0, width=scene.width, rear_db=scene.rear_db)
            rows.append({"facing": name, "heading": heading, "source_bearing": round(bearing, 2),
                         "ild_db": round(ild, 2), "ild_expected_db": round(cues.ild_db, 2),
                         "itd_ms": round(itd, 3), "itd_expected_ms": round(cues.itd_s * 1e3, 3)})
    return rows


# ------------------------------------------------------------------------------------------- latency, cost


def update_latency(bundle: Path, *, turns: int = 300, fix_m: float = 5.0, threads: int = 1) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    with Soundscape.open(bundle, threads=threads) as s:
        scene = SpatialScene(s, zoom=1, audio_source=STYLE, when=WHEN)
        r = s.bundle.region
        lat0, lon0 = r.south + 0.2 * (r.north - r.south), r.west + 0.1 * (r.east - r.west)
        lat1, lon1 = r.south + 0.8 * (r.north - r.south), r.west + 0.9 * (r.east - r.west)
        t0 = time.perf_counter()
        first = scene.move(lat0, lon0)
        cold_ms = (time.perf_counter() - t0) * 1e3
        block = int(0.02 * scene.sample_rate)
        turn_only, turn_block = [], []
        for _ in range(turns):
            t0 = time.perf_counter()
            scene.turn(float(rng.uniform(0, 360)))
            t1 = time.perf_counter()
            scene.render(block)
            turn_only.append((t1 - t0) * 1e3)
            turn_block.append((time.perf_counter() - t0) * 1e3)
        length = math.hypot(*offset_m((lat0, lon0), (lat1, lon1)))
        fixes, asked = [], []
        for k in range(1, int(length / fix_m) + 1):
            f = k * fix_m / length
            t0 = time.perf_counter()
            ms = scene.move(lat0 + f * (lat1 - lat0), lon0 + f * (lon1 - lon0))
            scene.render(block)
            fixes.append((time.perf_counter() - t0) * 1e3)
            asked.append(ms["new_places"])
    return {"heading_change_ms": _stats(turn_only), "heading_change_plus_next_block_ms": _stats(turn_block),
            "block_ms": 20.0, "position_fix_ms": _stats(fixes), "fix_every_m": fix_m, "walk_m": length,
            "fixes_that_asked_new_places": int(sum(1 for a in asked if a > 0)),
            "first_fix_cold_ms": cold_ms, "first_fix_parts_ms": first}


def _cost(mixer_render, sample_rate: int, seconds: float, block: int, turn=None) -> float:
    """ms of one core per second of audio."""
    n = max(1, int(seconds * sample_rate / block))
    t0 = time.perf_counter()
    for k in range(n):
        if turn is not None:
            turn(k)
        mixer_render(block)
    return (time.perf_counter() - t0) * 1e3 / (n * block / sample_rate)


def mixing_cost(bundle: Path, *, seconds: float = 10.0, threads: int = 1) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with Soundscape.open(bundle, threads=threads) as s:
        scene = SpatialScene(s, zoom=1, audio_source=STYLE, when=WHEN)
        r = s.bundle.region
        scene.move(r.center[1], r.center[0])
        sr = scene.sample_rate
        voices = len(scene.mixer.voices)
        out["scene"] = {"sample_rate": sr, "voices": voices,
                        "steady_ms_per_s": _cost(scene.render, sr, seconds, int(0.02 * sr)),
                        "turning_ms_per_s": _cost(scene.render, sr, seconds, int(0.02 * sr),
                                                  lambda k: scene.turn(float(k * 3 % 360)))}
    rng = np.random.default_rng(0)
    for sr in (16000, 44100):
        m = Mixer(sr)
        for i in range(13):
            m.add(f"v{i}", (0.1 * rng.standard_normal(10 * sr)).astype(np.float32), ear_cues(i * 27.0), 0.4)

        def turn(k: int, m: Mixer = m) -> None:
            for i in range(13):
                m.set_target(f"v{i}", ear_cues(i * 27.0 + k), 0.4)

        out[f"numpy_13_voices_{sr}"] = {
            "steady_ms_per_s": _cost(m.render, sr, seconds, int(0.02 * sr)),
            "turning_ms_per_s": _cost(m.render, sr, seconds, int(0.02 * sr), turn)}
        out[f"pydub_13_voices_{sr}"] = _pydub_cost(rng, sr, seconds)
    return out


def _pydub_cost(rng: np.random.Generator, sr: int, seconds: float) -> dict[str, Any]:
    """pydub: per 20 ms block, each voice's slice panned, gained and overlaid (no ITD, no gain ramps)."""
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pydub import AudioSegment
    except ImportError:
        return {"installed": False}
    voices = [AudioSegment((0.1 * rng.standard_normal(10 * sr) * 32767).astype("<i2").tobytes(), frame_rate=sr,
                           sample_width=2, channels=1) for _ in range(13)]
    pans = [math.sin(math.radians(i * 27.0)) for i in range(13)]
    block_ms = 20
    n = int(seconds * 1000 / block_ms)
    t0 = time.perf_counter()
    for k in range(n):
        t = (k * block_ms) % 9000
        mix = AudioSegment.silent(duration=block_ms, frame_rate=sr).set_channels(2)
        for v, p in zip(voices, pans, strict=True):
            mix = mix.overlay(v[t:t + block_ms].set_channels(2).pan(p * 0.5).apply_gain(-8.0))
    ms = (time.perf_counter() - t0) * 1e3 / seconds
    from importlib.metadata import version

    return {"installed": True, "version": version("pydub"), "steady_ms_per_s": ms}


# ------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ar_audio", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", required=True, help="bundle to measure (e.g. runs/demo/bundle)")
    parser.add_argument("--work", default="runs/bench/ar_audio", help="test bundle and walk files go here")
    parser.add_argument("--out", default="runs/bench/ar_audio.json")
    parser.add_argument("--picture", default=None, help="write the walk picture here (e.g. docs/ar_walk.png)")
    parser.add_argument("--at", default=None, help="LAT,LON the picture's walk goes round (default: region centre)")
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    bundle, work = Path(args.bundle), Path(args.work)
    result: dict[str, Any] = {"bundle": str(bundle), "machine": {
        "python": platform.python_version(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
        "load_avg_at_start": os.getloadavg()}}
    info = build_loud_east(bundle, work / "loud-east", force=True)
    result["correctness"] = spatial_correctness(info, threads=args.threads)
    for row in result["correctness"]:
        print("facing {facing:5s}: right-left level {ild_db:+6.2f} dB (expected {ild_expected_db:+6.2f}), right "
              "leads by {itd_ms:+.3f} ms (expected {itd_expected_ms:+.3f})".format(**row))
    result["latency"] = lat = update_latency(bundle, turns=args.turns, threads=args.threads)
    print("heading change p50 {p50:.3f} ms p90 {p90:.3f} ms".format(**lat["heading_change_ms"]),
          "(+ next 20 ms block: p50 {p50:.2f} p90 {p90:.2f})".format(**lat["heading_change_plus_next_block_ms"]))
    print("position fix p50 {p50:.2f} ms p90 {p90:.2f} ms max {max:.1f} ms".format(**lat["position_fix_ms"]),
          f"(first, cold: {lat['first_fix_cold_ms']:.0f} ms)")
    result["mixing"] = mix = mixing_cost(bundle, threads=args.threads)
    for name, row in mix.items():
        print(f"mixing {name}: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                             for k, v in row.items()))
    if args.picture:
        from benchmarks.ar_pictures import walk_picture

        at = tuple(float(v) for v in args.at.split(",")) if args.at else None
        result["walk"] = walk_picture(bundle, work / "walk", Path(args.picture), at=at)
        print(f"picture: {args.picture}")
    result["machine"]["load_avg_at_end"] = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
