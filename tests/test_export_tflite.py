"""TFLite (LiteRT) export: named signature, sort-free op set, parity with PyTorch, int8 with a float head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from export.parity import cosine_rows
from export.tflite_export import export_tflite, quantize_tflite_int8, run_tflite, tflite_ops, tflite_signature
from export.towers import IMAGE_INPUTS, build_tower, example_inputs


@pytest.fixture(scope="module")
def image_tflite(tiny, tmp_path_factory):
    model, cfg = tiny
    return export_tflite(model, cfg, "image", tmp_path_factory.mktemp("tflite") / "image.fp32.tflite")


def test_image_tflite_signature_ops_and_parity(tiny, image_tflite):
    model, cfg = tiny
    sig = tflite_signature(image_tflite)
    assert sorted(sig["inputs"]) == sorted(IMAGE_INPUTS)
    assert sig["inputs"]["image"] == {"shape": [1, 3, 32, 32], "dtype": "float32"}
    assert sig["inputs"]["audio_source"]["dtype"] == "int32"  # LiteRT downcasts int64 I/O
    assert sig["outputs"] == {"embedding": {"shape": [1, cfg.model.codebook.dim], "dtype": "float32"}}
    ops = tflite_ops(image_tflite)
    assert "FULLY_CONNECTED" in ops and "CONV_2D" in ops
    assert not [op for op in ops if "SORT" in op or "TOPK" in op or "STABLEHLO" in op]  # sort-free sparsemax
    held = example_inputs(cfg, "image", 6, seed=5)
    with torch.no_grad():
        ref = build_tower(model, "image")(*held.values()).numpy()
    got = run_tflite(image_tflite, held)
    assert got.shape == ref.shape
    assert cosine_rows(got, ref).min() >= 0.9999


def test_image_tflite_int8_keeps_the_head_float(tiny, image_tflite):
    model, cfg = tiny
    dst = image_tflite.with_name("image.int8.tflite")
    info = quantize_tflite_int8(image_tflite, dst, tower="image")  # raises if a head tensor became int8
    assert info["recipe"] == "dynamic_wi8_afp32" and info["int8_tensors"] >= 8
    assert dst.stat().st_size < 0.8 * image_tflite.stat().st_size
    held = example_inputs(cfg, "image", 12, seed=9)
    with torch.no_grad():
        ref = build_tower(model, "image")(*held.values()).numpy()
    cos = cosine_rows(run_tflite(dst, held), ref)
    assert cos.mean() >= 0.99
    assert np.isfinite(cos).all()
