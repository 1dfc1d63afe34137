"""Web-mercator geometry, the MBTiles writer/reader, and the model's view cut from stitched tiles.

A synthetic pyramid whose pixels encode their own global coordinates makes the stitching exact to check; the
world renderer then checks that a view read from the map is the ground training tiles show at that place.
"""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pytest

from bundle.map_tiles import ground_for_zooms, plan_map, render_mercator_tile, write_region_mbtiles
from bundle.mbtiles_writer import MBTilesWriter, encode_tile
from mobile_app import mercator
from mobile_app.errors import BundleError, PlaceError
from mobile_app.mbtiles import MBTiles

BOUNDS = mercator.Bounds(9.165, 47.660, 9.185, 47.672)


# ------------------------------------------------------------------------------------------------- geometry


def test_mercator_known_values_and_round_trip():
    assert mercator.lonlat_to_pixel(0.0, 0.0, 0) == pytest.approx((128.0, 128.0))
    assert mercator.lonlat_to_pixel(-180.0, mercator.MAX_LAT, 1) == pytest.approx((0.0, 0.0), abs=1e-6)
    # equator, level 0: 40 075 km over 256 px
    assert mercator.ground_resolution(0.0, 0) == pytest.approx(156543.0339, rel=1e-9)
    assert mercator.ground_resolution(60.0, 3) == pytest.approx(156543.0339 / 2 / 8, rel=1e-9)
    for lon, lat, lv in ((9.175, 47.666, 15), (-93.5, 42.0, 12), (151.2, -33.9, 18)):
        x, y = mercator.lonlat_to_pixel(lon, lat, lv)
        assert mercator.pixel_to_lonlat(x, y, lv) == pytest.approx((lon, lat), abs=1e-9)
    # TMS rows count from the south
    assert mercator.tms_row(1, 0) == 1 and mercator.tms_row(3, 7) == 0
    tb = mercator.tile_bounds(1, 0, 0)
    assert (tb.west, tb.east, tb.south) == pytest.approx((-180.0, 0.0, 0.0), abs=1e-9)


def test_level_for_resolution_never_enlarges():
    for m_per_px, lat in ((2.8125, 47.6), (5.625, 0.0), (14.06, 60.0), (0.3, 10.0)):
        lv = mercator.level_for_resolution(m_per_px, lat)
        assert mercator.ground_resolution(lat, lv) <= m_per_px * (1 + 1e-9)
        assert lv == 0 or mercator.ground_resolution(lat, lv - 1) > m_per_px
    assert mercator.level_for_resolution(2.8125, 47.6) == 16  # the default model's zoom 1 (180 m at 64 px)
    with pytest.raises(ValueError):
        mercator.level_for_resolution(0.0, 10.0)


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "10,0,5,1", "0,80,1,89", "0,0,200,1", "nan,0,1,1"])
def test_bad_regions_are_refused_with_the_reason(text):
    with pytest.raises(ValueError, match="region"):
        mercator.parse_bounds(text)


def test_plan_covers_every_view_of_every_place_in_the_region():
    plan = plan_map(BOUNDS, ground_for_zooms(900.0, {1: 0.2, 3: 0.6, 5: 1.0}), 32, overview_levels=2,
                    context_tiles=0)
    assert [plan.views[z]["ground_m"] for z in (1, 3, 5)] == [180.0, 540.0, 900.0]
    assert plan.minzoom == min(v["level"] for v in plan.views.values()) - 2
    for z, v in plan.views.items():
        cols, rows = plan.levels[int(v["level"])]
        for lon in (BOUNDS.west, BOUNDS.east):
            for lat in (BOUNDS.south, BOUNDS.north):  # corners: half a view sticks out of the region
                half = v["ground_m"] / 2 / mercator.ground_resolution(lat, int(v["level"]))
                x, y = mercator.lonlat_to_pixel(lon, lat, int(v["level"]))
                assert cols.start * 256 <= x - half and x + half < cols.stop * 256, z
                assert rows.start * 256 <= y - half and y + half < rows.stop * 256, z


