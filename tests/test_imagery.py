"""Reading real imagery (imagery/): scenes in any CRS, views of the model's ground extent, band mapping, stretch,
no-data, MBTiles, and a clear error for every bad input the issue lists."""

from __future__ import annotations

import resource
import sqlite3

import numpy as np
import pytest
from imagery_fixtures import halves, sentinel_crop, sentinel_folder

from contracts.errors import ConfigError, DataError
from imagery.scene import open_scene, parse_bands, scene_files
from imagery.tiles import Bounds, ImagerySet, imagery_renderer, region_in_imagery, views_for
from imagery.views import read_view

# a place on Virginia's Eastern Shore inside the Sentinel-2 scene (cropland west of the lagoon)
S2_LAT, S2_LON = 37.70, -75.70


def test_the_sentinel_band_folder_is_one_scene_in_red_green_blue_order():
    with ImagerySet(sentinel_folder()) as im:
        (scene,) = im.scenes
        assert scene.band_names == ("B04", "B03", "B02")
        assert im.gsd_m == pytest.approx(10.0, rel=0.01)  # from the file's transform, not a preset
        w, s, e, n = scene.bounds_wgs84
        assert w < S2_LON < e and s < S2_LAT < n
        assert scene.stretch.kind == "percentile" and scene.dtype == "uint16"
        assert all(lo < hi for lo, hi in zip(scene.stretch.low, scene.stretch.high))
        desc = im.describe()["scenes"][0]
        assert desc["stretch"]["kind"] == "percentile" and desc["nodata"].startswith("0")
        v = im.view(S2_LAT, S2_LON, 540.0, 32)
        assert v.rgb.shape == (32, 32, 3) and v.rgb.dtype == np.uint8 and v.valid.all()
        assert v.rgb.std() > 5  # real texture, not a flat fill
        outside = im.view(S2_LAT + 1.0, S2_LON, 540.0, 32)
        assert not outside.valid.any()


@pytest.mark.parametrize("crs", ["EPSG:32618", "EPSG:4326", "EPSG:3857"])
def test_a_view_is_north_up_and_the_same_ground_in_any_crs(tmp_path, crs):
    """A raster whose west half is red and east half blue, in three CRSs: the view centred on the boundary sees
    red on its left and blue on its right, over the same ground."""
    from rasterio.transform import from_origin
    from rasterio.warp import transform

    lat, lon = 37.7, -75.6
    (x,), (y,) = transform("EPSG:4326", crs, [lon], [lat])
    step = {"EPSG:4326": 1e-5, "EPSG:32618": 1.0, "EPSG:3857": 1.0 / np.cos(np.radians(lat))}[crs]
    path = halves(tmp_path / "halves.tif", crs, from_origin(x - 100 * step, y + 100 * step, step, step))
    with ImagerySet(path) as im:
        assert im.gsd_m == pytest.approx(1.0, rel=0.02)
        assert im.scenes[0].stretch.kind == "none"  # 8-bit RGB: no stretch
        v = im.view(lat, lon, 100.0, 20)  # 100 m of the 200 m raster
        assert v.valid.all()
        left, right = v.rgb[:, :8], v.rgb[:, 12:]
        assert left[..., 0].mean() > 150 and left[..., 2].mean() < 50
        assert right[..., 2].mean() > 150 and right[..., 0].mean() < 50


def test_nodata_pixels_are_marked_and_filled(tmp_path):
    from rasterio.transform import from_origin

    path = halves(tmp_path / "nd.tif", "EPSG:32618", from_origin(400000, 4180000, 1, 1), dtype="uint16",
                  nodata=65535)
    with ImagerySet(path) as im:
        scene = im.scenes[0]
        assert scene.stretch.kind == "percentile" and "65535" in scene.describe()["nodata"]
        v = read_view(scene, *_centre(scene), 200.0, 40)
        assert 0.6 < v.valid_fraction < 0.9  # the top quarter is no-data
        assert v.valid[-1].all() and not v.valid[0].any()


def _centre(scene) -> tuple[float, float]:
    w, s, e, n = scene.bounds_wgs84
    return (s + n) / 2, (w + e) / 2


