"""The LiteRT runtime (``--runtime tflite``): a bundle carrying the exporter's int8 TFLite tower next to the
ORT one; the app on LiteRT plays the top hit computed here with the LiteRT interpreter directly, and both runtimes
see the place the same way. Slow (the TFLite conversion takes tens of seconds), so it has its own file."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import test_bundle_build
from test_bundle_build import rehash
from test_mobile_app import CLOCK, PLACE, caption_of, run_app

from bundle.build import build_bundle
from bundle.demo import TEST_REGION, _export_direct
from mobile_app.engine import Soundscape
from mobile_app.errors import BundleError
from mobile_app.place import When

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def demo(request, tmp_path_factory) -> dict[str, Path]:
    """The demo bundle test_bundle_build.py builds (once per source change; reused from pytest's cache)."""
    return test_bundle_build.demo_folders(request, tmp_path_factory)


@pytest.fixture(scope="module")
def litert_bundle(demo, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("litert")
    export = demo["bundle"].parent / "export-tflite"  # cached beside the demo, like it
    if not (export / "manifest.json").is_file():
        _export_direct(demo["checkpoint"], export, ort_format=True, tflite=True)
    build_bundle(export, demo["gallery"], TEST_REGION, root / "bundle", progress=False, overview_levels=0,
                 context_tiles=0)
    return root / "bundle"


def test_bundle_ships_both_runtimes_and_they_agree(litert_bundle):
    manifest = json.loads((litert_bundle / "manifest.json").read_text())
    files = manifest["model"]["files"]
    assert files["ort"].endswith("image.int8.ort") and files["tflite"].endswith("image.int8.tflite")
    assert manifest["model"]["variant"] == "int8"
    when = When(6, 7)
    with Soundscape.open(litert_bundle, runtime="onnx", threads=1) as ort_s, \
            Soundscape.open(litert_bundle, runtime="tflite", threads=1) as lite_s:
        assert lite_s.tower.name == "litert" and ort_s.tower.name == "onnxruntime"
        cosines = []
        for zoom in (1, 3, 5):
            a = ort_s.listen(PLACE[1], PLACE[0], zoom, audio_source="aporee", when=when)
            b = lite_s.listen(PLACE[1], PLACE[0], zoom, audio_source="aporee", when=when)
            assert np.array_equal(a.view, b.view)
            cosines.append(float(a.embedding @ b.embedding / np.linalg.norm(a.embedding) / np.linalg.norm(b.embedding)))
        # two different int8 schemes (ORT dynamic 7-bit vs ai-edge-quantizer per-channel) of one float model
        assert min(cosines) > 0.97, cosines


def test_app_on_litert_plays_the_top_hit(litert_bundle, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    r = run_app(litert_bundle, [{"do": "tap", "lat": PLACE[0], "lon": PLACE[1]}, {"do": "snapshot", "name": "tap"}],
                tmp_path, "--runtime", "tflite")
    tap = r["snapshots"]["tap"]
    assert r["errors"] == [] and tap["runtime"] == "litert"
    lat, lon = tap["place"]
    # the same view the ORT test checks independently; here the model runs in LiteRT's own interpreter
    with Soundscape.open(litert_bundle, runtime="onnx", threads=1) as s:
        view = s.embed(lon, lat, 1, audio_source="aporee", when=When(6, 7))[1]
    spec = json.loads((litert_bundle / "manifest.json").read_text())["model"]
    img = (view.astype(np.float32) / 255.0 - np.array(spec["mean"], np.float32)) / np.array(spec["std"], np.float32)
    feed = {"image": img.transpose(2, 0, 1)[None], "zoom": [1.0], "gsd": [spec["gsd_m"]], "lat": [lat],
            "lon": [lon], "month": [6.0], "hour": [7.0], "audio_source": [2], "caption_source": [0],
            "meta_mask": [[1, 1, 1, 1, 0]]}
    it = Interpreter(model_path=str(litert_bundle / spec["files"]["tflite"]))
    runner = it.get_signature_runner()
    details = runner.get_input_details()
    emb = runner(**{k: np.asarray(v, dtype=details[k]["dtype"]) for k, v in feed.items()})["embedding"][0]
    conn = sqlite3.connect(litert_bundle / "gallery" / "gallery.db")
    rows = conn.execute("SELECT i.id, e.vector FROM embeddings e JOIN items i ON i.id = e.item_id "
                        "WHERE e.kind = 'caption'").fetchall()
    conn.close()
    scores = np.stack([np.frombuffer(v, np.float32) for _, v in rows]) @ emb
    top = rows[int(np.argmax(scores))][0]
    assert tap["playing"] == top and tap["caption_shown"] == caption_of(litert_bundle, top)
    assert CLOCK.startswith("2026-06-21T07")


def test_missing_runtime_file_is_a_clear_error(litert_bundle, tmp_path):
    import shutil

    bundle = tmp_path / "b"
    shutil.copytree(litert_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    del manifest["model"]["files"]["tflite"]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    rehash(bundle)
    with pytest.raises(BundleError, match="no model file for runtime 'tflite'"):
        Soundscape.open(bundle, runtime="tflite")
    with Soundscape.open(bundle, runtime="onnx") as s:  # the default runtime is unaffected
        assert s.tower.name == "onnxruntime"