# ------------------------------------------------------------------------------------------------- MBTiles


def _coordinate_tile(level: int, col: int, row: int) -> np.ndarray:
    """A tile whose pixels hold their global pixel coordinates (mod 256 in R/G, the tile index mix in B)."""
    t = mercator.TILE_PX
    gy, gx = np.mgrid[row * t:(row + 1) * t, col * t:(col + 1) * t]
    return np.stack([gx % 256, gy % 256, (gx // 256 + 7 * (gy // 256)) % 256], axis=-1).astype(np.uint8)


@pytest.fixture(scope="module")
def coord_map(tmp_path_factory):
    path = tmp_path_factory.mktemp("mb") / "coords.mbtiles"
    level = 15
    cols, rows = mercator.tile_range(BOUNDS, level, pad_m=200)
    with MBTilesWriter(path, name="coords", fmt="png", bounds=BOUNDS, center_level=level, minzoom=level,
                       maxzoom=level) as w:
        for r in rows:
            for c in cols:
                w.add(level, c, r, encode_tile(_coordinate_tile(level, c, r), "png"))
    return path, level


def test_writer_follows_the_spec(coord_map):
    path, level = coord_map
    conn = sqlite3.connect(path)
    meta = dict(conn.execute("SELECT name, value FROM metadata"))
    assert meta["format"] == "png" and meta["minzoom"] == meta["maxzoom"] == str(level)
    assert [float(v) for v in meta["bounds"].split(",")] == pytest.approx(BOUNDS.as_list())
    lon, lat, lv = meta["center"].split(",")
    assert (float(lon), float(lat), int(lv)) == pytest.approx((*BOUNDS.center, level))
    # stored rows are TMS: the XYZ row r of the tile under the region's centre is stored as 2**z - 1 - r
    x, y = mercator.lonlat_to_pixel(*BOUNDS.center, level)
    col, row = int(x // 256), int(y // 256)
    n = conn.execute("SELECT count(*) FROM tiles WHERE zoom_level=? AND tile_column=? AND tile_row=?",
                     (level, col, (1 << level) - 1 - row)).fetchone()[0]
    assert n == 1
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "tile_index" in indexes
    conn.close()


def test_read_view_stitches_tiles_exactly(coord_map):
    path, level = coord_map
    with MBTiles(path) as mb:
        assert mb.levels == (level,) and mb.info.format == "png"
        # a place right on a tile corner, so the view takes pixels from four tiles
        x0, y0 = mercator.lonlat_to_pixel(*BOUNDS.center, level)
        cx, cy = (math.floor(x0 / 256) + 1) * 256.0, (math.floor(y0 / 256) + 1) * 256.0
        lon, lat = mercator.pixel_to_lonlat(cx, cy, level)
        ground = 180.0
        view = mb.read_view(lon, lat, ground, level)
        side = round(ground / mercator.ground_resolution(lat, level))
        assert view.shape == (side, side, 3)
        gy, gx = np.mgrid[0:side, 0:side]
        left, top = math.floor(cx - side / 2 + 0.5), math.floor(cy - side / 2 + 0.5)
        assert np.array_equal(view[..., 0], ((gx + left) % 256).astype(np.uint8))
        assert np.array_equal(view[..., 1], ((gy + top) % 256).astype(np.uint8))
        assert len(np.unique(view[..., 2])) == 4  # four tiles contributed
        with pytest.raises(PlaceError, match="no imagery tile"):
            mb.read_view(BOUNDS.east + 0.05, lat, ground, level)  # beyond the rendered tiles


def _broken_copy(src, dst, sql: str, args=()):
    dst.write_bytes(src.read_bytes())
    conn = sqlite3.connect(dst)
    conn.execute(sql, args)
    conn.commit()
    conn.close()
    return dst


@pytest.mark.parametrize("key", ["center", "bounds", "format", "minzoom"])
def test_map_without_required_metadata_is_refused(coord_map, tmp_path, key):
    path = _broken_copy(coord_map[0], tmp_path / "m.mbtiles", "DELETE FROM metadata WHERE name = ?", (key,))
    with pytest.raises(BundleError, match=key):
        MBTiles(path)


def test_bad_map_files_are_refused(coord_map, tmp_path):
    with pytest.raises(BundleError, match="missing"):
        MBTiles(tmp_path / "none.mbtiles")
    (tmp_path / "x.mbtiles").write_bytes(b"not a database at all" * 10)
    with pytest.raises(BundleError, match="not an MBTiles"):
        MBTiles(tmp_path / "x.mbtiles")
    vec = _broken_copy(coord_map[0], tmp_path / "v.mbtiles", "UPDATE metadata SET value='pbf' WHERE name='format'")
    with pytest.raises(BundleError, match="raster jpg or png"):
        MBTiles(vec)
    conn = sqlite3.connect(tmp_path / "empty.mbtiles")
    conn.execute("CREATE TABLE other (a)")
    conn.close()
    with pytest.raises(BundleError, match="needs tables metadata and tiles"):
        MBTiles(tmp_path / "empty.mbtiles")


def test_damaged_tile_is_a_clear_place_error(coord_map, tmp_path):
    path = _broken_copy(coord_map[0], tmp_path / "d.mbtiles", "UPDATE tiles SET tile_data = ?", (b"\x89PNG garbage",))
    with MBTiles(path) as mb, pytest.raises(PlaceError, match="damaged"):
        mb.read_view(*BOUNDS.center, 100.0, coord_map[1])


def test_writer_refuses_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="format"):
        MBTilesWriter(tmp_path / "a.mbtiles", name="a", fmt="webp", bounds=BOUNDS, center_level=1, minzoom=1,
                      maxzoom=2)
    with pytest.raises(ValueError, match="minzoom"):
        MBTilesWriter(tmp_path / "b.mbtiles", name="b", fmt="jpg", bounds=BOUNDS, center_level=1, minzoom=5,
                      maxzoom=2)


# ------------------------------------------------------------------------------------------------- world imagery


def test_view_from_the_map_is_the_ground_training_saw(tmp_path):
    """The map is drawn by the world renderer tile by tile; a view cut from it (across tile seams, JPEG) matches
    the renderer's own tile of that ground, as training saw it, up to compression."""
    from bundle.map_tiles import world_renderer
    from world.tiles import render_tile

    bounds = mercator.Bounds(9.174, 47.665, 9.176, 47.667)
    plan = plan_map(bounds, {1: 180.0}, 32, overview_levels=0, context_tiles=0)
    path = tmp_path / "w.mbtiles"
    n = write_region_mbtiles(path, plan, world_renderer(0), progress=False)
    assert n == plan.n_tiles and n <= 4
    level = int(plan.views[1]["level"])
    with MBTiles(path) as mb:
        lon, lat = bounds.center
        view = mb.read_view(lon, lat, 180.0, level)
    def blocks(img: np.ndarray, k: int = 8) -> np.ndarray:  # 8x8 block means: fine texture differs by phase
        n = img.shape[0] // k * k
        return img[:n, :n].astype(np.float32).reshape(n // k, k, n // k, k, 3).mean(axis=(1, 3))

    ref = render_tile(lat, lon, px=view.shape[0], ground_m=180.0, seed=0).rgb
    err = np.abs(blocks(view) - blocks(ref)).mean()
    assert err < 4.0, err  # JPEG q88 and sub-pixel phase only
    shifted = render_tile(lat + 0.0002, lon, px=view.shape[0], ground_m=180.0, seed=0).rgb  # 22 m north
    assert np.abs(blocks(view) - blocks(shifted)).mean() > 2.5 * err
    tile = render_mercator_tile(world_renderer(0), level, *[int(v // 256) for v in
                                                              mercator.lonlat_to_pixel(lon, lat, level)])
    assert tile.shape == (256, 256, 3) and tile.dtype == np.uint8
