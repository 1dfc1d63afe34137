"""`sat2sound bundle`: building from a real (tiny, untrained) checkpoint's export and gallery, atomic writes, the
fingerprint gate, and `--verify` catching every kind of damage."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from bundle.build import build_bundle, read_export
from bundle.demo import TEST_BUNDLE_OPTIONS, TEST_REGION, build_demo
from core.cli import main as cli_main
from mobile_app import mercator
from mobile_app.bundle import load_bundle, sha256_file, verify_report
from mobile_app.errors import BundleError
from mobile_app.mbtiles import MBTiles

SMALL_REGION = "9.170,47.664,9.176,47.668"  # a few hundred metres: a quick map for the CLI tests
QUICK = {"overview_levels": 0, "context_tiles": 0}


@pytest.fixture(scope="session")
def demo(request, tmp_path_factory) -> dict[str, Path]:
    return demo_folders(request, tmp_path_factory)


def demo_folders(request, tmp_path_factory) -> dict[str, Path]:
    """checkpoint -> export -> gallery -> bundle of an untrained tiny model, shared by the mobile test files.

    Built once and kept in pytest's cache under a key of every source file and library it depends on, so a rerun
    with nothing changed skips the minute of ONNX export; any change rebuilds it. SAT2SOUND_TEST_DEMO_DIR names a
    folder to use instead; without pytest's cache it goes to the session's temp folder.
    """
    from bundle.demo import source_fingerprint

    base = os.environ.get("SAT2SOUND_TEST_DEMO_DIR")
    if not base and request.config.cache is not None:
        name = f"sat2sound-mobile-demo-{source_fingerprint()[:16]}"
        base = request.config.cache.mkdir(name)
        for old in base.parent.glob("sat2sound-mobile-demo-*"):  # demos of older sources are never used again
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)
    base = Path(base or tmp_path_factory.getbasetemp() / "mobile-demo")
    return build_demo(base, region=TEST_REGION, force=False, export_via_cli=False, **TEST_BUNDLE_OPTIONS)


@pytest.fixture(scope="module")
def other_gallery(tmp_path_factory) -> Path:
    """A gallery embedded by a different (also real) model: same captions, another checkpoint."""
    import torch

    from core.checkpoint import save_checkpoint
    from core.config import get_preset
    from core.model import build_model
    from gallery.build import build_gallery
    from gallery.captions import read_captions
    from gallery.embedder import TeacherEmbedder
    from gallery.renderers import ProceduralRenderer

    root = tmp_path_factory.mktemp("other")
    torch.manual_seed(123)
    cfg = get_preset("tiny")
    save_checkpoint(build_model(cfg).eval(), cfg, root / "ckpt")
    (root / "captions.txt").write_text("birds in the forest\ntraffic on a road\nwaves on the shore\n")
    emb = TeacherEmbedder(root / "ckpt", threads=1)
    build_gallery(read_captions(root / "captions.txt"), root / "gallery", emb,
                  ProceduralRenderer(seconds=1.0, sample_rate=emb.sample_rate), progress=False)
    return root / "gallery"


def rehash(bundle: Path) -> None:
    """Rewrite the manifest's hashes to match the files (simulates a bundle whose parts were swapped consistently)."""
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    for rel in manifest["files"]:
        f = bundle / rel
        manifest["files"][rel] = {"sha256": sha256_file(f), "bytes": f.stat().st_size}
    path.write_text(json.dumps(manifest, indent=2))