def test_views_for_many_places_and_the_bundle_renderer(tmp_path):
    crop = sentinel_crop(tmp_path / "crop.tif", 300, 300, 120)
    with ImagerySet(crop) as im:
        lat, lon = _centre(im.scenes[0])
        images, valid = views_for(im, np.array([[lat, lon], [lat + 1, lon]]), 180.0, 16)
        assert images.shape == (2, 16, 16, 3) and valid[0] == 1.0 and valid[1] == 0.0
        render = imagery_renderer(im)
        rgba = render(lat, lon, 64, 1500.0)  # wider than the 1.2 km crop: transparent round the edge
        assert rgba.shape == (64, 64, 4) and rgba[32, 32, 3] == 255 and rgba[0, 0, 3] == 0
        assert render(lat + 1, lon, 64, 100.0) is None  # no imagery at all: no tile


def test_a_scene_is_never_read_whole(tmp_path):
    """A 10.8 GB scene (60000 x 60000 x 3, written sparse) opens, estimates its stretch and gives views from
    windowed reads, in a few MB."""
    import rasterio
    from rasterio.transform import from_origin

    path = tmp_path / "huge.tif"
    with rasterio.open(path, "w", driver="GTiff", width=60000, height=60000, count=3, dtype="uint8",
                       crs="EPSG:32618", transform=from_origin(400000, 4200000, 0.5, 0.5), tiled=True,
                       sparse_ok=True, BIGTIFF="YES", nodata=None) as ds:
        ds.write(np.full((3, 512, 512), 120, np.uint8), window=rasterio.windows.Window(30000, 30000, 512, 512))
    assert path.stat().st_size < 50e6
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with ImagerySet(path) as im:
        scene = im.scenes[0]
        lat, lon = _centre(scene)
        v = read_view(scene, lat, lon, 180.0, 32)
        wide = read_view(scene, lat, lon, 20000.0, 64)  # 40000 source pixels across, read decimated
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert v.rgb.shape == (32, 32, 3) and wide.rgb.shape == (64, 64, 3)
    assert grown_mb < 400, f"reading views grew the process by {grown_mb:.0f} MB"


# --------------------------------------------------------------------------------------------- bad input


def test_a_file_with_no_georeference_is_refused(tmp_path):
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(path)
    with pytest.raises(DataError, match="no georeference"):
        ImagerySet(path)


