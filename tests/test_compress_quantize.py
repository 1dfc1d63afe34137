"""int8 quantization (three schemes, head kept float, CPU quirk), the quality gate, bad calibration data, and the
compress report. One tiny teacher and student are exported once per module (fp32 ONNX cached) to keep it fast."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from data_fixtures import GEOSOUND_SCHEMA, write_geosound, write_shards

from compress.pt2e_stage import resolve_methods
from compress.quantize import QUANT_FILE, int8_filename
from compress.student import build_student
from core.checkpoint import load_checkpoint, read_manifest, save_checkpoint
from core.cli import main
from core.config import get_preset
from core.model import build_model
from export.int8 import cpu_int8_quirks
from export.onnx_graph import head_nodes

TOWERS = "image,audio"  # the text tower is the full MiniLM whatever the preset: slow to export, left to export tests


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tiny teacher, a student built from it (saved as a distilled student would be), data, an export cache."""
    root = tmp_path_factory.mktemp("quant")
    data = write_geosound(root / "geo", {"train": 16, "validation": 10, "test": 10}, n_shards=1, tile_px=80,
                          audio_rate=8000)
    torch.manual_seed(0)
    t_cfg = get_preset("tiny")
    teacher = build_model(t_cfg).eval()
    t_fp = save_checkpoint(teacher, t_cfg, root / "teacher")
    student = build_student(teacher, get_preset("student-tiny"), seed=0).eval()
    save_checkpoint(student, student.cfg, root / "student",
                    extra={"kind": "sat2sound-student", "teacher_fingerprint": t_fp})
    return {"root": root, "data": data, "teacher": root / "teacher", "student": root / "student",
            "cache": root / "onnx-cache"}


def _quantize(setup, out, *extra):
    return main(["quantize", "--ckpt", str(setup["student"]), "--calib", str(setup["data"]), "--out", str(out),
                 "--towers", TOWERS, "--cache-dir", str(setup["cache"]), "--no-progress", *extra])


@pytest.fixture(scope="module")
def dynamic_int8(setup):
    out = setup["root"] / "int8-dynamic"
    assert _quantize(setup, out, "--max-drop", "1.0") == 0
    return out


def test_dynamic_int8_folder_is_complete_and_keeps_the_head_float(setup, dynamic_int8):
    out = dynamic_int8
    names = {p.name for p in out.iterdir()}
    assert names == {"config.json", "model.safetensors", "manifest.json", QUANT_FILE, int8_filename("image"),
                     int8_filename("audio")}
    manifest = read_manifest(out)
    source = load_checkpoint(setup["student"])
    assert manifest["kind"] == "sat2sound-int8" and manifest["source_fingerprint"] == source.fingerprint
    assert manifest["source_kind"] == "sat2sound-student" and manifest["gate"]["passed"] is True
    assert load_checkpoint(out).fingerprint == source.fingerprint  # the fp32 files still load
    quant = json.loads((out / QUANT_FILE).read_text())
    image = quant["towers"]["image"]
    assert quant["scheme"] == "dynamic" and image["reduce_range"] == cpu_int8_quirks()["reduce_range"]
    assert quant["methods"] == resolve_methods("auto") and quant["methods"]["onnx"] == "native"  # measured default
    assert image["int8_method"] == "native" and set(quant["evaluation"]["methods"]) >= {"native"}
    assert image["int8_ops"].get("MatMulInteger", 0) + image["int8_ops"].get("DynamicQuantizeMatMul", 0) > 0
    assert image["bytes"] < image["fp32_bytes"]
    graph = onnx.load(str(out / int8_filename("image")))
    excluded = set(image["excluded_nodes"])
    assert excluded and excluded == set(head_nodes(graph))  # the head's nodes survive unquantized
    head_matmuls = [n for n in graph.graph.node if n.name in excluded and n.op_type == "MatMul"]
    assert len(head_matmuls) >= 2  # token-code scores and the weighted sum of codes, still float MatMuls
    ev = quant["evaluation"]
    assert ev["split"] == "validation" and ev["n"] == 10 and ev["zoom"] == 1
    assert ev["parity_cosine"]["image"]["mean"] > 0.98 and ev["parity_cosine"]["audio"]["mean"] > 0.98
    assert set(ev["drop"]) == {"i2a_r10", "i2t_r10"}


