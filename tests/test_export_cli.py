"""`sat2sound export` end to end on a tiny checkpoint: ONNX + ORT round trip, manifest, and every bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest
import torch

from contracts.artifacts import sha256_file
from core.checkpoint import save_checkpoint
from core.cli import main
from core.config import get_preset
from core.model import build_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = get_preset("tiny")
    path = tmp_path_factory.mktemp("ckpt") / "teacher"
    fp = save_checkpoint(build_model(cfg).eval(), cfg, path)
    return path, fp, cfg


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory):
    """One real export (ONNX + ORT, image + audio towers, int8 too), checked on the tiny world's train split."""
    from world.build import build_world

    ckpt, _, cfg = checkpoint
    root = tmp_path_factory.mktemp("export")
    world = build_world(cfg, root / "world", workers=1, progress=False)
    out = root / "out"
    code = main(["export", "--ckpt", str(ckpt), "--target", "onnx", "--target", "ort", "--towers", "image,audio",
                 "--out", str(out), "--data", str(world), "--split", "train", "--max-r10-drop", "0.2", "--no-progress"])
    assert code == 0
    return out


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_export_writes_every_file_with_a_matching_manifest(exported, checkpoint):
    ckpt, fp, cfg = checkpoint
    m = json.loads((exported / "manifest.json").read_text())
    assert m["schema"] == "sat2sound-export/1" and m["targets"] == ["onnx", "ort"]
    assert m["source"]["fingerprint"] == fp and m["source"]["kind"] == "sat2sound-model"
    assert m["embedding_dim"] == cfg.model.codebook.dim
    paths = sorted(e["path"] for e in m["files"])
    assert paths == sorted(f"{t}/{tower}.{v}.{t}" for t in ("onnx", "ort") for tower in ("image", "audio")
                           for v in ("fp32", "int8"))
    for e in m["files"]:
        f = exported / e["path"]
        assert f.is_file() and e["sha256"] == sha256_file(f) and e["bytes"] == f.stat().st_size
        assert e["parity"]["ran"] and e["parity"]["passed"]
        if e["variant"] == "fp32":
            assert e["parity"]["min_cosine"] >= 0.9999
        else:
            assert e["parity"]["mean_cosine"] >= 0.99 and e["quantization"]["float_kept"] == "codebook head"
        sess = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
        assert [i.name for i in sess.get_inputs()] == [i["name"] for i in e["inputs"]]
        assert [o.name for o in sess.get_outputs()] == ["embedding"]
    sizes = {e["path"]: e["bytes"] for e in m["files"]}
    assert sizes["onnx/image.int8.onnx"] < sizes["onnx/image.fp32.onnx"]
    # preprocessing constants a device needs, as numbers
    pre = m["preprocessing"]
    assert pre["image"]["image_size"] == cfg.image.image_size and pre["image"]["mean"] == list(cfg.image.mean)
    assert pre["image"]["zoom_crop_fraction"]["bingmap"] == {"1": 0.2, "3": 0.6, "5": 1.0}
    assert pre["image"]["gsd_m"]["bingmap"] == 0.6
    assert (pre["audio"]["sample_rate"], pre["audio"]["n_fft"], pre["audio"]["hop_length"], pre["audio"]["n_mels"]) \
        == (8000, 256, 128, 32)
    assert pre["audio"]["center"] is True and pre["audio"]["pad_mode"] == "reflect"
    # ORT for phones: operator config and the mobile usability verdicts are kept
    assert (exported / "ort" / "required_operators.config").read_text().count("ai.onnx;") >= 3
    summary = json.loads((exported / "ort" / "mobile_usability" / "summary.json").read_text())
    assert set(summary) == {"image.fp32", "image.int8", "audio.fp32", "audio.int8"}
    assert "NNAPI" in summary["image.fp32"]["execution_providers"]
    assert (exported / "ort" / "mobile_usability" / "image.fp32.txt").read_text().startswith("INFO:")
    # retrieval on real data: the float files rank exactly like PyTorch
    r = m["parity"]["retrieval"]
    assert r["n"] >= 50 and 0.0 <= r["pytorch_i2a_r10"] <= 1.0
    assert abs(r["files"]["onnx.fp32"]["drop"]) <= 1.0 / r["n"] + 1e-9
    assert abs(r["files"]["ort.fp32"]["drop"]) <= 1.0 / r["n"] + 1e-9
    assert set(r["files"]) == {"onnx.fp32", "onnx.int8", "ort.fp32", "ort.int8"}
    assert _leftovers(exported.parent) == []


