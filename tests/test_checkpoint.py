"""Checkpoint folders: round trip, fingerprints, and refusal of anything that does not match."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from contracts.errors import CheckpointError
from core.checkpoint import load_checkpoint, read_manifest, save_checkpoint
from core.config import get_preset
from core.model import build_model


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    cfg = get_preset("tiny")
    model = build_model(cfg).eval()
    fp = save_checkpoint(model, cfg, tmp_path / "ckpt", extra={"note": "test"})
    return tmp_path / "ckpt", model, cfg, fp


def test_round_trip_gives_the_same_model(saved):
    path, model, cfg, fp = saved
    loaded = load_checkpoint(path)
    assert loaded.fingerprint == fp and loaded.cfg == cfg
    assert read_manifest(path)["note"] == "test"
    mel = torch.randn(2, cfg.audio.n_frames, cfg.audio.n_mels)
    with torch.no_grad():
        assert torch.allclose(model.encode_audio(mel).embedding, loaded.model.encode_audio(mel).embedding)
    assert not any(p.suffix in (".pt", ".pkl", ".bin") for p in path.iterdir())


def test_resaving_replaces_in_place_and_keeps_other_files(saved):
    path, model, cfg, fp = saved
    (path / "notes.txt").write_text("keep me")
    with torch.no_grad():
        model.head.codebook.add_(1.0)
    fp2 = save_checkpoint(model, cfg, path)
    assert fp2 != fp and load_checkpoint(path).fingerprint == fp2
    assert (path / "notes.txt").read_text() == "keep me"
    assert not [p for p in path.parent.iterdir() if ".tmp-" in p.name]


def test_config_that_does_not_match_weights_is_refused(saved):
    path, *_ = saved
    cfg = json.loads((path / "config.json").read_text())
    cfg["model"]["codebook"]["size"] = 128
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="does not match the weights"):
        load_checkpoint(path)


def test_unknown_config_field_is_refused(saved):
    path, *_ = saved
    cfg = json.loads((path / "config.json").read_text())
    cfg["model"]["bogus"] = 1
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="bogus"):
        load_checkpoint(path)


def test_tampered_or_truncated_weights_are_refused(saved):
    path, *_ = saved
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["fingerprint"] = "0" * 64
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="does not match its manifest"):
        load_checkpoint(path)
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)


def test_missing_folder_or_files(tmp_path, saved):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    path, *_ = saved
    (path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights"):
        load_checkpoint(path)


def test_baseline_config_round_trips(tmp_path):
    cfg = get_preset("tiny")
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(
        cfg.model, codebook=dataclasses.replace(cfg.model.codebook, head="global")))
    save_checkpoint(build_model(cfg), cfg, tmp_path / "g")
    assert load_checkpoint(tmp_path / "g").cfg.model.codebook.head == "global"
