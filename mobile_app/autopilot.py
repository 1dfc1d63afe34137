"""Drive the real app with a script of touches and record what it did: headless tests, screenshots, latency runs.

``python -m mobile_app.autopilot --bundle DIR --script steps.json --out result.json [app options]`` starts the app
(offscreen, dummy audio unless a display is there), performs the steps with synthetic touches that travel the same
path as a finger (Window -> widgets -> the map's tap detection -> the app), and writes JSON: the named snapshots
of the app's state, the measured tap-to-sound latencies and any step that failed.

Steps (a JSON list of objects):
    {"do": "tap", "lat": 48.01, "lon": 8.21}         touch the map where that place is on screen
    {"do": "tap_frac", "x": 0.05, "y": 0.5}         touch the window at a fraction of its size
    {"do": "press", "target": "zoom:3"}             touch a button: zoom:Z, style:NAME, alt:I, stop, go, dial
    {"do": "type", "text": "48.01, 8.21"}           put text in the coordinate box (field mode)
    {"do": "position", "lat": .., "lon": ..}        a GPS fix (field mode)
    {"do": "heading", "deg": 90}                    a compass reading (field mode)
    {"do": "dial", "deg": 90}                       touch the heading dial at that angle (field mode)
    {"do": "key", "key": "right"}                   an arrow key (left / right turn the heading in field mode)
    {"do": "save_audio", "path": "a.npy", "last_s": 0.5}   field mode's rendered stereo (.npy float32, or .wav)
    {"do": "center", "lat": .., "lon": .., "level": 15}
    {"do": "wait", "s": 1.5}                        let the app run (fades, idle timers, tile loading)
    {"do": "wait_tiles", "timeout": 10}             until the map's visible tiles have loaded
    {"do": "snapshot", "name": "after_tap"}         record app.snapshot()
    {"do": "screenshot", "path": "shot.png"}        the whole window as PNG
    {"do": "bench_taps", "n": 50, "seed": 0}        tap n random places in the region, timing each
Any action step may carry "snap": "name" to record a snapshot right after it, before the next frame runs.

Device-side tooling: Kivy, numpy; never torch.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from contracts.errors import run_guarded
from mobile_app.__main__ import add_arguments, make_app

# Kivy is imported inside the functions below: it reads its environment once, at import, and make_app sets it first.


def _touch(x: float, y: float) -> float:
    """Press and release at window (x, y); returns the seconds the release took to handle (the tap's work)."""
    from kivy.tests.common import UnitTestTouch

    touch = UnitTestTouch(x, y)
    touch.touch_down()
    t0 = time.perf_counter()
    touch.touch_up()
    return time.perf_counter() - t0


def _widget_center(widget) -> tuple[float, float]:
    return widget.to_window(*widget.center)


def _target(app, name: str):
    kind, _, arg = name.partition(":")
    if kind == "zoom":
        return app.panel.zoom_buttons[int(arg)]
    if kind == "style":
        return app.panel.style_buttons[arg]
    if kind == "alt":
        return list(reversed(app.panel.alt_box.children))[int(arg)]
    if kind == "stop":
        return app.panel.stop_button
    if kind == "go":
        return _field_mode(app).go_button
    if kind == "dial":
        return _field_mode(app).dial
    raise ValueError(f"unknown press target {name!r}")


def _field_mode(app):
    if app.field_mode is None:
        raise ValueError("this step needs the app in field mode (--field)")
    return app.field_mode


def steps(app, script: list[dict[str, Any]], result: dict[str, Any]):
    """A generator over the script: yields seconds to wait before the next step."""
    from kivy.core.window import Window

    for i, step in enumerate(script):
        what = step.get("do")
        try:
            if what == "tap":
                x, y = app.mapview.window_xy(float(step["lat"]), float(step["lon"]))
                dt_s = _touch(x, y)
                result["taps"].append({"lat": step["lat"], "lon": step["lon"], "x": x, "y": y,
                                       "handle_ms": dt_s * 1e3, "timings_ms": dict(app.timings)})
            elif what == "tap_frac":
                _touch(float(step["x"]) * Window.width, float(step["y"]) * Window.height)
            elif what == "press":
                _touch(*_widget_center(_target(app, step["target"])))
            elif what == "type":
                _field_mode(app).coord_input.text = str(step["text"])
            elif what in ("position", "heading"):
                fm = _field_mode(app)
                t0 = time.perf_counter()
                if what == "position":
                    fm.set_position(float(step["lat"]), float(step["lon"]), source="gps")
                else:
                    fm.set_heading(step["deg"], source="compass")
                result["updates"].append({"do": what, "handle_ms": (time.perf_counter() - t0) * 1e3,
                                          "timings_ms": dict(fm.timings)})
            elif what == "dial":
                dial = _field_mode(app).dial
                t0 = time.perf_counter()
                _touch(*dial.to_window(*dial.point_at(float(step["deg"]))))
                result["turns"].append({"deg": step["deg"], "handle_ms": (time.perf_counter() - t0) * 1e3,
                                        "timings_ms": dict(_field_mode(app).timings)})
            elif what == "key":
                code = {"left": 276, "right": 275}[step["key"]]
                Window.dispatch("on_key_down", code, 0, None, [])
            elif what == "save_audio":
                _save_audio(app, Path(step["path"]), step.get("last_s"))
            elif what == "center":
                if "level" in step:
                    app.mapview.zoom = int(step["level"])
                app.mapview.center_on(float(step["lat"]), float(step["lon"]))
            elif what == "wait":
                yield float(step.get("s", 0.5))
            elif what == "wait_tiles":
                deadline = time.monotonic() + float(step.get("timeout", 10))
                yield 0.3
                while app.mapview.tiles_loading() and time.monotonic() < deadline:
                    yield 0.1
                yield 0.4  # the tiles' fade-in animation
            elif what == "snapshot":
                result["snapshots"][step.get("name", f"step{i}")] = app.snapshot()
            elif what == "screenshot":
                path = Path(step["path"])
                path.parent.mkdir(parents=True, exist_ok=True)
                yield 0.1
                app.root.export_to_png(str(path))
                result["screenshots"].append(str(path))
            elif what == "bench_taps":
                yield from _bench_taps(app, step, result)
            else:
                raise ValueError(f"unknown step {what!r}")
            if "snap" in step:  # a snapshot in the same frame as the action, before any timer runs
                result["snapshots"][step["snap"]] = app.snapshot()
        except Exception as exc:  # record and go on: the result says which step failed and why
            result["errors"].append({"step": i, "do": what, "error": f"{type(exc).__name__}: {exc}",
                                     "trace": traceback.format_exc(limit=4)})
        yield float(step.get("after", 0.05))


def _save_audio(app, path: Path, last_s: float | None) -> None:
    """Write what field mode's buffer output has rendered: float32 .npy (exact), or 16-bit .wav."""
    import wave

    import numpy as np

    out = _field_mode(app).output
    if out is None or not hasattr(out, "audio"):
        raise ValueError("no rendered audio to save: field mode has no buffer output (not headless, or --flat)")
    x = out.audio(None if last_s is None else float(last_s))
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npy":
        np.save(path, x)
        return
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(out.sample_rate)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())