def test_existing_output_is_refused_and_a_failed_parity_check_writes_nothing(exported, checkpoint, capsys):
    ckpt, _, _ = checkpoint
    before = sha256_file(exported / "manifest.json")
    code = main(["export", "--ckpt", str(ckpt), "--target", "onnx", "--out", str(exported), "--no-progress"])
    assert code == 2
    assert "already exists" in capsys.readouterr().err
    # --force, but an int8 gate no real int8 file can meet: exit non-zero with the figures, old export untouched
    code = main(["export", "--ckpt", str(ckpt), "--target", "onnx", "--towers", "audio", "--out", str(exported),
                 "--force", "--int8-min-cos", "0.9999999", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "parity check failed" in err and "onnx/audio.int8.onnx: mean_cosine 0.99" in err
    assert sha256_file(exported / "manifest.json") == before
    assert _leftovers(exported.parent) == []


def test_failed_parity_into_a_new_folder_leaves_no_folder(checkpoint, tmp_path, capsys):
    ckpt, _, _ = checkpoint
    out = tmp_path / "never"
    code = main(["export", "--ckpt", str(ckpt), "--target", "onnx", "--towers", "audio", "--no-int8",
                 "--fp32-min-cos", "1.5", "--out", str(out), "--no-progress"])
    assert code == 2
    assert "onnx/audio.fp32.onnx: min_cosine" in capsys.readouterr().err
    assert not out.exists() and _leftovers(tmp_path) == []


def test_unknown_target_is_refused(checkpoint, tmp_path, capsys):
    ckpt, _, _ = checkpoint
    code = main(["export", "--ckpt", str(ckpt), "--target", "onnx,tensorrt", "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown target(s) 'tensorrt'" in err and "onnx, ort, coreml, tflite" in err
    assert not (tmp_path / "o").exists()


def test_unknown_tower_is_refused(checkpoint, tmp_path, capsys):
    ckpt, _, _ = checkpoint
    code = main(["export", "--ckpt", str(ckpt), "--target", "onnx", "--towers", "image,video",
                 "--out", str(tmp_path / "o")])
    assert code == 2 and "unknown tower(s) 'video'" in capsys.readouterr().err


def test_model_folder_without_weights_is_refused(checkpoint, tmp_path, capsys):
    ckpt, _, _ = checkpoint
    broken = tmp_path / "noweights"
    shutil.copytree(ckpt, broken)
    (broken / "model.safetensors").unlink()
    code = main(["export", "--ckpt", str(broken), "--target", "onnx", "--out", str(tmp_path / "o")])
    assert code == 2 and "no weights" in capsys.readouterr().err
    missing = main(["export", "--ckpt", str(tmp_path / "nothing"), "--target", "onnx", "--out", str(tmp_path / "o")])
    assert missing == 2 and "does not exist" in capsys.readouterr().err


def test_config_that_does_not_match_the_weights_is_refused(checkpoint, tmp_path, capsys):
    ckpt, _, _ = checkpoint
    broken = tmp_path / "mismatch"
    shutil.copytree(ckpt, broken)
    cfg = json.loads((broken / "config.json").read_text())
    cfg["model"]["codebook"]["size"] = 128
    (broken / "config.json").write_text(json.dumps(cfg))
    code = main(["export", "--ckpt", str(broken), "--target", "onnx", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "does not match the weights" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_python_m_export_is_the_same_command():
    proc = subprocess.run([sys.executable, "-m", "export", "--help"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert proc.returncode == 0
    assert "--target" in proc.stdout and "--int8, --no-int8" in proc.stdout


def test_a_quantize_folder_supplies_the_onnx_int8_towers(checkpoint, tmp_path):
    """compress -> export: the int8 ONNX of `sat2sound quantize` is used as is, checked by sha256."""
    from compress.quantize import quantize_model
    from contracts.errors import CheckpointError
    from export.exporter import export_model

    ckpt, fp, _ = checkpoint
    qdir = tmp_path / "int8"
    quantize_model(ckpt, qdir, scheme="dynamic", max_drop=None, towers=("image", "audio"), progress=False)
    result = export_model(qdir, tmp_path / "out", "onnx", towers="audio", progress=False)
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert result.out == tmp_path / "out" and result.manifest == m and result.files == m["files"]
    assert result.targets == ("onnx",) and result.towers == ("audio",)
    assert m["source"]["kind"] == "sat2sound-int8" and m["source"]["fingerprint"] == fp
    assert "quantize folder" in m["quantization"]["onnx_int8_source"]
    entry = next(e for e in m["files"] if e["variant"] == "int8")
    assert entry["sha256"] == sha256_file(qdir / "audio.int8.onnx")
    assert entry["parity"]["passed"]
    (qdir / "audio.int8.onnx").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="sha256"):
        export_model(qdir, tmp_path / "out2", "onnx", towers="audio", progress=False)
    assert not (tmp_path / "out2").exists()
