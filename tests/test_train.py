"""Real training runs on the tiny world: outputs, resume after an interruption, errors, and a 2-process torchrun."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from core.checkpoint import load_checkpoint
from core.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--preset", "tiny", "--epochs", "2", "--batch-size", "8", "--threads", "1", "--no-progress"]


def _train(data: Path, out: Path, cache: Path, *extra: str) -> int:
    return cli_main(["train", "--data", str(data), "--out", str(out), "--cache-dir", str(cache), *ARGS, *extra])


def _log(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]


def _model_tensors(out: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(str(out / "last" / "state.safetensors")).items() if k.startswith("model.")}


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("features")


@pytest.fixture(scope="module")
def full_run(tiny_world, cache, tmp_path_factory) -> Path:
    """One uninterrupted tiny run through the CLI (2 epochs, batch 8)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run") / "full"
    assert _train(tiny_world, out, cache) == 0
    return out


def test_training_writes_checkpoint_state_and_log(full_run):
    out = full_run
    for f in ("config.json", "model.safetensors", "manifest.json", "train_log.jsonl",
              "last/state.safetensors", "last/state.json"):
        assert (out / f).is_file(), f
    loaded = load_checkpoint(out)
    assert loaded.fingerprint == loaded.manifest["fingerprint"]
    # CLI overrides are recorded in the checkpoint's config
    assert loaded.cfg.train.batch_size == 8 and loaded.cfg.train.epochs == 2 and loaded.cfg.name == "tiny"
    man = loaded.manifest
    assert set(man["val"]) >= {"i2a_r10", "i2a_mr", "i2t_r10", "i2t_mr"}
    assert man["val"]["zooms"] == [1, 3, 5] and man["val"]["metadata"] == "all"
    assert set(man["val"]["by_zoom"]) == {"1", "3", "5"} and "mean over zooms" in man["selected_by"]
    assert man["training"]["finished"] is True and man["training"]["step"] == man["training"]["total_steps"]
    assert man["training"]["samples_per_s"] > 0
    log = _log(out)
    epochs = [r for r in log if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert all("val" in r and 0.0 <= r["val"]["i2a_r10"] <= 1.0 for r in epochs)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in log)
    # the best checkpoint: highest validation I2A R@10%, then lowest I2A median rank, then the earliest epoch
    best = max(epochs, key=lambda r: (r["val"]["i2a_r10"], -r["val"]["i2a_mr"], -r["epoch"]))
    assert man["val"] == best["val"]
    assert [r["epoch"] for r in epochs if r.get("best")][-1] == best["epoch"]
    # the model learns: the second epoch's mean loss is below the first's
    assert epochs[1]["loss"] < epochs[0]["loss"]
    state = json.loads((out / "last" / "state.json").read_text())
    assert state["step"] == state["total_steps"] and len(state["history"]) == 2


def test_rerunning_a_finished_run_does_nothing(full_run, tiny_world, cache, capsys):
    before = (full_run / "model.safetensors").read_bytes()
    assert _train(tiny_world, full_run, cache) == 0
    assert "already finished" in capsys.readouterr().err
    assert (full_run / "model.safetensors").read_bytes() == before


def test_interrupted_run_resumes_to_the_same_result(full_run, tiny_world, cache, tmp_path):
    out = tmp_path / "resumed"
    assert _train(tiny_world, out, cache, "--max-steps", "3") == 0
    state = json.loads((out / "last" / "state.json").read_text())
    spe = state["steps_per_epoch"]
    assert state["step"] == 3 and state["epoch_step"] == 3 % spe and len(state["history"]) == 3 // spe
    assert max(r["step"] for r in _log(out)) <= 3
    assert _train(tiny_world, out, cache) == 0
    final = json.loads((out / "last" / "state.json").read_text())
    ref = json.loads((full_run / "last" / "state.json").read_text())
    assert final["step"] == ref["step"]
    assert [h["loss"] for h in final["history"]] == pytest.approx([h["loss"] for h in ref["history"]], rel=1e-5)
    a, b = _model_tensors(full_run), _model_tensors(out)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    # the log was not duplicated: every step appears once
    steps = [r["step"] for r in _log(out) if r["kind"] == "step"]
    assert steps == sorted(set(steps))


def test_more_epochs_extend_a_finished_run(full_run, tiny_world, cache, tmp_path):
    out = tmp_path / "longer"
    shutil.copytree(full_run, out)
    assert _train(tiny_world, out, cache, "--epochs", "3") == 0
    hist = json.loads((out / "last" / "state.json").read_text())["history"]
    ref = json.loads((full_run / "last" / "state.json").read_text())["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3] and hist[:2] == ref


def test_resuming_with_another_config_is_refused(full_run, tiny_world, cache, tmp_path, capsys):
    out = tmp_path / "other"
    shutil.copytree(full_run, out)
    assert _train(tiny_world, out, cache, "--lr", "0.01", "--epochs", "3") == 2
    err = capsys.readouterr().err
    assert "another config" in err and "train.lr" in err and "--no-resume" in err
    # --no-resume starts over (1 epoch to keep it short)
    assert cli_main(["train", "--data", str(tiny_world), "--out", str(out), "--cache-dir", str(cache),
                     "--preset", "tiny", "--epochs", "1", "--batch-size", "8", "--no-progress", "--no-resume"]) == 0
    assert json.loads((out / "last" / "state.json").read_text())["history"][0]["epoch"] == 1


def test_non_finite_loss_stops_with_a_training_error(tiny_world, cache, tmp_path, capsys):
    out = tmp_path / "nan"
    assert _train(tiny_world, out, cache, "--lr", "1e30") == 2
    err = capsys.readouterr().err
    assert "non-finite loss at step" in err
    assert not (out / "model.safetensors").exists()  # nothing bad was saved as a checkpoint
    assert not (out / "last").exists()


def test_bad_inputs(tiny_world, cache, tmp_path, capsys):
    assert cli_main(["train", "--preset", "huge", "--data", str(tiny_world), "--out", str(tmp_path / "o")]) == 2
    assert "unknown preset 'huge'" in capsys.readouterr().err
    assert _train(tiny_world, tmp_path / "o", cache, "--set", "image.size=3") == 2
    assert "unknown config key 'image.size'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # refused before anything was written
    assert _train(tmp_path / "nowhere", tmp_path / "o", cache) == 2
    assert "does not exist" in capsys.readouterr().err
    only_test = tmp_path / "only-test"
    (only_test / "data").mkdir(parents=True)
    for f in (tiny_world / "data").glob("test-*.parquet"):
        shutil.copy(f, only_test / "data" / f.name)
    assert _train(only_test, tmp_path / "o", cache) == 2
    assert "no 'train' split" in capsys.readouterr().err
    assert _train(tiny_world, tmp_path / "o", cache, "--max-steps", "0") == 2
    assert "--max-steps" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert _train(tiny_world, tmp_path / "file", cache) == 2
    assert "not a folder" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_processes(tiny_world, cache, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "core.train", "--preset", "tiny", "--data", str(tiny_world), "--out", str(out),
           "--cache-dir", str(cache), "--epochs", "1", "--batch-size", "8", "--no-progress"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    man = json.loads((out / "manifest.json").read_text())
    assert man["training"]["world_size"] == 2 and man["training"]["finished"] is True
    state = json.loads((out / "last" / "state.json").read_text())
    assert state["world_size"] == 2 and state["step"] == state["total_steps"]
    assert load_checkpoint(out).fingerprint == man["fingerprint"]
