"""A training batch is sized against the memory before any row is read (``core.batch_memory``): the estimate follows
the bytes autograd really keeps, a batch that cannot fit is refused in one line naming --batch-size, and a batch
larger than a small split is judged at the split's size (the run cuts it down to that)."""

from __future__ import annotations

import os
import time

import pytest
import torch
from conftest import save_untrained

from benchmarks.bad_input_cases import null_split
from contracts.errors import ConfigError
from core.batch_memory import check_batch_room, count_train_rows, step_bytes, tower_elements
from core.cli import main as cli_main
from core.config import get_preset
from core.config_overrides import override_config
from core.model import build_model

GIB = 2**30


def _saved_bytes(fn) -> int:
    """Bytes of the distinct tensors autograd saves for backward while ``fn`` runs (and backpropagates)."""
    seen: dict[tuple, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen[(t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def fake_batch(cfg, b: int) -> tuple:
    """Random model inputs of ``b`` samples in ``cfg``'s shapes: image, zoom, gsd, metadata, log-mel, and both
    captions' frozen backbone states with their pad mask (what the precomputed text cache hands the step)."""
    g = torch.Generator().manual_seed(b)
    s, t = cfg.image.image_size, cfg.model.text.max_tokens
    meta = {"lat": torch.zeros(b), "lon": torch.zeros(b), "month": torch.zeros(b, dtype=torch.long),
            "hour": torch.zeros(b, dtype=torch.long), "audio_source": torch.zeros(b, dtype=torch.long),
            "caption_source": torch.zeros(b, dtype=torch.long),
            "meta_mask": torch.ones(b, len(cfg.model.fusion.meta_fields))}
    return (torch.rand(b, 3, s, s, generator=g), torch.ones(b, dtype=torch.long), torch.ones(b), meta,
            torch.randn(b, cfg.audio.n_frames, cfg.audio.n_mels, generator=g),
            torch.randn(2 * b, t, cfg.model.text.width, generator=g), torch.zeros(2 * b, t, dtype=torch.bool))


def _per_sample(cfg, model) -> dict[str, float]:
    """Measured bytes saved per sample by each tower: the slope between batches of 2 and 8 (the weights that
    autograd also saves do not grow with the batch and drop out)."""
    def tower_bytes(b: int) -> dict[str, int]:
        image, zoom, gsd, meta, mel, states, pad = fake_batch(cfg, b)
        return {
            "image": _saved_bytes(lambda: model.encode_image(image, zoom, gsd, meta).embedding.sum().backward()),
            "audio": _saved_bytes(lambda: model.encode_audio(mel).embedding.sum().backward()),
            "text": _saved_bytes(lambda: model.encode_text_states(states, pad).embedding.sum().backward()),
        }

    small, big = tower_bytes(2), tower_bytes(8)
    return {k: (big[k] - small[k]) / 6 for k in small}


@pytest.mark.parametrize("preset", ["tiny", "published-tiny"])
def test_estimate_follows_the_bytes_autograd_keeps(preset):
    """The per-sample count of every tower is at least what autograd saves and not far above it (the transformer
    tower of tiny, the HTSAT tower of published-tiny)."""
    cfg = get_preset(preset)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    measured = _per_sample(cfg, model)
    estimated = {k: v * 4 for k, v in tower_elements(cfg).items()}
    for tower, got in measured.items():
        assert got > 0
        assert 1.0 <= estimated[tower] / got <= 2.5, (tower, estimated[tower], got)


PEAK_SCRIPT = """
import sys, torch
from core.config import get_preset
from core.losses import sat2sound_loss
from core.model import build_model
from test_train_batch_room import fake_batch

cfg, b = get_preset("tiny"), int(sys.argv[1])
torch.manual_seed(0)
torch.set_num_threads(1)
model = build_model(cfg).train()

def step(b):
    image, zoom, gsd, meta, mel, states, pad = fake_batch(cfg, b)
    text = model.encode_text_states(states, pad).embedding
    emb = {"image": model.encode_image(image, zoom, gsd, meta).embedding, "audio": model.encode_audio(mel).embedding,
           "audio_caption": text[:b], "image_caption": text[b:]}
    sat2sound_loss(emb, model.logit_scale, cfg.train.pseudo_alpha)[0].backward()

def peak_kib():  # this process's own high-water RSS (getrusage's ru_maxrss starts at the forking parent's peak)
    return next(int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmHWM:"))

step(2)  # the weights' gradients exist from here on
before = peak_kib()
step(b)
print((peak_kib() - before) * 1024)
"""


def test_estimate_covers_the_peak_memory_of_a_real_step():
    """One forward and backward step of the tiny model at batch 1024 in a fresh process: the estimate is above the
    peak RSS it adds, and within 3x of it."""
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).parent
    done = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, "1024"], capture_output=True, text=True, check=True,
                          cwd=here.parent, env={**os.environ, "PYTHONPATH": f"{here}:{here.parent}"})
    peak = int(done.stdout.split()[-1])
    estimate = step_bytes(get_preset("tiny"), 1024)
    assert peak < estimate < 3 * peak, (peak, estimate)


