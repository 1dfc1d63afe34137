"""``sat2sound bundle --imagery FILE|DIR``: the bundle's map, and so the model's views on the device, come from the
user's imagery instead of the embedded world's renderer.

The region is the part of ``--region`` the imagery covers (a region that misses it is an error). Map tiles are PNG
with no-data pixels transparent and tiles with no imagery at all left out; the app never plays a view that touches
either (``mobile_app.mbtiles``). The image tower is told the imagery's own GSD, and the manifest records the scenes,
their stretch and the no-data rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mobile_app import mercator
from mobile_app.errors import BundleError


def open_bundle_imagery(path: str | Path, bands: str | None, region: mercator.Bounds):
    """(opened ImagerySet, the region clipped to it, its renderer); BundleError when they do not overlap."""
    from contracts.errors import ConfigError
    from imagery.tiles import Bounds, ImagerySet, imagery_renderer, region_in_imagery

    scenes = ImagerySet(path, bands)
    try:
        inside = region_in_imagery(scenes, Bounds(region.west, region.south, region.east, region.north), "--region")
        bounds = mercator.Bounds(west=inside.west, south=inside.south, east=inside.east, north=inside.north)
    except ConfigError as exc:
        scenes.close()
        raise BundleError(str(exc)) from None
    except BaseException:
        scenes.close()
        raise
    return scenes, bounds, imagery_renderer(scenes)


def imagery_manifest(manifest: dict[str, Any], scenes, n_tiles: int) -> None:
    """Record the imagery in the bundle manifest and give the model the imagery's GSD."""
    manifest["model"]["gsd_m"] = float(scenes.gsd_m)
    manifest["imagery"] = {**scenes.describe(), "tiles_written": int(n_tiles),
                           "no_data": "transparent pixels (PNG alpha 0) and missing tiles in the map; the app never "
                                      "plays a view that touches one"}
    manifest["map"]["format"] = "png"
