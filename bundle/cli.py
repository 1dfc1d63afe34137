"""``sat2sound bundle``: build a device bundle, or verify one.

    sat2sound bundle --export EXPORT_DIR --gallery GALLERY_DIR --region LON0,LAT0,LON1,LAT1 --out bundle/ [--force]
    sat2sound bundle --verify bundle/
"""

from __future__ import annotations

import argparse

from core.cli_args import add_export, add_shared
from mobile_app.errors import BundleError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verify", metavar="BUNDLE", help="check every hash and fingerprint of a bundle and exit")
    add_export(parser, required=False, help="export folder (sat2sound export) holding the image tower",
               old=("--model",))
    parser.add_argument("--gallery", help="gallery folder (sat2sound gallery build) embedded by the same model")
    parser.add_argument("--region", help="LON0,LAT0,LON1,LAT1 of the area the device shows (WGS84 degrees)")
    parser.add_argument("--out", help="bundle folder to write")
    parser.add_argument("--force", action="store_true", help="replace an existing bundle folder")
    parser.add_argument("--tile-ground-m", type=float, default=None,
                        help="ground side (m) of the native tile the model's zoom 5 sees (default: from the export, "
                             "else 900 = Bing 1500 px x 0.6 m)")
    parser.add_argument("--image-size", type=int, default=None, help="model input size (default: from the export)")
    parser.add_argument("--overview-levels", type=int, default=3, help="coarser map levels above the model's views")
    parser.add_argument("--context-tiles", type=int, default=2,
                        help="map tiles of surroundings drawn around the region at the levels it is seen whole")
    parser.add_argument("--tile-format", choices=("jpg", "png"), default="jpg")
    parser.add_argument("--quality", type=int, default=88, help="JPEG quality of the map tiles")
    parser.add_argument("--seed", type=int, default=0, help="seed of the embedded world the map is drawn from")
    parser.add_argument("--imagery", default=None, help="draw the map (and so the model's views) from this real "
                        "imagery instead of the world: a GeoTIFF / JPEG 2000 / MBTiles, or a folder of them")
    parser.add_argument("--bands", default=None, help="with --imagery: the red,green,blue band numbers (1,1,1: grey)")
    parser.add_argument("--max-tiles", type=int, default=20000, help="refuse regions needing more map tiles")
    add_shared(parser, "no-progress")


def run(args: argparse.Namespace) -> int:
    if args.verify:
        from mobile_app.bundle import verify_report

        ok, lines = verify_report(args.verify)
        for line in lines:
            print(line)
        return 0 if ok else 2
    missing = [f"--{n}" for n in ("export", "gallery", "region", "out") if not getattr(args, n)]
    if missing:
        raise BundleError(f"building a bundle needs {', '.join(missing)} (or use --verify BUNDLE)")
    from bundle.build import build_bundle

    report = build_bundle(args.export, args.gallery, args.region, args.out, force=args.force,
                          tile_ground_m=args.tile_ground_m, image_size=args.image_size,
                          overview_levels=args.overview_levels, context_tiles=args.context_tiles,
                          tile_format=args.tile_format, quality=args.quality,
                          world_seed=args.seed, max_tiles=args.max_tiles, progress=not args.no_progress,
                          imagery=args.imagery, bands=args.bands)
    print(report.summary())
    return 0