def copy_bundle(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------------------------------- building


def test_demo_bundle_is_complete_and_consistent(demo, capsys):
    bundle = demo["bundle"]
    assert cli_main(["bundle", "--verify", str(bundle)]) == 0
    out = capsys.readouterr().out
    assert "VERDICT: OK" in out and "FAIL" not in out
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["kind"] == "sat2sound-bundle" and manifest["schema_version"] == 1
    assert set(manifest["versions"]) >= {"sat2sound", "bundle_schema", "gallery_schema", "mbtiles"}
    # every file is listed with its hash; nothing else is in the folder
    listed = set(manifest["files"])
    on_disk = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()} - {"manifest.json"}
    assert listed == on_disk
    for rel, entry in manifest["files"].items():
        assert sha256_file(bundle / rel) == entry["sha256"] and (bundle / rel).stat().st_size == entry["bytes"]
    # model and gallery come from the same checkpoint
    ckpt_fp = json.loads((demo["checkpoint"] / "manifest.json").read_text())["fingerprint"]
    assert manifest["model"]["fingerprint"] == manifest["model"]["space_fingerprint"] == ckpt_fp
    assert manifest["gallery"]["fingerprint"] == ckpt_fp and manifest["gallery"]["count"] == 16
    assert manifest["model"]["variant"] == "int8" and ({"ort", "onnx"} & set(manifest["model"]["files"]))
    # views: 180/540/900 m at levels whose pixels are no larger than the model's (32 px views of the tiny preset)
    b = load_bundle(bundle)
    lat = min(abs(b.region.south), abs(b.region.north))
    assert [b.views[z].ground_m for z in (1, 3, 5)] == [180.0, 540.0, 900.0]
    for v in b.views.values():
        assert mercator.ground_resolution(lat, v.level) <= v.ground_m / 32
        assert mercator.ground_resolution(lat, v.level - 1) > v.ground_m / 32
    with MBTiles(b.map_path) as mb:
        info = mb.info
        assert info.format == "jpg" and info.minzoom == min(v.level for v in b.views.values()) - 1
        assert info.maxzoom == max(v.level for v in b.views.values())
        assert set(mb.levels) == set(range(info.minzoom, info.maxzoom + 1))
        assert info.bounds.as_list() == pytest.approx(mercator.parse_bounds(TEST_REGION).as_list())
        assert b.region.contains(info.center[0], info.center[1])
    assert len(b.tour) >= 3 and all(b.region.contains(p["lon"], p["lat"]) for p in b.tour)


