"""Distillation: student presets, the student living in the teacher's space, the losses, the CLI with resume,
and refusal of a teacher of another preset."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from data_fixtures import write_geosound

from compress.distill_loss import DistillWeights, affinity_kl, cosine_distance, distill_loss
from compress.student import build_student, check_teacher_fits, tower_parameters
from compress.teacher_targets import TARGETS_FILE, partial_masks
from contracts.errors import CheckpointError
from core.checkpoint import load_checkpoint, read_manifest, save_checkpoint
from core.cli import main
from core.config import get_preset
from core.model import build_model


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A small GeoSound-layout dataset at the tiny preset's audio rate (16 train / 8 validation rows)."""
    root = tmp_path_factory.mktemp("compress-data") / "geo"
    return write_geosound(root, {"train": 16, "validation": 8}, n_shards=1, tile_px=80, audio_rate=8000)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    torch.manual_seed(0)
    cfg = get_preset("tiny")
    path = tmp_path_factory.mktemp("teacher") / "tiny"
    save_checkpoint(build_model(cfg).eval(), cfg, path)
    return path


# ------------------------------------------------------------------------------------------------ presets


def test_student_default_is_several_times_smaller_and_shares_the_space():
    t_cfg, s_cfg = get_preset("default"), get_preset("student-default")
    assert s_cfg.model.codebook == t_cfg.model.codebook and s_cfg.model.text == t_cfg.model.text
    assert s_cfg.audio == t_cfg.audio and s_cfg.image.zooms == t_cfg.image.zooms
    assert s_cfg.image.image_size < t_cfg.image.image_size
    check_teacher_fits(t_cfg, s_cfg)  # fits
    teacher, student = build_model(t_cfg), build_model(s_cfg)
    t_img, s_img = tower_parameters(teacher, "image"), tower_parameters(student, "image")
    codes = teacher.head.codebook.numel()  # shared, and kept float
    assert t_img / s_img > 2.0 and (t_img - codes) / (s_img - codes) > 3.0, (t_img, s_img)
    assert len(student.fusion.blocks) == 0 and len(teacher.fusion.blocks) >= 1
    for name in ("student-tiny", "student-paper"):
        cfg = get_preset(name)
        check_teacher_fits(get_preset(name.split("-", 1)[1]), cfg)


def test_student_holds_the_teachers_codebook_and_text_path_frozen():
    torch.manual_seed(1)
    teacher = build_model(get_preset("tiny")).eval()
    student = build_student(teacher, get_preset("student-tiny"), seed=0).eval()
    assert torch.equal(student.head.codebook, teacher.head.codebook)
    assert not student.head.codebook.requires_grad
    assert all(not p.requires_grad for p in student.text_query.parameters())
    assert torch.equal(student.audio_encoder.input_norm.weight, teacher.audio_encoder.input_norm.weight)
    assert not student.audio_encoder.input_norm.weight.requires_grad and student.audio_encoder.stem.weight.requires_grad
    assert student.image_encoder.patch_embed.weight.requires_grad
    texts = ["birds singing in a wet forest", "a tram passes a busy square", "waves on a pebble beach"]
    with torch.no_grad():
        t, s = teacher.encode_text(texts), student.encode_text(texts)
    assert torch.equal(s.embedding, t.embedding)  # the same text tower, exactly
    # the image tower is the student's own (different input size, different weights)
    cfg = student.cfg
    img = torch.randn(2, 3, cfg.image.image_size, cfg.image.image_size)
    with torch.no_grad():
        e = student.encode_image(img, torch.ones(2, dtype=torch.long), torch.full((2,), 0.6)).embedding
    assert e.shape == (2, cfg.model.codebook.dim) and torch.allclose(e.norm(dim=1), torch.ones(2), atol=1e-5)


def test_teacher_of_another_preset_is_refused_with_the_differences():
    with pytest.raises(CheckpointError, match=r"expects a teacher of preset 'default'.*codebook dim d 32 != 192"):
        check_teacher_fits(get_preset("tiny"), get_preset("student-default"))
    no_meta = get_preset("tiny")
    no_meta = no_meta.__class__.from_dict({**no_meta.to_dict(), "model": {
        **no_meta.to_dict()["model"], "fusion": {**no_meta.to_dict()["model"]["fusion"], "use_metadata": False}}})
    with pytest.raises(CheckpointError, match="metadata fusion False != True"):
        check_teacher_fits(no_meta, get_preset("student-tiny"))
    with pytest.raises(CheckpointError, match="text backbone minilm-l6:0000, but the installed one is minilm-l6:1111"):
        check_teacher_fits(get_preset("tiny"), get_preset("student-tiny"),
                           teacher_manifest={"text_backbone": "minilm-l6:0000"}, text_fingerprint="minilm-l6:1111")