def test_a_crs_that_cannot_be_reprojected_is_refused(tmp_path):
    import rasterio
    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    local = CRS.from_wkt('LOCAL_CS["site grid",LOCAL_DATUM["local",0],UNIT["metre",1],AXIS["X",EAST],'
                         'AXIS["Y",NORTH]]')
    path = tmp_path / "local.tif"
    with rasterio.open(path, "w", driver="GTiff", width=32, height=32, count=3, dtype="uint8", crs=local,
                       transform=from_origin(0, 32, 1, 1)) as ds:
        ds.write(np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(DataError, match="cannot be reprojected"):
        ImagerySet(path)


def test_a_region_that_misses_the_scene_is_refused(tmp_path):
    crop = sentinel_crop(tmp_path / "crop.tif", 0, 0, 64)
    with ImagerySet(crop) as im:
        with pytest.raises(ConfigError, match="does not overlap the imagery"):
            region_in_imagery(im, Bounds(9.0, 47.0, 9.1, 47.1))
        inside = region_in_imagery(im, Bounds(-80.0, 30.0, -70.0, 40.0))
        assert inside.as_list() == pytest.approx(im.bounds.as_list())


@pytest.mark.parametrize("count", [1, 16])
def test_one_band_or_sixteen_bands_need_a_band_mapping(tmp_path, count):
    from rasterio.transform import from_origin

    path = halves(tmp_path / f"b{count}.tif", "EPSG:32618", from_origin(400000, 4180000, 1, 1), size=64,
                  dtype="uint16", count=count)
    with pytest.raises(ConfigError, match=f"has {count} band.*--bands R,G,B"):
        ImagerySet(path)
    with ImagerySet(path, "1,1,1") as im:  # greyscale once mapped
        v = im.view(*_centre(im.scenes[0]), 40.0, 16)
        assert v.valid.all() and (v.rgb[..., 0] == v.rgb[..., 1]).all()
    with pytest.raises(ConfigError, match="no band 17"):
        ImagerySet(path, "17,2,1")


@pytest.mark.parametrize("text", ["1,2", "a,b,c", "0,1,2"])
def test_bad_band_lists_are_refused(text):
    with pytest.raises(ConfigError, match="--bands"):
        parse_bands(text)


def test_a_truncated_tiff_is_refused(tmp_path):
    path = sentinel_crop(tmp_path / "cut.tif", 100, 100, 256, tiled=True, blockxsize=64, blockysize=64)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(DataError, match="cannot decode the imagery|cannot open the imagery"):
        ImagerySet(path)


def test_an_mbtiles_without_metadata_is_refused_and_one_with_it_is_read(tmp_path):
    from bundle.mbtiles_writer import MBTilesWriter, encode_tile
    from mobile_app import mercator

    bad = tmp_path / "bare.mbtiles"
    with sqlite3.connect(bad) as conn:
        conn.execute("CREATE TABLE tiles (zoom_level integer, tile_column integer, tile_row integer, "
                     "tile_data blob)")
    with pytest.raises(DataError, match="no metadata table"):
        ImagerySet(bad)

    good = tmp_path / "good.mbtiles"
    bounds = mercator.Bounds(west=-75.62, south=37.68, east=-75.60, north=37.70)
    level = 15
    cols, rows = mercator.tile_range(bounds, level, 0.0)
    with MBTilesWriter(good, name="t", fmt="png", bounds=bounds, center=bounds.center, center_level=level,
                       minzoom=level, maxzoom=level) as w:
        for r in rows:
            for c in cols:
                w.add(level, c, r, encode_tile(np.full((256, 256, 3), (40, 160, 60), np.uint8), "png"))
    with ImagerySet(good) as im:
        assert im.gsd_m == pytest.approx(mercator.ground_resolution(37.69, level), rel=0.05)
        v = im.view(37.69, -75.61, 300.0, 16)
        assert v.valid.all() and tuple(v.rgb[8, 8]) == pytest.approx((40, 160, 60), abs=2)


def test_missing_and_empty_imagery_paths_are_refused(tmp_path):
    with pytest.raises(DataError, match="imagery not found"):
        scene_files(tmp_path / "nope.tif")
    with pytest.raises(DataError, match="holds no imagery"):
        scene_files(tmp_path)
    (tmp_path / "junk.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(DataError, match="cannot open the imagery"):
        open_scene(tmp_path / "junk.tif")


def test_the_app_reads_no_data_pixels_as_a_place_it_cannot_hear(tmp_path):
    """A bundle map tile with transparent (no-data) pixels: a view that touches them is a PlaceError; a view inside
    the opaque part is read."""
    from bundle.mbtiles_writer import MBTilesWriter, encode_tile
    from mobile_app import mercator
    from mobile_app.errors import PlaceError
    from mobile_app.mbtiles import MBTiles

    level, lat, lon = 14, 37.69, -75.61
    x, y = mercator.lonlat_to_pixel(lon, lat, level)
    col, row = int(x // 256), int(y // 256)
    rgba = np.full((256, 256, 4), 255, np.uint8)
    rgba[:, :128, 3] = 0  # the west half has no imagery
    bounds = mercator.Bounds(west=lon - 0.01, south=lat - 0.01, east=lon + 0.01, north=lat + 0.01)
    path = tmp_path / "half.mbtiles"
    with MBTilesWriter(path, name="t", fmt="png", bounds=bounds, center=bounds.center, center_level=level,
                       minzoom=level, maxzoom=level) as w:
        w.add(level, col, row, encode_tile(rgba, "png"))
    res = mercator.ground_resolution(lat, level)
    west_lon, _ = mercator.pixel_to_lonlat(col * 256 + 64, row * 256 + 128, level)
    east_lon, mid_lat = mercator.pixel_to_lonlat(col * 256 + 192, row * 256 + 128, level)
    with MBTiles(path) as mb:
        assert mb.read_view(east_lon, mid_lat, 40 * res, level).shape == (40, 40, 3)
        with pytest.raises(PlaceError, match="no data"):
            mb.read_view(west_lon, mid_lat, 40 * res, level)
