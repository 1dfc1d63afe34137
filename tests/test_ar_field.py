"""AR field audio on a real (tiny) bundle: one loud place east of the listener must sound from the east in the
scene, in the running app driven by the autopilot (position + a heading sequence, asserted on the rendered stereo
buffer) and in ``sat2sound walk``; bad routes, bad headings and an undecodable clip end in clear messages."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import test_bundle_build
from test_mobile_app import run_app

from benchmarks.ar_audio import build_loud_east, ild_itd, spatial_correctness
from mobile_app.spatial import ear_cues
from mobile_app.walk import main as walk_main


@pytest.fixture(scope="session")
def demo(request, tmp_path_factory) -> dict[str, Path]:
    return test_bundle_build.demo_folders(request, tmp_path_factory)


@pytest.fixture(scope="module")
def loud(demo, tmp_path_factory) -> dict:
    """The demo bundle with one loud place one grid cell east of a listener; every other place silent."""
    return build_loud_east(demo["bundle"], tmp_path_factory.mktemp("ar") / "loud-east")


def test_the_scene_hears_the_loud_place_from_the_east(loud):
    rows = {r["facing"]: r for r in spatial_correctness(loud)}
    assert abs(rows["north"]["source_bearing"] - 90) < 0.5
    for facing, sign in (("north", 1), ("south", -1)):
        r = rows[facing]
        assert sign * r["ild_db"] > 7 and r["ild_db"] == pytest.approx(r["ild_expected_db"], abs=0.3)
        assert sign * r["itd_ms"] > 0.6 and r["itd_ms"] == pytest.approx(r["itd_expected_ms"], abs=0.02)
    assert abs(rows["east"]["ild_db"]) < 0.3 and abs(rows["east"]["itd_ms"]) < 0.02  # ahead: level


def _route(path: Path, points: list[tuple[float, float]]) -> Path:
    import gpxpy.gpx

    g = gpxpy.gpx.GPX()
    t = gpxpy.gpx.GPXTrack()
    s = gpxpy.gpx.GPXTrackSegment()
    s.points.extend(gpxpy.gpx.GPXTrackPoint(lat, lon) for lat, lon in points)
    t.segments.append(s)
    g.tracks.append(t)
    path.write_text(g.to_xml())
    return path


def test_field_mode_turns_the_mix_with_the_heading(loud, tmp_path):
    lat, lon = loud["listener"]
    steps = [{"do": "wait_tiles"}, {"do": "position", "lat": lat, "lon": lon},
             {"do": "heading", "deg": 0}, {"do": "wait", "s": 0.7}, {"do": "snapshot", "name": "north"},
             {"do": "save_audio", "path": str(tmp_path / "north.npy"), "last_s": 0.4},
             {"do": "heading", "deg": 180}, {"do": "wait", "s": 0.7},
             {"do": "save_audio", "path": str(tmp_path / "south.npy"), "last_s": 0.4},
             {"do": "dial", "deg": 90}, {"do": "wait", "s": 0.7}, {"do": "snapshot", "name": "east"},
             {"do": "save_audio", "path": str(tmp_path / "east.npy"), "last_s": 0.4},
             {"do": "key", "key": "right"}, {"do": "snapshot", "name": "key"},
             {"do": "heading", "deg": "NaN"}, {"do": "snapshot", "name": "nan"},
             {"do": "heading", "deg": 400}, {"do": "snapshot", "name": "over"},
             {"do": "center", "lat": lat, "lon": lon, "level": 15}, {"do": "wait_tiles"},
             {"do": "screenshot", "path": str(tmp_path / "field.png")}]
    r = run_app(Path(loud["bundle"]), steps, tmp_path, "--field")
    assert r["errors"] == []
    s = r["snapshots"]
    north = s["north"]["field_mode"]
    assert north["spatial"] and north["audio"]["kind"] == "buffer" and north["heading"] == 0
    loudest = [x for x in north["scene"]["sounding"] if x["item_id"] == loud["east_item"]]
    assert len(loudest) == 1 and loudest[0]["azimuth_deg"] == pytest.approx(90, abs=1)
    assert loudest[0]["gain"] == pytest.approx(0.5, abs=0.02)
    sr = north["scene"]["sample_rate"]
    want = ear_cues(90)
    for name, sign in (("north", 1), ("south", -1)):
        ild, itd = ild_itd(np.load(tmp_path / f"{name}.npy"), sr)
        assert ild == pytest.approx(sign * want.ild_db, abs=0.6) and itd == pytest.approx(sign * want.itd_s * 1e3,
                                                                                         abs=0.03)
    ild, itd = ild_itd(np.load(tmp_path / "east.npy"), sr)
    assert abs(ild) < 0.6 and abs(itd) < 0.03
    assert s["east"]["field_mode"]["heading"] == pytest.approx(90, abs=1)  # the dial, touched at 90 degrees
    assert s["east"]["field_mode"]["heading_source"] == "dial"
    assert r["turns"][0]["timings_ms"]["turn"] < 20
    assert s["key"]["field_mode"]["heading"] == pytest.approx(s["east"]["field_mode"]["heading"] + 15, abs=0.01)
    for name in ("nan", "over"):
        assert s[name]["message_kind"] == "error" and "between 0 and 360" in s[name]["message"]
        assert s[name]["field_mode"]["heading"] == s["key"]["field_mode"]["heading"]  # the bad value was ignored
    img = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(tmp_path / "field.png").convert("RGB"))
    listener_yellow = (img[..., 0] > 230) & (img[..., 1] > 220) & (img[..., 2] < 170)
    assert listener_yellow[:, :900].sum() > 100  # the listener and the cone where they face, on the map


def test_walk_faces_the_way_it_goes(loud, tmp_path, capsys):
    lat, lon = loud["listener"]
    d = 110 / 111320  # ~110 m of latitude
    route = _route(tmp_path / "walk.gpx", [(lat - d, lon), (lat + d, lon), (lat - d, lon)])
    out = tmp_path / "walk.ogg"
    rc = walk_main(["--bundle", loud["bundle"], "--route", str(route), "--out", str(out), "--speed", "10",
                    "--summary", str(tmp_path / "walk.json"), "--clock", "2026-06-21T07:30"])
    assert rc == 0, capsys.readouterr().err
    audio, sr = sf.read(out, dtype="float32", always_2d=True)
    summary = json.loads((tmp_path / "walk.json").read_text())
    assert audio.shape[1] == 2 and sr == loud["sample_rate"] and len(audio) / sr == pytest.approx(44, abs=1)
    assert summary["skipped"] == [] and summary["trace"][0]["heading"] == pytest.approx(0, abs=1)
    half = len(audio) // 2
    margin = int(3 * sr)  # away from the turn, where the heading swings round
    going, coming = audio[margin:half - margin], audio[half + margin:-margin]
    assert ild_itd(going, sr)[0] > 5  # walking north, the loud place is on the right
    assert ild_itd(coming, sr)[0] < -5  # walking back south, on the left
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("content, message", [
    ("", "the route file is empty"),
    ("this is not xml <<<", "not XML"),
    ('<?xml version="1.0"?><gpx version="1.1" creator="t"><wpt lat="47.66" lon="9.17"/></gpx>', "has no track"),
    ("outside", "outside the bundle's region"),
    ("single", "a single point"),
])
def test_bad_routes_are_one_line_errors(loud, tmp_path, capsys, content, message):
    lat, lon = loud["listener"]
    path = tmp_path / "r.gpx"
    if content == "outside":
        _route(path, [(lat, lon), (lat + 1.0, lon)])
    elif content == "single":
        _route(path, [(lat, lon)])
    else:
        path.write_text(content)
    rc = walk_main(["--bundle", loud["bundle"], "--route", str(path), "--out", str(tmp_path / "w.ogg")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err and str(path) in err
    assert not (tmp_path / "w.ogg").exists()


def test_walk_is_a_sat2sound_command():
    from core.cli import build_parser

    assert "walk" in build_parser().format_help()


def test_a_clip_that_fails_to_decode_mid_walk_is_skipped(loud, tmp_path, capsys):
    bundle = Path(shutil.copytree(loud["bundle"], tmp_path / "bundle"))
    garbage = b"RIFF" + b"\x00" * 4 + b"WAVE" + bytes(range(256)) * 4  # a WAV signature, then nothing playable
    conn = sqlite3.connect(bundle / "gallery" / "gallery.db")
    conn.execute("UPDATE clips SET bytes = ?, sha256 = ? WHERE item_id = ?",
                 (garbage, __import__("hashlib").sha256(garbage).hexdigest(), loud["east_item"]))
    conn.commit()
    conn.close()
    test_bundle_build.rehash(bundle)
    lat, lon = loud["listener"]
    route = _route(tmp_path / "w.gpx", [(lat - 0.0009, lon), (lat + 0.0009, lon)])
    rc = walk_main(["--bundle", str(bundle), "--route", str(route), "--out", str(tmp_path / "w.wav"), "--speed",
                    "20", "--summary", str(tmp_path / "s.json")])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "s.json").read_text())
    assert [s["item"] for s in summary["skipped"]] == [loud["east_item"]]  # once: the failure is remembered
    assert "does not decode" in summary["skipped"][0]["reason"] or "not" in summary["skipped"][0]["reason"]
    assert "1 clip(s) skipped" in capsys.readouterr().out
    audio, _ = sf.read(tmp_path / "w.wav", always_2d=True)
    assert len(audio) > 0 and np.abs(audio).max() < 0.01  # the walk went on: the loud clip is gone, silence left
