"""Core ML export: ML program for iOS 16, float16 and int8-weight packages, validated here; numbers on macOS only."""

from __future__ import annotations

import sys

import pytest
import torch

from export.coreml_export import export_coreml, predict_coreml, validate_mlpackage
from export.parity import cosine_rows
from export.towers import build_tower, example_inputs

ON_MAC = sys.platform == "darwin"


@pytest.fixture(scope="module")
def audio_packages(tiny, tmp_path_factory):
    model, cfg = tiny
    return export_coreml(model, cfg, "audio", tmp_path_factory.mktemp("coreml"), int8=True)


def test_audio_packages_are_ios16_ml_programs_with_named_io(tiny, audio_packages):
    _, cfg = tiny
    assert set(audio_packages) == {"fp16", "int8"}
    for variant, (path, _) in audio_packages.items():
        assert path.name == f"audio.{variant}.mlpackage" and (path / "Manifest.json").is_file()
        facts = validate_mlpackage(path, cfg, "audio", int8=variant == "int8")
        assert facts["program"] == "mlprogram" and facts["spec_version"] >= 7
        assert facts["inputs"] == [{"name": "mel", "shape": [1, cfg.audio.n_frames, cfg.audio.n_mels],
                                    "dtype": "float32"}]
        assert [o["name"] for o in facts["outputs"]] == ["embedding"]


def test_int8_package_quantizes_weights_but_not_the_codebook(tiny, audio_packages):
    _, cfg = tiny
    fp16, _ = audio_packages["fp16"]
    int8, info = audio_packages["int8"]
    assert validate_mlpackage(fp16, cfg, "audio")["quantized_weights"] == 0
    assert validate_mlpackage(int8, cfg, "audio", int8=True)["quantized_weights"] >= 6
    assert "codebook" in info["float_kept"]
    size = lambda p: sum(f.stat().st_size for f in p.rglob("*") if f.is_file())  # noqa: E731
    assert size(int8) < 0.8 * size(fp16)


def test_validation_refuses_a_package_for_another_tower(tiny, audio_packages):
    _, cfg = tiny
    path, _ = audio_packages["fp16"]
    with pytest.raises(RuntimeError, match="inputs"):
        validate_mlpackage(path, cfg, "image")


@pytest.mark.skipif(not ON_MAC, reason="Core ML predict() needs macOS; on Linux only the spec, inputs and outputs "
                                       "are validated (test_audio_packages_are_ios16_ml_programs_with_named_io)")
def test_coreml_numbers_match_pytorch_on_macos(tiny, audio_packages):
    model, cfg = tiny
    held = example_inputs(cfg, "audio", 4, seed=2)
    with torch.no_grad():
        ref = build_tower(model, "audio")(*held.values()).numpy()
    assert cosine_rows(predict_coreml(audio_packages["fp16"][0], held), ref).min() >= 0.999
    assert cosine_rows(predict_coreml(audio_packages["int8"][0], held), ref).mean() >= 0.99