@pytest.mark.parametrize("scheme", ["static", "weight-only"])
def test_other_schemes(setup, scheme, tmp_path):
    out = tmp_path / scheme
    assert _quantize(setup, out, "--scheme", scheme, "--max-drop", "1.0", "--calib-size", "12") == 0
    quant = json.loads((out / QUANT_FILE).read_text())
    ops = quant["towers"]["image"]["int8_ops"]
    if scheme == "static":
        assert ops.get("QuantizeLinear", 0) > 0 and ops.get("DequantizeLinear", 0) > 0
        assert quant["towers"]["image"]["calibration_samples"] == 12 and quant["calibration"]["split"] == "train"
    else:
        assert ops.get("MatMulNBits", 0) > 0
    assert quant["evaluation"]["parity_cosine"]["image"]["mean"] > 0.98


def test_gate_refusal_leaves_nothing_behind(setup, tmp_path, capsys):
    out = tmp_path / "refused"
    code = _quantize(setup, out, "--max-drop", "-0.5")
    err = capsys.readouterr().err
    assert code == 3
    assert "refused by the quality gate" in err and "more than --max-drop -0.5" in err and "I2A R@10% fell by" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_existing_output_needs_force(setup, dynamic_int8, capsys):
    assert _quantize(setup, dynamic_int8, "--no-gate") == 2
    assert "already exists; pass --force" in capsys.readouterr().err


