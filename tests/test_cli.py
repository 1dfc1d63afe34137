"""The one CLI: every subcommand has working help; `data check` validates folders; pipeline stage bookkeeping."""

from __future__ import annotations

import subprocess
import sys

import pytest

from core.cli import COMMANDS, _available, _glue_negative_values, main


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_has_help_listing_its_options(name, capsys):
    if not _available(COMMANDS[name][0]):
        pytest.skip(f"{name} is not part of this build")
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert f"sat2sound {name}" in out and "--" in out.split("options:")[-1]


def test_top_level_help_is_quick_and_torch_free():
    code = "import sys; from core.cli import build_parser; build_parser().format_help(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_loading_the_text_tower_prints_no_third_party_noise():
    """transformers pulls in torchao, whose CUDA-kernel and pytree warnings are quieted by ``core``'s import."""
    code = ("import core; from core.model.text_backbone import get_text_backbone; "
            "print(get_text_backbone('minilm-l6', 16).encode(['birds sing'])[0].shape[-1])")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "384"
    assert "Failed to load" not in run.stderr and "Enum subclass" not in run.stderr


def test_negative_coordinates_are_glued_to_their_option():
    assert _glue_negative_values(["map", "--bbox", "-125,24,-66,50", "--zoom", "1"]) == [
        "map", "--bbox=-125,24,-66,50", "--zoom", "1"]
    assert _glue_negative_values(["ground", "--at", "-33.9,18.4"]) == ["ground", "--at=-33.9,18.4"]


def test_data_check_accepts_the_world_and_refuses_other_folders(tiny_world, tmp_path, capsys):
    assert main(["data", "check", str(tiny_world), "--preset", "tiny", "--split", "train"]) == 0
    assert "rows OK" in capsys.readouterr().out
    (tmp_path / "notes.txt").write_text("not a dataset")
    assert main(["data", "check", str(tmp_path)]) == 2
    assert main(["data", "check", str(tiny_world), "--split", "holdout", "--preset", "tiny"]) == 2
    assert main(["data", "check", str(tiny_world), "--preset", "huge"]) == 2


def test_pipeline_lists_stages_and_refuses_unknown_ones(tmp_path, capsys):
    assert main(["pipeline", "--preset", "tiny", "--out", str(tmp_path / "run"), "--list"]) == 0
    out = capsys.readouterr().out
    for stage in ("world", "teacher", "evaluate", "maps", "student", "int8", "export", "gallery", "bundle"):
        assert stage in out
    assert main(["pipeline", "--preset", "tiny", "--out", str(tmp_path / "run"), "--only", "nonsense"]) == 2
    assert main(["pipeline", "--preset", "huge", "--out", str(tmp_path / "run")]) == 2


MODEL_INPUT_COMMANDS = ("evaluate", "map", "ground", "concepts", "distill", "quantize", "export")


@pytest.mark.parametrize("name", MODEL_INPUT_COMMANDS)
def test_a_model_input_is_spelt_ckpt_everywhere(name, capsys):
    with pytest.raises(SystemExit):
        main([name, "--help"])
    assert "--ckpt DIR" in capsys.readouterr().out


@pytest.mark.parametrize("argv, old", [
    (["quantize", "--model", "/nonexistent/ckpt", "--out", "/nonexistent/out", "--no-gate"], "--model"),
    (["export", "--model", "/nonexistent/ckpt", "--target", "onnx", "--out", "/nonexistent/out"], "--model"),
    (["distill", "--teacher", "/nonexistent/ckpt", "--data", "/nonexistent/d", "--out", "/nonexistent/o"], "--teacher"),
    (["evaluate", "/nonexistent/ckpt", "--data", "/nonexistent/d"], "CHECKPOINT"),
])
def test_old_spellings_still_work_with_a_deprecation_message(argv, old, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    assert f"{old} is deprecated, use --ckpt" in err
    assert "/nonexistent/ckpt" in err and code == 2  # the old spelling's value reached the command
    assert "Traceback" not in err


def test_bundle_takes_the_export_folder_as_export(capsys):
    assert main(["bundle", "--model", "/nonexistent/export"]) == 2
    err = capsys.readouterr().err
    assert "--model is deprecated, use --export" in err and "--gallery" in err


def test_missing_model_input_is_argparse_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["quantize", "--out", "/nonexistent/out"])
    assert exc.value.code == 2
    assert "the following arguments are required: --ckpt" in capsys.readouterr().err


def test_every_preset_is_listed_by_the_shared_preset_flag(capsys):
    from core.config import PRESETS

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split()).replace("- ", "-")  # argparse wraps lines at hyphens
    assert all(name in out for name in PRESETS)


def test_export_quiet_is_the_old_no_progress(capsys):
    assert main(["export", "--ckpt", "/nonexistent/ckpt", "--target", "onnx", "--out", "/nonexistent/o",
                 "--quiet"]) == 2
    assert "--quiet is deprecated, use --no-progress" in capsys.readouterr().err