def test_cli_build_refuses_to_overwrite_without_force(demo, tmp_path, capsys):
    out = tmp_path / "b"
    args = ["bundle", "--export", str(demo["export"]), "--gallery", str(demo["gallery"]), "--region", SMALL_REGION,
            "--out", str(out), "--overview-levels", "0", "--context-tiles", "0", "--no-progress"]
    assert cli_main(args) == 0
    assert "map tiles" in capsys.readouterr().out
    (out / "left-from-before.txt").write_text("stale")  # a file the old bundle had and a rebuild does not write
    assert cli_main(args) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert (out / "left-from-before.txt").exists()  # refused: nothing touched
    assert cli_main([*args, "--force"]) == 0
    assert not (out / "left-from-before.txt").exists()  # replaced as a whole folder, not written over
    assert verify_report(out)[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no temp or old folders left behind


def test_failed_build_leaves_nothing_behind(demo, tmp_path):
    calls = {"n": 0}

    def flaky(lat, lon, px, ground_m):
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("renderer crashed")
        import numpy as np

        return np.full((px, px, 3), 90, dtype=np.uint8)

    with pytest.raises(RuntimeError, match="renderer crashed"):
        build_bundle(demo["export"], demo["gallery"], SMALL_REGION, tmp_path / "b", renderer=flaky, progress=False,
                     **QUICK)
    assert list(tmp_path.iterdir()) == []
    # and a failed rebuild over an existing bundle keeps the old one intact
    good = build_bundle(demo["export"], demo["gallery"], SMALL_REGION, tmp_path / "b", progress=False, **QUICK)
    before = (good.out / "manifest.json").read_text()
    calls["n"] = 0
    with pytest.raises(RuntimeError):
        build_bundle(demo["export"], demo["gallery"], SMALL_REGION, tmp_path / "b", renderer=flaky, force=True,
                     progress=False, **QUICK)
    assert (tmp_path / "b" / "manifest.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_model_and_gallery_of_different_models_are_refused(demo, other_gallery, tmp_path):
    with pytest.raises(BundleError, match="fingerprint mismatch"):
        build_bundle(demo["export"], other_gallery, SMALL_REGION, tmp_path / "b", progress=False, **QUICK)
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("region, message", [
    ("9.1,47.6", "4 numbers"), ("9.2,47.6,9.1,47.7", "LON0 < LON1"), ("9.1,88,9.2,89", "web-mercator"),
    ("8.0,47.0,10.0,48.5", "map tiles"),
])
def test_bad_regions_are_refused(demo, tmp_path, capsys, region, message):
    assert cli_main(["bundle", "--export", str(demo["export"]), "--gallery", str(demo["gallery"]), "--region",
                     region, "--out", str(tmp_path / "b"), "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_bad_model_folders_are_refused(demo, tmp_path, capsys):
    with pytest.raises(BundleError, match="does not exist"):
        read_export(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="manifest.json is missing"):
        read_export(tmp_path / "empty")
    noimg = copy_bundle(demo["export"], tmp_path / "noimg")
    manifest = json.loads((noimg / "manifest.json").read_text())
    manifest["files"] = [e for e in (manifest["files"] if isinstance(manifest["files"], list)
                                     else [{"file": k, **v} for k, v in manifest["files"].items()])
                         if e.get("tower", "image") != "image"]
    (noimg / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="no image tower"):
        read_export(noimg)
    assert cli_main(["bundle", "--export", str(demo["export"])]) == 2
    assert "needs --gallery, --region, --out" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------- verifying


def _verify(bundle: Path, capsys) -> str:
    code = cli_main(["bundle", "--verify", str(bundle)])
    out = capsys.readouterr().out
    assert code == 2 and "VERDICT: BROKEN" in out
    return out


def test_verify_catches_a_changed_byte(demo, tmp_path, capsys):
    bundle = copy_bundle(demo["bundle"], tmp_path / "b")
    mb = bundle / "map" / "region.mbtiles"
    data = bytearray(mb.read_bytes())
    data[len(data) // 2] ^= 0xFF
    mb.write_bytes(bytes(data))
    out = _verify(bundle, capsys)
    assert "map/region.mbtiles does not match its SHA-256" in out
    with pytest.raises(BundleError, match="does not match its SHA-256"):
        load_bundle(bundle)


def test_verify_catches_a_missing_file(demo, tmp_path, capsys):
    bundle = copy_bundle(demo["bundle"], tmp_path / "b")
    (bundle / "gallery" / "gallery.db").unlink()
    assert "file gallery/gallery.db is missing" in _verify(bundle, capsys)
    with pytest.raises(BundleError, match="missing"):
        load_bundle(bundle)


def test_verify_catches_a_gallery_of_another_model(demo, other_gallery, tmp_path, capsys):
    bundle = copy_bundle(demo["bundle"], tmp_path / "b")
    for f in other_gallery.iterdir():
        shutil.copy2(f, bundle / "gallery" / f.name)
    rehash(bundle)  # every hash matches: only the fingerprints tell the parts apart
    out = _verify(bundle, capsys)
    assert "model/gallery fingerprint mismatch" in out and "hashes: all" in out
    with pytest.raises(BundleError, match="fingerprint mismatch"):
        load_bundle(bundle)


def test_hash_cache_skips_unchanged_files_but_not_changed_ones(demo, tmp_path):
    import os
    import time

    from mobile_app.bundle import HashCache

    bundle = copy_bundle(demo["bundle"], tmp_path / "b")
    cache_file = tmp_path / "hashes.json"
    load_bundle(bundle, hash_cache=cache_file)
    entries = json.loads(cache_file.read_text())
    assert len(entries) == len(json.loads((bundle / "manifest.json").read_text())["files"])
    cache = HashCache(cache_file)
    db = bundle / "gallery" / "gallery.db"
    calls = []
    import mobile_app.bundle as mb

    real = mb.sha256_file
    mb.sha256_file = lambda p, *a: calls.append(p) or real(p, *a)
    try:
        assert cache.digest(db) == entries[str(db.resolve())][2] and calls == []  # unchanged: no re-hash
        data = bytearray(db.read_bytes())
        data[200] ^= 1  # same size, new content, new mtime
        db.write_bytes(bytes(data))
        os.utime(db, ns=(time.time_ns(), time.time_ns() + 10**9))
        assert cache.digest(db) != entries[str(db.resolve())][2] and calls == [db]
    finally:
        mb.sha256_file = real
    with pytest.raises(BundleError, match="gallery/gallery.db does not match its SHA-256"):
        load_bundle(bundle, hash_cache=cache_file)


def test_verify_catches_broken_manifests_and_maps(demo, tmp_path, capsys):
    bundle = copy_bundle(demo["bundle"], tmp_path / "b")
    (bundle / "manifest.json").write_text("{ not json")
    assert "FAIL manifest" in _verify(bundle, capsys)
    shutil.rmtree(bundle)
    bundle = copy_bundle(demo["bundle"], tmp_path / "b")
    conn = sqlite3.connect(bundle / "map" / "region.mbtiles")
    conn.execute("DELETE FROM metadata WHERE name = 'center'")
    conn.commit()
    conn.close()
    rehash(bundle)
    assert "lacks required MBTiles metadata: center" in _verify(bundle, capsys)
    assert cli_main(["bundle", "--verify", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().out
