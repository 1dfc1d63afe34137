"""``python -m mobile_app --bundle DIR [--kiosk] [--field [--flat]] [--runtime onnx|tflite]`` (and ``sat2sound app``).

Device-side: never imports torch. Kivy is imported only after its environment is set (mobile_app.kivy_env).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from contracts.errors import ConfigError, run_guarded
from mobile_app import kivy_env


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, help="bundle folder written by `sat2sound bundle`")
    parser.add_argument("--runtime", choices=("onnx", "tflite"), default="onnx",
                        help="on-device inference: ONNX Runtime (default) or LiteRT")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--kiosk", action="store_true",
                      help="exhibit mode: fullscreen, large targets, idle attract loop, no keyboard needed")
    mode.add_argument("--field", action="store_true",
                      help="field mode (AR audio): follow the device position (GPS, pin or typed) and heading "
                      "(compass, dial or arrow keys) and hear the places around you from their directions")
    parser.add_argument("--flat", action="store_true",
                        help="field mode without directions: only the place's own soundscape, crossfading as you move")
    parser.add_argument("--idle", type=float, default=90.0, help="kiosk: seconds without a touch before the tour")
    parser.add_argument("--tour", type=float, default=14.0, help="kiosk: seconds per toured place")
    parser.add_argument("--fade", type=float, default=2.5, help="crossfade seconds (field mode and kiosk tour)")
    parser.add_argument("--k", type=int, default=5, help="hits per place: the top one plays, the rest are offered")
    parser.add_argument("--threads", type=int, default=2, help="inference threads")
    parser.add_argument("--data-dir", default=None, help="app data (hash cache, map cache); default: Kivy's user dir")
    parser.add_argument("--no-verify", action="store_true", help="skip the bundle's hash checks (not recommended)")
    parser.add_argument("--size", default="1280x800", help="window size WxH on desktop (ignored with --kiosk)")
    parser.add_argument("--clock", default=None, metavar="YYYY-MM-DDTHH:MM",
                        help="use this date and time instead of the device clock (demos: hear a summer dawn in winter)")
    parser.add_argument("--headless", action="store_true", help="offscreen window and dummy audio (no display)")


def make_app(args: argparse.Namespace):
    """Set Kivy's environment from the arguments, then build the app object (Kivy is imported here, not before)."""
    try:
        w, h = (int(v) for v in str(args.size).lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size must look like 1280x800, got {args.size!r}") from None
    clock = None
    if args.clock:
        try:
            clock = dt.datetime.fromisoformat(args.clock)
        except ValueError:
            raise ConfigError(f"--clock must look like 2026-06-21T05:30, got {args.clock!r}") from None
    kivy_env.configure(headless=True if args.headless else None, size=(w, h), fullscreen=args.kiosk)
    from mobile_app.app import Sat2SoundApp  # imports Kivy, which reads its environment once, at import

    return Sat2SoundApp(args.bundle, runtime=args.runtime, kiosk=args.kiosk, field=args.field,
                        data_dir=args.data_dir, verify=not args.no_verify, k=args.k, idle_s=args.idle,
                        tour_s=args.tour, fade_s=args.fade, threads=args.threads, clock=clock,
                        flat=getattr(args, "flat", False))


def run(args: argparse.Namespace) -> int:
    make_app(args).run()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mobile_app", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run_guarded(parser.prog, lambda: run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
