"""int8 through torchao PT2E on the tiny preset: `sat2sound quantize --method pt2e` writes one quantized model per
tower lowered to ONNX (run on ORT), TFLite (run on LiteRT) and Core ML (spec-checked; no predict on Linux); export
copies the lowerings; QAT trains; bad input is one clear error each."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from data_fixtures import write_geosound

from compress.pt2e import export_error, quantize_pt2e_tower, tower_program
from compress.pt2e_lower import lower
from compress.qat import QatConfig, qat_pt2e_tower
from compress.quantize import QUANT_FILE
from compress.student import build_student
from contracts.errors import ConfigError
from core.checkpoint import read_manifest, save_checkpoint
from core.cli import main
from core.config import get_preset
from core.model import build_model
from export.manifest import tree_sha256
from export.onnx_export import run_onnx
from export.tflite_export import run_tflite
from export.towers import build_tower, example_inputs, tower_inputs


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny student saved as a distilled one would be, and a small dataset in the GeoSound layout."""
    root = tmp_path_factory.mktemp("pt2e")
    data = write_geosound(root / "geo", {"train": 16, "validation": 10, "test": 4}, n_shards=1, tile_px=80,
                          audio_rate=8000)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    teacher = build_model(get_preset("tiny")).eval()
    t_fp = save_checkpoint(teacher, teacher.cfg, root / "teacher")
    student = build_student(teacher, get_preset("student-tiny"), seed=0).eval()
    save_checkpoint(student, student.cfg, root / "student", extra={"kind": "sat2sound-student",
                                                                   "teacher_fingerprint": t_fp})
    return {"root": root, "data": data, "student": root / "student", "model": student, "cache": root / "cache"}


def _quantize(setup, out, *extra):
    return main(["quantize", "--ckpt", str(setup["student"]), "--calib", str(setup["data"]), "--out", str(out),
                 "--towers", "image,audio", "--calib-size", "16", "--cache-dir", str(setup["cache"]), "--no-progress",
                 *extra])


def _cosine(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def pt2e_int8(setup):
    out = setup["root"] / "int8-pt2e"
    assert _quantize(setup, out, "--method", "pt2e", "--pt2e-scheme", "dynamic", "--max-drop", "1.0") == 0
    return out


def test_pt2e_folder_lowers_one_model_to_every_target(setup, pt2e_int8):
    out, model = pt2e_int8, setup["model"]
    quant = json.loads((out / QUANT_FILE).read_text())
    manifest = read_manifest(out)
    assert quant["methods"] == {"onnx": "pt2e", "tflite": "pt2e", "coreml": "pt2e"}
    assert quant["evaluation"]["methods"]["pt2e"]["passed"] and "native" not in quant["evaluation"]["methods"]
    for tower in ("image", "audio"):
        held = example_inputs(model.cfg, tower, 3, seed=7)
        ref = build_tower(model, tower)(*[held[k] for k in tower_inputs(tower)]).detach().numpy()
        onnx_path = out / f"{tower}.int8.onnx"  # the ONNX target's int8 sits where the gate and report read it
        graph = onnx.load(str(onnx_path))
        assert sum(n.op_type == "DequantizeLinear" for n in graph.graph.node) > 0
        assert _cosine(run_onnx(onnx_path, held), ref).min() > 0.98
        tfl = out / "pt2e" / f"{tower}.int8.tflite"
        assert _cosine(run_tflite(tfl, held), ref).min() > 0.98
        ml = out / "pt2e" / f"{tower}.int8.mlpackage"
        assert quant["pt2e"]["coreml"][tower]["quantized_weights"] > 0  # validate_mlpackage ran on it
        assert manifest["pt2e"]["coreml"][tower]["sha256"] == tree_sha256(ml)
        assert quant["towers"][tower]["int8_method"] == "pt2e"


def test_export_copies_the_pt2e_lowerings(setup, pt2e_int8, tmp_path):
    out = tmp_path / "export"
    assert main(["export", "--ckpt", str(pt2e_int8), "--target", "tflite", "--towers", "image", "--out", str(out),
                 "--no-progress"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["quantization"]["methods"]["tflite"] == "pt2e"
    entry = next(f for f in manifest["files"] if f["variant"] == "int8")
    assert entry["quantization"]["int8_method"] == "pt2e"
    assert (out / entry["path"]).read_bytes() == (pt2e_int8 / "pt2e" / "image.int8.tflite").read_bytes()


def test_static_ptq_and_qat_train_and_lower(setup, tmp_path):
    model, cfg = setup["model"], setup["model"].cfg
    batches = [{k: v.numpy() for k, v in example_inputs(cfg, "image", 8, seed=i).items()} for i in range(3)]
    held = example_inputs(cfg, "image", 4, seed=11)
    ref = build_tower(model, "image")(*[held[k] for k in tower_inputs("image")]).detach().numpy()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ptq = quantize_pt2e_tower(model, cfg, "image", "static", batches)
    qat = qat_pt2e_tower(model, cfg, "image", batches, QatConfig(epochs=4))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the student is untouched
    assert qat.info["qat"]["last_epoch_loss"] < qat.info["qat"]["first_epoch_loss"]
    for pt, name in ((ptq, "ptq"), (qat, "qat")):
        path, info = lower(pt, cfg, "onnx", tmp_path / name)
        assert info["scheme"] == "static" and info["int8_ops"]
        assert _cosine(run_onnx(path, held), ref).mean() > 0.97


def test_a_model_that_does_not_export_names_the_op(setup, monkeypatch):
    import core.model.codebook as codebook

    @torch.library.custom_op("s2s_test::opaque", mutates_args=())
    def opaque(x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    forward = codebook.CodebookHead.forward
    monkeypatch.setattr(codebook.CodebookHead, "forward", lambda self, t, *a, **k: forward(self, opaque(t), *a, **k))
    with pytest.raises(ConfigError, match=r"image tower does not export with torch.export \(the op s2s_test::opaque"):
        tower_program(setup["model"], setup["model"].cfg, "image")
    assert "aten.nonzero" in str(export_error("audio", RuntimeError("Could not guard on aten.nonzero.default")))


@pytest.mark.parametrize("extra, message", [
    (["--method", "int4"], "unknown int8 method 'int4'"),
    (["--method", "pt2e", "--qat", "2"], "--qat needs training data: pass --data DIR"),
    (["--method", "pt2e", "--calib-size", "0"], "--calib-size must be >= 1"),
    (["--method", "pt2e", "--pt2e-scheme", "int4"], "unknown PT2E scheme 'int4'"),
])
def test_bad_input_is_one_clear_line(setup, tmp_path, capsys, extra, message):
    out = tmp_path / "never"
    assert _quantize(setup, out, "--no-gate", *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_an_empty_calibration_set_is_refused(setup, tmp_path):
    from compress.pt2e_stage import pt2e_ptq
    from contracts.errors import DataError

    with pytest.raises(DataError, match="no calibration samples for the image tower"):
        pt2e_ptq(setup["model"], setup["model"].cfg, ["image"], "static", {"image": []}, progress=False)