def test_calibration_of_the_wrong_shape_is_refused(setup, tmp_path, capsys):
    cfg = get_preset("student-tiny")
    n, s = 6, cfg.image.image_size
    arrays = {"image": np.zeros((n, 3, s + 8, s + 8), np.float32), "zoom": np.ones(n, np.float32),
              "gsd": np.full(n, 0.6, np.float32), "lat": np.zeros(n, np.float32), "lon": np.zeros(n, np.float32),
              "month": np.ones(n, np.float32), "hour": np.ones(n, np.float32),
              "audio_source": np.zeros(n, np.int64), "caption_source": np.zeros(n, np.int64),
              "meta_mask": np.ones((n, 5), np.float32),
              "mel": np.zeros((n, cfg.audio.n_frames, cfg.audio.n_mels), np.float32)}
    bad = tmp_path / "calib.npz"
    np.savez(bad, **arrays)
    out = tmp_path / "q"
    code = main(["quantize", "--ckpt", str(setup["student"]), "--calib", str(bad), "--data", str(setup["data"]),
                 "--out", str(out), "--scheme", "static", "--towers", TOWERS, "--cache-dir", str(setup["cache"]),
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "calibration input 'image' of the image tower has shape (6, 3, 32, 32)" in err
    assert "expects Nx3x24x24" in err and not out.exists()
    # right shapes but no samples
    np.savez(bad, **{k: v[:0] for k, v in arrays.items()})
    code = main(["quantize", "--ckpt", str(setup["student"]), "--calib", str(bad), "--data", str(setup["data"]),
                 "--out", str(out), "--scheme", "static", "--towers", TOWERS, "--cache-dir", str(setup["cache"]),
                 "--no-progress"])
    assert code == 2 and "holds no samples for the image tower" in capsys.readouterr().err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["calib.npz"]


def test_empty_calibration_dataset_is_refused(setup, tmp_path, capsys):
    empty = tmp_path / "empty"
    for split in ("train", "validation"):
        write_shards([], empty / "data", split, 1, GEOSOUND_SCHEMA)
    code = main(["quantize", "--ckpt", str(setup["student"]), "--calib", str(empty), "--data", str(setup["data"]),
                 "--out", str(tmp_path / "q"), "--scheme", "static", "--towers", TOWERS,
                 "--cache-dir", str(setup["cache"]), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "no calibration samples" in err and not (tmp_path / "q").exists()


def test_cpu_quirk_detection():
    no_vnni = "flags\t\t: fpu sse sse2 avx avx2 fma\n"
    with_vnni = "flags\t\t: fpu sse sse2 avx avx2 avx512f avx512_vnni\n"
    assert cpu_int8_quirks(no_vnni)["reduce_range"] is True
    assert cpu_int8_quirks(with_vnni) == {**cpu_int8_quirks(with_vnni), "reduce_range": False,
                                          "vnni": ["avx512_vnni"]}


# ------------------------------------------------------------------------------------------------- report


def test_compress_report_table_and_lineage(setup, dynamic_int8, tmp_path, capsys):
    out = tmp_path / "report.md"
    code = main(["compress-report", "--teacher", str(setup["teacher"]), "--student", str(setup["student"]),
                 "--int8", str(dynamic_int8), "--data", str(setup["data"]), "--out", str(out), "--runs", "3",
                 "--threads", "1", "--cache-dir", str(setup["cache"]), "--no-progress"])
    assert code == 0
    rep = json.loads(out.with_suffix(".json").read_text())
    assert [r["model"] for r in rep["rows"]] == ["teacher fp32", "student fp32", "student int8"]
    assert rep["split"] == "test" and rep["n"] == 10
    teacher, student, int8 = rep["rows"]
    assert student["image_tower_parameters"] < teacher["image_tower_parameters"]
    assert int8["latency_ms"]["torch_1"] is None and int8["latency_ms"]["ort_1"] > 0
    assert teacher["retention_pct"]["i2a_r10"] in (100.0, None)
    assert set(rep["checks"]) == {"i2a_retention", "i2t_retention", "image_tower_size_ratio",
                                  "image_tower_speed_ratio"}
    assert rep["size_ratio"] == pytest.approx(teacher["image_onnx_bytes"] / int8["image_onnx_bytes"])
    text = out.read_text()
    assert "| student int8 | student-tiny |" in text and "## Targets" in text
    # an int8 folder that was not made from this student is refused
    code = main(["compress-report", "--teacher", str(setup["teacher"]), "--student", str(setup["teacher"]),
                 "--int8", str(dynamic_int8), "--data", str(setup["data"]), "--out", str(out), "--no-progress"])
    assert code == 2 and "was quantized from model" in capsys.readouterr().err


def test_parity_loop_keeps_outliers_float_then_falls_back_to_weight_only(setup, dynamic_int8, tmp_path):
    """With an unreachable parity target every planned attempt runs: more outlier nodes kept float each time, then
    weight-only; the attempt closest to fp32 is kept and the whole search is recorded."""
    from compress.calibration import calibration_reader
    from export.int8 import outlier_ratios, quantize_tower

    src = setup["cache"] / load_checkpoint(setup["student"]).fingerprint[:24] / "image.fp32.onnx"
    cfg = get_preset("student-tiny")
    feeds = calibration_reader(setup["data"], src, cfg, "image", n_samples=16).batches
    graph = onnx.load(str(src))
    ratios = outlier_ratios(graph, [n.name for n in graph.graph.node if n.op_type == "MatMul"], feeds)
    assert ratios and all(r >= 1.0 for r in ratios.values())  # max/RMS is at least 1
    info = quantize_tower(src, tmp_path / "image.int8.onnx", "dynamic", tower="image", parity_feeds=feeds,
                          min_parity=1.01, max_float_fraction=0.5)
    attempts = info["parity"]["attempts"]
    assert [a["scheme"] for a in attempts][-1] == "weight-only" and attempts[0]["kept_float"] == 0
    assert [a["kept_float"] for a in attempts if a["scheme"] == "dynamic"] == sorted(
        a["kept_float"] for a in attempts if a["scheme"] == "dynamic")
    best = max(attempts, key=lambda a: a["parity"])
    assert info["parity"]["chosen"] == best and info["parity"]["met"] is False
    assert info["scheme_used"] == best["scheme"] and (tmp_path / "image.int8.onnx").stat().st_size == best["bytes"]
    if best["scheme"] == "weight-only":
        assert "fallback" in info
