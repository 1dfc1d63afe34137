"""The offline app, driven headless in a subprocess (SDL offscreen + dummy audio, its own KIVY_HOME) with real
touches: a tap plays the gallery's top hit for that place (computed here independently from the same model file,
map and gallery), its caption shows, and every bad input ends in a clear message instead of a crash."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import test_bundle_build
from PIL import Image
from test_bundle_build import rehash

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def demo(request, tmp_path_factory) -> dict[str, Path]:
    """The demo bundle test_bundle_build.py builds (once per source change; reused from pytest's cache)."""
    return test_bundle_build.demo_folders(request, tmp_path_factory)


CLOCK = "2026-06-21T07:30"  # the app's device clock in these tests: June, 7 h
STYLES = ["yfcc", "inaturalist", "aporee", "freesound"]  # audio-source indices of the paper's metadata encoding
PLACE = (47.6655, 9.1745)  # lat, lon inside TEST_REGION (west half)


def run_app(bundle: Path, steps: list[dict], tmp_path: Path, *args: str, name: str = "run",
            timeout: float = 120) -> dict:
    """Run the app with the autopilot in a fresh process; return its result JSON."""
    out = tmp_path / f"{name}.json"
    env = {**os.environ, "KIVY_HOME": str(tmp_path / "kivy"), "SDL_VIDEODRIVER": "offscreen",
           "SDL_AUDIODRIVER": "dummy", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "mobile_app.autopilot", "--bundle", str(bundle), "--script", json.dumps(steps),
           "--out", str(out), "--data-dir", str(tmp_path / f"data-{name}"), "--headless", "--clock", CLOCK,
           "--size", "1280x800", "--threads", "1", *args]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["finished"], result
    return result


# ------------------------------------------------------------------------------------ the independent answer


def expected_ids(bundle: Path, lat: float, lon: float, zoom: int, style: str, month: int = 6,
                 hour: int = 7) -> list[str]:
    """Gallery item ids nearest to a place, best first, computed without the app's code: the view read straight
    from the MBTiles tables, resized and normalised here, the model file run with onnxruntime, exact search."""
    m = json.loads((bundle / "manifest.json").read_text())
    view, spec = m["views"][str(zoom)], m["model"]
    level, ground = int(view["level"]), float(view["ground_m"])
    n = 256 * 2**level
    x = (lon + 180.0) / 360.0 * n
    y = (1 - math.log(math.tan(math.radians(lat)) + 1 / math.cos(math.radians(lat))) / math.pi) / 2 * n
    side = round(ground / (2 * math.pi * 6378137 * math.cos(math.radians(lat)) / n))
    left, top = math.floor(x - side / 2 + 0.5), math.floor(y - side / 2 + 0.5)
    conn = sqlite3.connect(bundle / m["map"]["file"])
    r0, c0 = top // 256, left // 256
    r1, c1 = (top + side - 1) // 256, (left + side - 1) // 256
    canvas = np.zeros(((r1 - r0 + 1) * 256, (c1 - c0 + 1) * 256, 3), np.uint8)
    for row in range(r0, r1 + 1):
        for col in range(c0, c1 + 1):
            data = conn.execute("SELECT tile_data FROM tiles WHERE zoom_level=? AND tile_column=? AND tile_row=?",
                                (level, col, 2**level - 1 - row)).fetchone()[0]
            canvas[(row - r0) * 256:(row - r0 + 1) * 256, (col - c0) * 256:(col - c0 + 1) * 256] = \
                np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    conn.close()
    crop = canvas[top - r0 * 256:top - r0 * 256 + side, left - c0 * 256:left - c0 * 256 + side]
    s = int(spec["image_size"])
    img = np.asarray(Image.fromarray(crop).resize((s, s), Image.Resampling.BICUBIC), np.float32) / 255.0
    img = ((img - np.array(spec["mean"], np.float32)) / np.array(spec["std"], np.float32)).transpose(2, 0, 1)
    feed = {"image": img[None], "zoom": np.array([zoom], np.float32), "gsd": np.array([spec["gsd_m"]], np.float32),
            "lat": np.array([lat], np.float32), "lon": np.array([lon], np.float32),
            "month": np.array([month], np.float32), "hour": np.array([hour], np.float32),
            "audio_source": np.array([STYLES.index(style)], np.int64), "caption_source": np.array([0], np.int64),
            "meta_mask": np.array([[1, 1, 1, 1, 0]], np.float32)}
    sess, ids, vecs = _model_and_gallery(str(bundle))
    emb = sess.run(["embedding"], {i.name: feed[i.name] for i in sess.get_inputs()})[0][0]
    scores = vecs @ (emb / np.linalg.norm(emb))
    return [ids[i] for i in np.argsort(-scores, kind="stable")]


@functools.lru_cache(maxsize=8)
def _model_and_gallery(bundle: str):
    """The bundle's model file in an ORT session, and every caption vector of its gallery (read with sqlite3)."""
    import onnxruntime as ort

    spec = json.loads((Path(bundle) / "manifest.json").read_text())["model"]
    files = spec["files"]
    sess = ort.InferenceSession(str(Path(bundle) / files.get("ort", files.get("onnx"))),
                                providers=["CPUExecutionProvider"])
    conn = sqlite3.connect(Path(bundle) / "gallery" / "gallery.db")
    rows = conn.execute("SELECT i.id, e.vector FROM embeddings e JOIN items i ON i.id = e.item_id "
                        "WHERE e.kind = 'caption'").fetchall()
    conn.close()
    return sess, [r[0] for r in rows], np.stack([np.frombuffer(r[1], np.float32) for r in rows])


def caption_of(bundle: Path, item_id: str) -> str:
    conn = sqlite3.connect(bundle / "gallery" / "gallery.db")
    caption = conn.execute("SELECT caption FROM items WHERE id = ?", (item_id,)).fetchone()[0]
    conn.close()
    return caption


# ------------------------------------------------------------------------------------------------- tests


def test_device_side_never_imports_torch(demo):
    code = f"""
import os, sys
os.environ.update(SDL_VIDEODRIVER="offscreen", SDL_AUDIODRIVER="dummy", KIVY_HOME={str(demo['bundle'].parent / 'kh')!r})
from mobile_app import kivy_env
kivy_env.configure(headless=True)
import mobile_app.app, mobile_app.autopilot, mobile_app.__main__, bundle.cli
from mobile_app.engine import Soundscape
from mobile_app.place import When
with Soundscape.open({str(demo['bundle'])!r}, threads=1) as s:
    s.listen({PLACE[1]}, {PLACE[0]}, 3, audio_source="aporee", when=When(6, 7))
    s.clip(s.listen({PLACE[1]}, {PLACE[0]}, 1).top.id)
heavy = ("torch", "export", "compress", "sqlite_utils", "transformers")
bad = sorted(m for m in sys.modules if m.split(".")[0] in heavy
             or m in ("core.model", "core.checkpoint", "gallery.embedder", "gallery.store", "bundle.build",
                      "bundle.demo", "bundle.map_tiles"))
print("BAD", bad)
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "BAD []" in proc.stdout, proc.stdout


def test_without_hnswlib_the_app_searches_exactly(demo):
    """A phone without hnswlib (no p4a recipe): the gallery falls back to exact numpy search, same answers."""
    code = f"""
import sys
sys.modules["hnswlib"] = None  # as if it were not installed
from mobile_app.engine import Soundscape
from mobile_app.place import When
with Soundscape.open({str(demo['bundle'])!r}, threads=1) as s:
    a = s.listen({PLACE[1]}, {PLACE[0]}, 1, audio_source="aporee", when=When(6, 7))
    print("EXACT", s.gallery.exact, a.top.id)
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    exact, top = proc.stdout.split()[1:3]
    assert exact == "True" and top == expected_ids(demo["bundle"], PLACE[0], PLACE[1], 1, "aporee")[0]


@pytest.mark.parametrize("args, message", [(["--clock", "noon"], "--clock must look like"),
                                           (["--size", "big"], "--size must look like")])
def test_bad_app_options_are_one_line_errors(args, message):
    proc = subprocess.run([sys.executable, "-m", "mobile_app", "--bundle", "nowhere", "--headless", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_without_onnxruntime_the_app_says_so(demo):
    """No ORT on the device (no p4a recipe): opening the bundle names the missing runtime and the alternative."""
    code = f"""
import sys
sys.modules["onnxruntime"] = None
from contracts.errors import Sat2SoundError
from mobile_app.engine import Soundscape
try:
    Soundscape.open({str(demo['bundle'])!r})
except Sat2SoundError as exc:
    print("ERROR", type(exc).__name__, exc)
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ERROR RuntimeChoiceError onnxruntime is not installed" in proc.stdout and "--runtime tflite" in proc.stdout


def test_tap_plays_the_top_hit_and_shows_its_caption(demo, tmp_path):
    bundle = demo["bundle"]
    shot = (REPO / "docs" / "app_after_tap.png" if os.environ.get("SAT2SOUND_WRITE_DOCS") == "1"
            else tmp_path / "app_after_tap.png")
    steps = [{"do": "wait_tiles"}, {"do": "tap", "lat": PLACE[0], "lon": PLACE[1]}, {"do": "snapshot", "name": "tap"},
             {"do": "wait_tiles"}, {"do": "screenshot", "path": str(shot)},
             {"do": "press", "target": "zoom:3"}, {"do": "snapshot", "name": "zoom3"},
             {"do": "press", "target": "style:inaturalist"}, {"do": "snapshot", "name": "style"},
             {"do": "press", "target": "alt:1"}, {"do": "snapshot", "name": "alt"},
             {"do": "press", "target": "stop"}, {"do": "snapshot", "name": "stop"}]
    r = run_app(bundle, steps, tmp_path)
    assert r["errors"] == []
    s = r["snapshots"]
    assert s["start"]["ready"] and s["start"]["error"] is None and s["start"]["cold_start_ms"] > 0
    tap = s["tap"]
    lat, lon = tap["place"]
    assert abs(lat - PLACE[0]) < 2e-5 and abs(lon - PLACE[1]) < 2e-5  # the finger's pixel, back to degrees
    want = expected_ids(bundle, lat, lon, 1, "aporee")
    assert tap["playing"] == want[0]
    assert tap["player"]["status"] == "playing" and tap["player"]["started"] == [want[0]]
    assert tap["caption_shown"] == caption_of(bundle, want[0])
    assert [h["id"] for h in tap["hits"]] == want[:5]
    assert tap["alternatives"] == want[1:5]  # the next four, as buttons
    assert tap["timings_ms"]["total"] > 0 and set(tap["timings_ms"]) >= {"view", "model", "search", "play"}
    assert r["taps"][0]["handle_ms"] >= tap["timings_ms"]["total"]
    # zoom 3 and another recording style are new questions to the model, answered the same way
    z3 = s["zoom3"]
    assert z3["zoom"] == 3 and z3["playing"] == expected_ids(bundle, lat, lon, 3, "aporee")[0]
    st = s["style"]
    want_style = expected_ids(bundle, lat, lon, 3, "inaturalist")
    assert st["style"] == "inaturalist" and st["playing"] == want_style[0]
    # an alternative plays instead; the stop button stops
    alt = s["alt"]
    assert alt["playing"] == st["alternatives"][1] and alt["caption_shown"] == caption_of(bundle, alt["playing"])
    assert alt["player"]["started"][-1] == alt["playing"]
    assert s["stop"]["player"]["status"] == "stopped"
    # the screenshot shows the map and the panel
    img = np.asarray(Image.open(shot).convert("RGB"))
    if shot.parent.name == "docs":  # the README's picture: 256 colours keep it small enough for the repository
        Image.fromarray(img).quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.FLOYDSTEINBERG) \
            .save(shot, optimize=True)
    assert img.shape == (800, 1280, 3)
    assert img[:, :900].std() > 20  # imagery, not a blank map
    panel = img[:, -360:]
    assert (panel.mean(axis=2) > 200).mean() > 0.005  # light text on the dark panel


@pytest.fixture(scope="module")
def damaged(demo, tmp_path_factory) -> dict:
    """A bundle whose hashes all match but whose map lacks the tile under one place and whose gallery holds an
    undecodable clip (the top hit of the first tour place): faults only use can reveal."""
    src = demo["bundle"]
    bundle = tmp_path_factory.mktemp("damaged") / "bundle"
    shutil.copytree(src, bundle)
    m = json.loads((bundle / "manifest.json").read_text())
    tour = m["tour"][0]
    good = (tour["lat"], tour["lon"])
    level = int(m["views"]["1"]["level"])
    r = json.loads(json.dumps(m["region"]))["bounds"]
    hole = (r[1] + 0.85 * (r[3] - r[1]), r[0] + 0.85 * (r[2] - r[0]))  # lat, lon near the north-east corner
    n = 2**level

    def tile_of(lat, lon):
        x = (lon + 180) / 360 * n
        y = (1 - math.log(math.tan(math.radians(lat)) + 1 / math.cos(math.radians(lat))) / math.pi) / 2 * n
        return int(x), int(y)

    hole_tile = tile_of(*hole)
    assert hole_tile != tile_of(*good)
    conn = sqlite3.connect(bundle / m["map"]["file"])
    conn.execute("DELETE FROM tiles WHERE zoom_level=? AND tile_column=? AND tile_row=?",
                 (level, hole_tile[0], n - 1 - hole_tile[1]))
    conn.commit()
    conn.close()
    top = expected_ids(bundle, good[0], good[1], 1, "aporee")
    garbage = b"OggS" + bytes(range(256)) * 8  # an Ogg signature, then nothing a decoder can use
    conn = sqlite3.connect(bundle / "gallery" / "gallery.db")
    conn.execute("UPDATE clips SET bytes = ?, sha256 = ? WHERE item_id = ?",
                 (garbage, hashlib.sha256(garbage).hexdigest(), top[0]))
    conn.commit()
    conn.close()
    rehash(bundle)
    return {"bundle": bundle, "good": good, "hole": hole, "top": top}


def test_bad_places_and_a_bad_clip_give_messages_not_crashes(damaged, tmp_path):
    d = damaged
    steps = [{"do": "tap_frac", "x": 0.01, "y": 0.5}, {"do": "snapshot", "name": "outside"},
             {"do": "tap", "lat": d["hole"][0], "lon": d["hole"][1]}, {"do": "snapshot", "name": "hole"},
             {"do": "tap", "lat": d["good"][0], "lon": d["good"][1]}, {"do": "snapshot", "name": "badclip"}]
    r = run_app(d["bundle"], steps, tmp_path)
    assert r["errors"] == [] and r["snapshots"]["start"]["ready"]
    s = r["snapshots"]
    assert s["outside"]["message_kind"] == "error" and "outside this bundle's region" in s["outside"]["message"]
    assert s["outside"]["playing"] is None
    assert s["hole"]["message_kind"] == "error" and "no imagery tile" in s["hole"]["message"]
    assert s["hole"]["playing"] is None
    bad = s["badclip"]
    lat, lon = bad["place"]
    top = expected_ids(d["bundle"], lat, lon, 1, "aporee")
    assert top[0] == d["top"][0]
    assert [k["id"] for k in bad["skipped"]] == [top[0]]
    assert bad["playing"] == top[1] and bad["player"]["failed"] == [top[0]]
    assert "could not be played" in bad["message"] and "playing the next nearest" in bad["message"]
    assert bad["caption_shown"] == caption_of(d["bundle"], top[1])


other_gallery = test_bundle_build.other_gallery  # fixture: a gallery embedded by another (also real) model


def _swap_gallery(bundle: Path, gallery: Path) -> None:
    """Replace the bundle's gallery by ``gallery`` (embedded by another model) and make every hash match."""
    shutil.rmtree(bundle / "gallery")
    shutil.copytree(gallery, bundle / "gallery")
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"] = {k: v for k, v in manifest["files"].items() if not k.startswith("gallery/")}
    for f in (bundle / "gallery").iterdir():
        manifest["files"][f"gallery/{f.name}"] = {}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    rehash(bundle)


@pytest.mark.parametrize("fault, message", [
    ("hash", "does not match its SHA-256"),
    ("missing", "file model/"),
    ("fingerprint", "model/gallery fingerprint mismatch"),
])
def test_broken_bundles_show_a_clear_message(demo, tmp_path, request, fault, message):
    bundle = tmp_path / "bundle"
    shutil.copytree(demo["bundle"], bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    model_file = bundle / next(iter(manifest["model"]["files"].values()))
    if fault == "hash":
        data = bytearray(model_file.read_bytes())
        data[-100] ^= 0x55
        model_file.write_bytes(bytes(data))
    elif fault == "missing":
        model_file.unlink()
    else:
        _swap_gallery(bundle, request.getfixturevalue("other_gallery"))
    steps = [{"do": "screenshot", "path": str(tmp_path / "error.png")}] if fault == "hash" else []
    r = run_app(bundle, steps, tmp_path)
    start = r["snapshots"]["start"]
    assert start["ready"] is False and start["message_kind"] == "error"
    assert message in start["error"] and "is not usable" in start["error"]
    if fault == "hash":  # the error screen: dark, with light text (not a blank or crashed window)
        img = np.asarray(Image.open(tmp_path / "error.png").convert("RGB"))
        assert img.shape == (800, 1280, 3) and 0.002 < (img.mean(axis=2) > 150).mean() < 0.2


def test_flat_field_mode_follows_the_position_and_crossfades(demo, tmp_path):
    """``--field --flat``: the place's own soundscape, crossfading as it changes (AR field audio: test_ar_field)."""
    bundle = demo["bundle"]
    m = json.loads((bundle / "manifest.json").read_text())
    w, s_, e, n = m["region"]["bounds"]
    grid = [(s_ + fy * (n - s_), w + fx * (e - w)) for fy in (0.1, 0.3, 0.5, 0.7, 0.9)
            for fx in (0.1, 0.3, 0.5, 0.7, 0.9)]
    tops = {p: expected_ids(bundle, p[0], p[1], 3, "aporee")[0] for p in grid}
    a = grid[0]
    b = next((p for p in grid[1:] if tops[p] != tops[a]), None)
    assert b is not None, "every place of the test region has the same top hit"
    near_b = (b[0] + 0.00005, b[1])  # ~6 m: a GPS jitter, not a move
    steps = [{"do": "press", "target": "zoom:3"},
             {"do": "position", "lat": a[0], "lon": a[1]}, {"do": "snapshot", "name": "a"},
             {"do": "position", "lat": b[0], "lon": b[1], "snap": "fading"},
             {"do": "wait", "s": 3.0}, {"do": "snapshot", "name": "b"},
             {"do": "position", "lat": near_b[0], "lon": near_b[1]}, {"do": "snapshot", "name": "jitter"},
             {"do": "type", "text": f"{a[0]:.6f}, {a[1]:.6f}"}, {"do": "press", "target": "go"},
             {"do": "snapshot", "name": "typed"},
             {"do": "type", "text": "somewhere nice"}, {"do": "press", "target": "go"},
             {"do": "snapshot", "name": "badtext"}]
    r = run_app(bundle, steps, tmp_path, "--field", "--flat", "--fade", "2.0")
    assert r["errors"] == []
    s = r["snapshots"]
    assert s["start"]["field"] and s["start"]["position_source"] == "manual"  # no GPS on this machine
    assert s["a"]["playing"] == tops[a] and s["a"]["player"]["crossfading"] is False
    fading = s["fading"]["player"]
    assert fading["crossfading"] and fading["current"] == tops[b]  # both sounds play: new one fading in
    assert fading["volumes"] == {"current": 0.0, "previous": 1.0}
    done = s["b"]["player"]
    assert not done["crossfading"] and done["volumes"] == {"current": 1.0} and s["b"]["playing"] == tops[b]
    trace = np.array(done["fade_trace"])  # (seconds, new volume, old volume) at each fade step
    assert len(trace) >= 3 and trace[-1, 1:].tolist() == [1.0, 0.0] and trace[-1, 0] == pytest.approx(2.0)
    assert np.all(np.diff(trace[:, 1]) >= 0) and np.all(np.diff(trace[:, 2]) <= 0)  # ramps, both ways
    assert np.allclose(trace[:, 1] ** 2 + trace[:, 2] ** 2, 1.0, atol=1e-3)  # equal power all along
    assert done["started"] == [tops[a], tops[b]]
    assert s["jitter"]["player"]["started"] == done["started"]  # a few metres: no new query, no new clip
    assert s["typed"]["playing"] == tops[a] and s["typed"]["place"] == pytest.approx([a[0], a[1]], abs=1e-6)
    assert s["badtext"]["message_kind"] == "error" and "lat, lon" in s["badtext"]["message"]


def test_kiosk_tours_when_idle_skips_bad_clips_and_wakes_on_touch(damaged, tmp_path):
    d = damaged
    steps = [{"do": "wait", "s": 1.0}, {"do": "snapshot", "name": "touring"},
             {"do": "tap_frac", "x": 0.35, "y": 0.5, "snap": "woken"}, {"do": "wait", "s": 1.0},
             {"do": "snapshot", "name": "idle_again"}]
    r = run_app(d["bundle"], steps, tmp_path, "--kiosk", "--idle", "0.4", "--tour", "5", "--fade", "0.2")
    assert r["errors"] == []
    start, touring, woken = (r["snapshots"][k] for k in ("start", "touring", "woken"))
    assert start["kiosk"] and start["ui"]["scale"] > 1.2 and start["fullscreen"] == "auto"
    assert start["ui"]["zoom_button_px"][1] >= 60  # large touch targets
    assert touring["attract"] and touring["ui"]["banner"] and touring["taps"] == 0
    # the first toured place's top clip is the corrupt one: skipped, the next nearest plays
    assert touring["place"] == pytest.approx(list(d["good"]), abs=1e-9)
    assert touring["skipped"][0]["id"] == d["top"][0] and touring["playing"] == d["top"][1]
    assert not woken["attract"] and woken["ui"]["banner"] == "" and woken["taps"] == 1
    assert woken["place"] != touring["place"]  # the visitor's tap was heard, not the tour's place
    assert r["snapshots"]["idle_again"]["attract"]  # left alone, it resets and tours again