def test_step_grows_with_the_batch_and_its_square():
    cfg = get_preset("tiny")
    one = step_bytes(cfg, 1)
    assert step_bytes(cfg, 1000) > 1000 * one * 0.99  # the towers: linear in the batch
    assert step_bytes(cfg, 100_000) > 10 * step_bytes(cfg, 10_000)  # the in-batch logits: its square
    assert step_bytes(cfg, 512, text=False) < step_bytes(cfg, 512)  # distillation reads the captions' targets


def test_refused_in_one_line_naming_the_batch_size_and_both_sizes():
    cfg = override_config(get_preset("tiny"), batch_size=100_000)
    with pytest.raises(ConfigError) as err:
        check_batch_room(cfg, available_memory=16 * GIB)
    msg = str(err.value)
    assert "\n" not in msg and "--batch-size 100,000" in msg and "16.00 GiB is available" in msg
    assert f"needs about {step_bytes(cfg, 100_000) / GIB:.2f} GiB" in msg
    # the preset's own batch fits in a few hundred MiB
    assert check_batch_room(get_preset("tiny"), available_memory=16 * GIB) < 256 * 2**20


def test_a_batch_above_a_small_split_is_judged_at_the_split_size():
    cfg = override_config(get_preset("tiny"), batch_size=10_000_000)
    need = check_batch_room(cfg, rows=64, available_memory=16 * GIB)  # the run trains on 64 rows per step
    assert need == step_bytes(cfg, 64)
    with pytest.raises(ConfigError, match=r"cut to the split's 1,000,000 rows"):
        check_batch_room(cfg, rows=1_000_000, available_memory=16 * GIB)


def test_train_and_distill_refuse_before_reading_a_row(tmp_path, tmp_path_factory, tiny_cfg, capsys):
    big = null_split(tmp_path / "big", 10_000_000)
    assert count_train_rows(big) == 10_000_000
    assert count_train_rows(tmp_path / "nothing") is None
    import core.trainer  # noqa: F401  (the subcommand's imports are not the check's time)

    start = time.perf_counter()
    rc = cli_main(["train", "--preset", "tiny", "--data", str(big), "--out", str(tmp_path / "t"),
                   "--batch-size", "10000000", "--no-progress"])
    took = time.perf_counter() - start
    line = capsys.readouterr().err.strip()
    assert rc != 0 and took < 1.0, took
    assert line.count("\n") == 0 and "--batch-size 10,000,000" in line and "is available" in line, line
    assert not (tmp_path / "t").exists()  # nothing written (the rows are nulls: reading one would have failed)

    teacher = save_untrained(tmp_path_factory, tiny_cfg, "batch-room-teacher")
    rc = cli_main(["distill", "--ckpt", str(teacher), "--preset", "student-tiny", "--data", str(big),
                   "--out", str(tmp_path / "s"), "--batch-size", "10000000", "--no-progress"])
    line = capsys.readouterr().err.strip()
    assert rc != 0 and "--batch-size 10,000,000" in line and "needs about" in line, line
    assert not (tmp_path / "s").exists()