def _bench_taps(app, step: dict[str, Any], result: dict[str, Any]):
    r = app.engine.bundle.region
    rng = random.Random(int(step.get("seed", 0)))
    zoom_level = step.get("level")
    lats = []
    for _ in range(int(step.get("n", 30))):
        lat = rng.uniform(r.south + 0.1 * (r.north - r.south), r.north - 0.1 * (r.north - r.south))
        lon = rng.uniform(r.west + 0.1 * (r.east - r.west), r.east - 0.1 * (r.east - r.west))
        if zoom_level is not None:
            app.mapview.zoom = int(zoom_level)
        app.mapview.center_on(lat, lon)
        yield 0.02
        x, y = app.mapview.window_xy(lat, lon)
        dt_s = _touch(x, y)
        ok = app.playing_hit is not None and app.place is not None and abs(app.place[0] - lat) < 1e-3
        lats.append({"handle_ms": dt_s * 1e3, "timings_ms": dict(app.timings), "ok": bool(ok)})
        yield 0.02
        lats[-1]["ui_after_sound_ms"] = app.timings.get("ui_after_sound")  # drawn on the frame after the sound
    result["bench_taps"] = lats


def run(app, script: list[dict[str, Any]], out: Path, *, start_delay: float = 0.3, timeout: float = 120.0) -> None:
    """Run ``app`` with ``script``; write the result JSON to ``out`` and stop the app when the script ends."""
    from kivy.clock import Clock
    from kivy.core.window import Window

    result: dict[str, Any] = {"snapshots": {}, "taps": [], "turns": [], "updates": [], "screenshots": [],
                              "errors": [], "finished": False}
    t_launch = time.perf_counter()
    launched_at = os.environ.get("SAT2SOUND_LAUNCH_TIME")  # time.time() when the caller started this process

    def first_flip(*_args):
        if "first_frame_ms" not in result and app.root is not None:
            result["first_frame_ms"] = (time.perf_counter() - t_launch) * 1e3
            if launched_at:
                result["launch_to_first_frame_ms"] = (time.time() - float(launched_at)) * 1e3
            Window.unbind(on_flip=first_flip)

    Window.bind(on_flip=first_flip)

    def finish():
        result["wall_s"] = time.perf_counter() - t_launch
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1, default=str))
        app.stop()

    def start(_dt):
        result["snapshots"]["start"] = app.snapshot()
        todo = script
        if app.engine is None:  # the error screen: only looking at it makes sense
            todo = [s for s in script if s.get("do") in ("wait", "screenshot", "snapshot")]
        gen = steps(app, todo, result)

        def tick(_dt):
            try:
                delay = next(gen)
            except StopIteration:
                result["finished"] = True
                finish()
                return
            Clock.schedule_once(tick, delay)

        Clock.schedule_once(tick, 0)

    def give_up(_dt):
        if not result["finished"]:
            result["errors"].append({"step": None, "error": f"timed out after {timeout} s"})
            finish()

    Clock.schedule_once(start, start_delay)
    Clock.schedule_once(give_up, timeout)
    app.run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mobile_app.autopilot", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument("--script", required=True, help="JSON list of steps (or a file holding one)")
    parser.add_argument("--out", required=True, help="result JSON")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    script_text = args.script
    if not script_text.lstrip().startswith("["):
        script_text = Path(script_text).read_text()
    script = json.loads(script_text)
    return run_guarded(parser.prog, lambda: run(make_app(args), script, Path(args.out), timeout=args.timeout))


if __name__ == "__main__":
    sys.exit(main())