def test_distill_cli_refuses_a_teacher_of_another_preset(teacher, dataset, tmp_path, capsys):
    code = main(["distill", "--ckpt", str(teacher), "--preset", "student-default", "--data", str(dataset),
                 "--out", str(tmp_path / "s"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "does not fit student preset 'student-default'" in err and "codebook size M 64 != 1024" in err
    assert not (tmp_path / "s").exists()


# ------------------------------------------------------------------------------------------------- losses


def test_distill_losses_are_zero_on_the_teacher_and_grow_with_disagreement():
    torch.manual_seed(0)
    b, d = 8, 16
    emb = {k: torch.nn.functional.normalize(torch.randn(b, d), dim=1)
           for k in ("image", "audio", "audio_caption", "image_caption")}
    scales = {"image_audio": 10.0, "image_imagecap": 10.0, "audio_audiocap": 10.0}
    logit = torch.nn.ParameterDict({k: torch.nn.Parameter(torch.tensor(2.0)) for k in (
        "image_audio", "image_audiocap", "audio_audiocap", "image_composed", "image_imagecap")})
    no_label = DistillWeights(label=0.0)
    total, parts = distill_loss(emb, emb, scales, logit, no_label, alpha=0.1)
    assert total.item() == pytest.approx(0.0, abs=1e-5)
    assert cosine_distance(emb["image"], -emb["image"]).item() == pytest.approx(2.0, abs=1e-5)
    shuffled = emb["image"][torch.randperm(b)]
    assert affinity_kl(shuffled, emb["audio"], emb["image"], emb["audio"], 10.0).item() > 0.1
    student = {**emb, "image": torch.randn(b, d, requires_grad=True)}
    total, parts = distill_loss(student, emb, scales, logit, DistillWeights(), alpha=0.1)
    total.backward()
    assert student["image"].grad is not None and student["image"].grad.abs().sum() > 0
    assert {"cos_image", "cos_audio", "kl_image_audio", "kl_image_imagecap", "kl_audio_audiocap", "label"} <= set(parts)
    with pytest.raises(ValueError, match="at least 2"):
        distill_loss({k: v[:1] for k, v in emb.items()}, emb, scales, logit, no_label, alpha=0.1)


def test_partial_metadata_masks_are_seeded_and_about_half():
    a, b = partial_masks(200, 3, seed=4), partial_masks(200, 3, seed=4)
    assert np.array_equal(a, b) and a.shape == (200, 3, 5)
    assert 0.4 < a.mean() < 0.6 and not np.array_equal(a, partial_masks(200, 3, seed=5))


# ------------------------------------------------------------------------------------------ CLI + resume


def test_distill_runs_resumes_and_writes_a_student(teacher, dataset, tmp_path, capsys):
    out = tmp_path / "student"
    args = ["distill", "--ckpt", str(teacher), "--data", str(dataset), "--out", str(out), "--epochs", "3",
            "--batch-size", "8", "--threads", "1", "--no-progress"]
    assert main([*args, "--max-steps", "3"]) == 0  # 2 steps per epoch: stops inside epoch 2
    assert "stopped at step 3/6" in capsys.readouterr().out
    state = json.loads((out / "last" / "state.json").read_text())
    assert state["step"] == 3 and (out / TARGETS_FILE).is_file()
    assert main(args) == 0
    printed = capsys.readouterr()
    assert "resuming from" in printed.err and "retention" in printed.out
    manifest = read_manifest(out)
    t_fp = load_checkpoint(teacher).fingerprint
    assert manifest["kind"] == "sat2sound-student" and manifest["teacher_fingerprint"] == t_fp
    assert manifest["preset"] == "student-tiny" and manifest["training"]["finished"] is True
    assert manifest["training"]["teacher_targets_cached"] is True  # the resumed run read the cache
    assert set(manifest["val"]) >= {"i2a_r10", "i2t_r10"} and set(manifest["teacher_val"]) >= {"i2a_r10"}
    log = [json.loads(x) for x in (out / "distill_log.jsonl").read_text().splitlines()]
    epochs = [r for r in log if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2, 3]
    # the student moves toward the teacher: the embedding cosine distance falls over the run
    assert epochs[-1]["parts"]["cos_image"] < epochs[0]["parts"]["cos_image"]
    student = load_checkpoint(out).model
    assert torch.equal(student.head.codebook, load_checkpoint(teacher).model.head.codebook)
    # a finished run is not redone
    assert main(args) == 0
    assert "already finished" in capsys.readouterr().err
    # the interrupted + resumed run is bit-identical to an uninterrupted one (per-step seeding, saved optimizer)
    straight = tmp_path / "straight"
    assert main([*args[:6], str(straight), *args[7:]]) == 0
    last = json.loads((out / "last" / "state.json").read_text())
    assert read_manifest(straight)["fingerprint"] == manifest["fingerprint"]
    assert json.loads((straight / "last" / "state.json").read_text())["history"][-1]["loss"] == \
        last["history"][-1]["loss"]
