"""Real imagery through the commands: `map --imagery`, `gallery query --image`, `bundle --imagery`, and the app on
a bundle drawn from a Sentinel-2 crop (no-data views are never played)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import test_bundle_build
from imagery_fixtures import sentinel_crop
from PIL import Image

from core.cli import main


@pytest.fixture(scope="session")
def demo(request, tmp_path_factory):
    """The tiny checkpoint -> export -> gallery -> bundle that test_bundle_build.py builds (cached)."""
    return test_bundle_build.demo_folders(request, tmp_path_factory)


@pytest.fixture(scope="module")
def crop(tmp_path_factory):
    """1.5 km of the Sentinel-2 scene (cropland and marsh west of the lagoon), uint16, UTM 18N, cut at test time."""
    return sentinel_crop(tmp_path_factory.mktemp("s2") / "crop.tif", 500, 700, 150)


def _bounds(path):
    from imagery.tiles import ImagerySet

    with ImagerySet(path) as im:
        return im.bounds


def test_map_over_a_real_scene_writes_the_same_outputs(demo, crop, tmp_path):
    out = tmp_path / "maps"
    assert main(["map", "--ckpt", str(demo["checkpoint"]), "--imagery", str(crop), "--cols", "4", "--query",
                 "sounds of farm machinery", "--out", str(out), "--no-progress"]) == 0
    (png,) = out.glob("map-sounds-of-farm-machinery-z1-imagery-*.png")
    assert png.stat().st_size > 10_000
    z = np.load(png.with_suffix(".npz"))
    assert z["scores"].shape == z["valid"].shape and z["valid"].min() >= 0
    assert np.isfinite(z["scores"]).all()
    (summary,) = out.glob("summary-z1-imagery-*.json")
    s = json.loads(summary.read_text())
    assert s["imagery"]["scenes"][0]["stretch"]["kind"] == "percentile"
    assert s["gsd_given_m"] == pytest.approx(10.0, rel=0.01)  # the file's GSD, not the preset's 0.6
    assert 0 < s["tiles_in_imagery"] <= s["tiles"]


def test_map_refuses_a_bbox_that_misses_the_scene_and_a_map_with_no_region(demo, crop, tmp_path, capsys):
    args = ["map", "--ckpt", str(demo["checkpoint"]), "--query", "x", "--out", str(tmp_path), "--no-progress"]
    assert main([*args, "--imagery", str(crop), "--bbox", "9,47,9.1,47.1"]) == 2
    assert "does not overlap the imagery" in capsys.readouterr().err
    assert main(args) == 2
    assert "--bbox" in capsys.readouterr().err


def test_gallery_query_by_a_real_image(demo, crop, tmp_path, capsys):
    gallery = str(demo["gallery"])
    ckpt = ["--ckpt", str(demo["checkpoint"])]  # the demo gallery does not record its model's folder
    b = _bounds(crop)
    at = f"--at={(b.south + b.north) / 2},{(b.west + b.east) / 2}"
    assert main(["gallery", "query", gallery, *ckpt, "--image", str(crop), at, "--k", "3", "--json"]) == 0
    captured = capsys.readouterr()
    hits = json.loads(captured.out)
    assert len(hits) == 3 and hits[0]["score"] >= hits[-1]["score"]
    assert "georeferenced" in captured.err and "GSD 10.0" in captured.err
    # a plain picture needs its GSD; then it is one tile
    pic = tmp_path / "tile.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(pic)
    assert main(["gallery", "query", gallery, *ckpt, "--image", str(pic), "--k", "2"]) == 2
    assert "no georeference" in capsys.readouterr().err
    assert main(["gallery", "query", gallery, *ckpt, "--image", str(pic), "--gsd", "1.0", "--k", "2", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    # a place outside the scene, and --image with --text
    assert main(["gallery", "query", gallery, *ckpt, "--image", str(crop), "--at=10,10", "--k", "2"]) == 2
    assert "outside the image" in capsys.readouterr().err
    assert main(["gallery", "query", gallery, *ckpt, "--image", str(crop), "--text", "x"]) == 2
    assert main(["gallery", "query", gallery, *ckpt, "--gsd", "2", "--text", "x"]) == 2


@pytest.fixture(scope="module")
def imagery_bundle(demo, crop, tmp_path_factory):
    out = tmp_path_factory.mktemp("imagery-bundle") / "bundle"
    b = _bounds(crop)
    region = f"--region={b.west - 0.05},{b.south - 0.05},{b.east + 0.05},{b.north + 0.05}"  # wider: clipped
    assert main(["bundle", "--export", str(demo["export"]), "--gallery", str(demo["gallery"]), region, "--imagery",
                 str(crop), "--out", str(out), "--overview-levels", "1", "--context-tiles", "1",
                 "--no-progress"]) == 0
    return out


def test_bundle_from_real_imagery_records_it_and_marks_no_data(imagery_bundle, crop):
    from mobile_app.mbtiles import MBTiles

    m = json.loads((imagery_bundle / "manifest.json").read_text())
    b = _bounds(crop)
    assert m["region"]["bounds"] == pytest.approx(b.as_list())  # the region clipped to the imagery
    assert m["model"]["gsd_m"] == pytest.approx(10.0, rel=0.01)
    assert m["imagery"]["scenes"][0]["stretch"]["kind"] == "percentile" and m["map"]["format"] == "png"
    assert main(["bundle", "--verify", str(imagery_bundle)]) == 0
    with MBTiles(imagery_bundle / m["map"]["file"]) as mb:
        alphas = []
        for level in mb.levels:
            rows = mb._conn().execute("SELECT tile_column, tile_row FROM tiles WHERE zoom_level=?", (level,))
            for col, row_tms in rows:
                rgb, alpha = mb.tile_rgba(level, col, (1 << level) - 1 - row_tms)
                alphas.append(alpha)
    assert all(a is not None for a in alphas)
    alpha = np.concatenate([a.ravel() for a in alphas])
    assert set(np.unique(alpha)) <= {0, 255} and (alpha == 0).any() and (alpha == 255).mean() > 0.1


def test_the_engine_plays_inside_the_imagery_and_never_at_its_edge(imagery_bundle, crop):
    from mobile_app.engine import Soundscape
    from mobile_app.errors import PlaceError

    b = _bounds(crop)
    with Soundscape.open(imagery_bundle) as s:
        answer = s.listen((b.west + b.east) / 2, (b.south + b.north) / 2, zoom=1)
        assert answer.hits and answer.view.std() > 3  # real texture seen
        with pytest.raises(PlaceError, match="no data|no imagery"):
            s.listen((b.west + b.east) / 2, b.south + 0.0002, zoom=1)  # 20 m inside: the 180 m view spills out
    with pytest.raises(PlaceError, match="outside this bundle's region"):
        Soundscape.open(imagery_bundle).listen(b.east + 0.01, b.north, zoom=1)
