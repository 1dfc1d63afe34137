"""Training pieces that need no dataset: schedule, optimiser groups, config overrides, the no-pickle run state."""

from __future__ import annotations

import json
import math

import pytest
import torch

from contracts.errors import CheckpointError, ConfigError
from core.config import get_preset
from core.config_overrides import config_differences, override_config, set_values
from core.epoch_loop import epoch_order, run_epochs
from core.optim import lr_at, make_optimizer, no_decay
from core.run_log import JsonlLog
from core.run_state import flatten_optimizer, has_run_state, load_run_state, save_run_state, unflatten_optimizer
from core.trainer import SELECTION


def test_lr_schedule_warmup_then_cosine_with_restarts():
    kw = {"base_lr": 1.0, "warmup_steps": 4, "cycle_steps": 10}
    assert [lr_at(s, **kw) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_at(4, **kw) == pytest.approx(1.0)  # cycle start
    assert lr_at(9, **kw) == pytest.approx(0.5)  # half way: cos(pi/2)
    assert lr_at(13, **kw) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.9)))
    assert lr_at(14, **kw) == pytest.approx(1.0)  # warm restart
    assert lr_at(24, **kw) == pytest.approx(1.0)
    assert lr_at(3, base_lr=1.0, warmup_steps=0, cycle_steps=4) == pytest.approx(0.5 * (1 + math.cos(0.75 * math.pi)))
    # values decrease monotonically inside a cycle
    vals = [lr_at(s, **kw) for s in range(4, 14)]
    assert all(a > b for a, b in zip(vals, vals[1:]))


class _Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 4)
        self.norm = torch.nn.LayerNorm(4)
        self.codebook = torch.nn.Parameter(torch.randn(5, 4))
        self.logit_scale = torch.nn.ParameterDict({"image_audio": torch.nn.Parameter(torch.tensor(2.0))})


def test_weight_decay_only_on_matrices_not_codebook_or_scales():
    model = _Toy()
    names = {n: no_decay(n, p) for n, p in model.named_parameters()}
    assert names == {"lin.weight": False, "lin.bias": True, "norm.weight": True, "norm.bias": True,
                     "codebook": True, "logit_scale.image_audio": True}
    opt = make_optimizer(model, get_preset("tiny"))
    assert opt.param_groups[0]["weight_decay"] == 0.2 and len(opt.param_groups[0]["params"]) == 1
    assert opt.param_groups[1]["weight_decay"] == 0.0 and len(opt.param_groups[1]["params"]) == 5
    assert opt.param_groups[0]["betas"] == (0.9, 0.98)


def test_config_overrides_go_through_replace():
    cfg = get_preset("tiny")
    new = override_config(cfg, epochs=5, batch_size=8, head="global", metadata=False, seed=3, lr=1e-4, threads=1,
                          restart_epochs=3, metadata_drop=0.2)
    assert new.model.fusion.drop_prob == 0.2 and cfg.model.fusion.drop_prob == 0.5
    assert (new.train.epochs, new.train.batch_size, new.train.seed, new.train.lr) == (5, 8, 3, 1e-4)
    assert new.train.restart_epochs == 3
    assert new.model.codebook.head == "global" and new.model.fusion.use_metadata is False
    assert new.model.codebook.size == cfg.model.codebook.size  # untouched fields survive
    assert cfg.train.epochs == 2  # the preset itself is not changed
    with pytest.raises(ConfigError, match="batch-size"):
        override_config(cfg, batch_size=1)
    with pytest.raises(ConfigError, match="epochs"):
        override_config(cfg, epochs=0)
    with pytest.raises(ConfigError, match="head"):
        override_config(cfg, head="mean")
    with pytest.raises(ConfigError, match="lr"):
        override_config(cfg, lr=0.0)
    with pytest.raises(ConfigError, match="restart-epochs"):
        override_config(cfg, restart_epochs=0)
    for bad in (-0.1, 1.0):
        with pytest.raises(ConfigError, match="metadata-drop"):
            override_config(cfg, metadata_drop=bad)


def test_set_overrides_any_field_with_typed_values():
    cfg = get_preset("default")
    new = set_values(cfg, ["image.image_size=64", "image.patch_size=8", "model.fusion.layers=2",
                           "model.codebook.head=global", "train.betas=[0.9, 0.99]", "train.lr=1",
                           "image.flip_rotate=false", "image.zooms=[1, 3]"])
    assert (new.image.image_size, new.image.patch_size, new.image.grid, new.image.flip_rotate) == (64, 8, 8, False)
    assert new.model.fusion.layers == 2 and new.model.codebook.head == "global"
    assert new.train.betas == (0.9, 0.99) and new.train.lr == 1.0 and isinstance(new.train.lr, float)
    assert new.image.zooms == (1, 3)
    assert cfg.image.image_size == 128 and cfg.model.fusion.layers == 1  # the preset itself is not changed
    assert set_values(cfg, []) == cfg
    bad = {
        "image.size=3": "unknown config key 'image.size'.*image_size",
        "image=3": "is a section",
        "image.image_size.x=1": "is a value, not a section",
        "image.image_size=1.5": "image.image_size must be of type int",
        "image.flip_rotate=1": "must be of type bool",
        "model.codebook.head=mean": "one of \\['codebook', 'global'\\]",
        "train.betas=[1]": "needs 2 values",
        "train.betas=0.9": "needs a JSON list",
        "image.image_size=100": "not a multiple of image.patch_size 16",
        "novalue": "KEY=VALUE",
        "=3": "KEY=VALUE",
    }
    for item, message in bad.items():
        with pytest.raises(ConfigError, match=message):
            set_values(cfg, [item])


def test_config_differences_ignore_resumable_fields():
    a = get_preset("tiny")
    assert config_differences(a.to_dict(), override_config(a, epochs=9).to_dict()) == []
    diffs = config_differences(a.to_dict(), override_config(a, lr=0.5).to_dict())
    assert diffs == ["train.lr: 0.001 -> 0.5"]


def test_epoch_order_is_a_seeded_permutation():
    a, b = epoch_order(50, 0, 1), epoch_order(50, 0, 1)
    assert (a == b).all() and sorted(a) == list(range(50))
    assert not (epoch_order(50, 0, 2) == a).all()


def _trained_toy(steps: int, seed: int = 0) -> tuple[_Toy, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = _Toy()
    opt = make_optimizer(model, get_preset("tiny"))
    for i in range(steps):
        _toy_step(model, opt, i)
    return model, opt


def _toy_step(model: _Toy, opt: torch.optim.Optimizer, i: int) -> None:
    g = torch.Generator().manual_seed(100 + i)
    x = torch.randn(8, 3, generator=g)
    loss = (model.norm(model.lin(x)) @ model.codebook.t()).pow(2).mean() * model.logit_scale["image_audio"]
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_run_state_round_trip_continues_bit_for_bit(tmp_path):
    # reference: 6 uninterrupted steps
    ref, _ = _trained_toy(6)
    # interrupted: 3 steps, save, fresh objects, load, 3 more steps
    model, opt = _trained_toy(3)
    torch.manual_seed(123)
    rng_before = torch.get_rng_state()
    save_run_state(tmp_path / "last", model, opt, {"step": 3, "note": "x"})
    assert has_run_state(tmp_path / "last")
    assert not list(tmp_path.glob(".last*")), "no temp folders left behind"
    torch.manual_seed(999)
    model2 = _Toy()
    opt2 = make_optimizer(model2, get_preset("tiny"))
    doc = load_run_state(tmp_path / "last", model2, opt2)
    assert doc["step"] == 3 and doc["note"] == "x"
    assert torch.equal(torch.get_rng_state(), rng_before)
    for i in range(3, 6):
        _toy_step(model2, opt2, i)
    for (n, a), b in zip(ref.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), n
    # the JSON half is plain JSON and the tensors are safetensors (no pickle anywhere)
    json.loads((tmp_path / "last" / "state.json").read_text())
    assert (tmp_path / "last" / "state.safetensors").read_bytes()[:8] != b"\x80\x04\x95"


def test_optimizer_flatten_unflatten_is_exact():
    _, opt = _trained_toy(2)
    tensors, meta = flatten_optimizer(opt.state_dict())
    assert all(isinstance(v, torch.Tensor) for v in tensors.values())
    json.dumps(meta)
    back = unflatten_optimizer(tensors, meta)
    orig = opt.state_dict()
    assert back["param_groups"] == orig["param_groups"]
    for pid, st in orig["state"].items():
        for k, v in st.items():
            assert torch.equal(back["state"][pid][k], v)


def test_run_state_bad_inputs(tmp_path):
    model, opt = _trained_toy(1)
    with pytest.raises(TypeError):
        save_run_state(tmp_path / "s", model, opt, {"bad": object()})
    assert not (tmp_path / "s").exists()
    save_run_state(tmp_path / "s", model, opt, {"step": 1})
    # another architecture cannot load it
    other = torch.nn.Linear(2, 2)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_run_state(tmp_path / "s", other, torch.optim.AdamW(other.parameters()))
    # a truncated tensor file is reported, not unpickled
    f = tmp_path / "s" / "state.safetensors"
    f.write_bytes(f.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_run_state(tmp_path / "s", model, opt)
    (tmp_path / "s" / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_run_state(tmp_path / "s", model, opt)
    (tmp_path / "s" / "state.json").write_text('{"format": "something else"}')
    with pytest.raises(CheckpointError, match="not a Sat2Sound training state"):
        load_run_state(tmp_path / "s", model, opt)


def test_jsonl_log_is_truncated_to_the_resumed_step(tmp_path):
    f = tmp_path / "train_log.jsonl"
    log = JsonlLog(f, None, True)
    for s in (1, 2, 3, 4):
        log.write({"step": s})
    JsonlLog(f, 2, True)  # resume from step 2
    assert [json.loads(x)["step"] for x in f.read_text().splitlines()] == [1, 2]
    JsonlLog(f, None, True)  # fresh run
    assert f.read_text() == ""


def test_best_checkpoint_selection_rule():
    is_better = SELECTION.is_better
    assert is_better({"i2a_r10": 0.1, "i2a_mr": 9.0}, None)
    best = {"metric": 0.2, "val": {"i2a_r10": 0.2, "i2a_mr": 5.0}}
    assert is_better({"i2a_r10": 0.3, "i2a_mr": 50.0}, best)  # R@10% first
    assert not is_better({"i2a_r10": 0.1, "i2a_mr": 1.0}, best)
    assert is_better({"i2a_r10": 0.2, "i2a_mr": 4.5}, best)  # tie -> lower median rank
    assert not is_better({"i2a_r10": 0.2, "i2a_mr": 5.0}, best)  # full tie keeps the earlier one


class _CountingRun:
    """The smallest run :func:`run_epochs` drives: it records what it is asked to do."""

    def __init__(self, n_train=10, batch=4, epochs=3, max_steps=None, interrupt_at=None):
        self.step, self.n_train, self.batch, self.max_steps = 0, n_train, batch, max_steps
        self.steps_per_epoch = n_train // batch
        self.total_steps = self.steps_per_epoch * epochs
        self.progress, self.log_every = False, 1
        self.interrupt_at = interrupt_at
        self.seen, self.epochs_ended, self.saves, self.records = [], [], 0, []
        self.log = self

    def write(self, record):
        self.records.append(record)

    def train_step(self, idx):
        if self.step == self.interrupt_at:
            raise KeyboardInterrupt
        self.seen.append(list(idx))
        self.step += 1
        return 1.0 / self.step, 1e-3

    def end_of_epoch(self, epoch, seconds, samples):
        self.epochs_ended.append((epoch, samples))

    def save_last(self):
        self.saves += 1


def test_run_epochs_walks_each_epoch_in_its_seeded_order_and_picks_this_ranks_share():
    run = _CountingRun()
    assert run_epochs(run, seed=3, epochs=3, desc="t", select=lambda idx: idx[1::2],
                      step_extras=lambda: {"grad_norm": 0.5}) is None
    assert run.step == 6 and [e for e, _ in run.epochs_ended] == [0, 1, 2]
    assert all(samples == 8 for _, samples in run.epochs_ended)  # samples count the global batch
    order = epoch_order(10, 3, 1)
    assert run.seen[2] == list(order[0:4][1::2]) and run.seen[3] == list(order[4:8][1::2])
    assert run.records[0] == {"kind": "step", "epoch": 1, "step": 1, "loss": 1.0, "lr": 1e-3, "grad_norm": 0.5,
                              "samples_per_s": run.records[0]["samples_per_s"]}
    assert run.saves == 0  # saving at the epoch end is the run's own end_of_epoch


def test_run_epochs_stops_at_max_steps_mid_epoch_and_saves():
    run, barriers = _CountingRun(max_steps=3), []
    assert run_epochs(run, seed=0, epochs=3, desc="t", after_save=lambda: barriers.append(1)) == "max_steps"
    assert run.step == 3 and [e for e, _ in run.epochs_ended] == [0] and run.saves == 1 and barriers == [1]


def test_run_epochs_stops_at_max_steps_on_an_epoch_boundary_after_the_epoch_end():
    run = _CountingRun(max_steps=4)
    assert run_epochs(run, seed=0, epochs=3, desc="t") == "max_steps"
    assert run.step == 4 and [e for e, _ in run.epochs_ended] == [0, 1] and run.saves == 0


def test_run_epochs_saves_the_last_completed_step_on_ctrl_c_and_reraises():
    run = _CountingRun(interrupt_at=3)
    with pytest.raises(KeyboardInterrupt):
        run_epochs(run, seed=0, epochs=3, desc="t")
    assert run.step == 3 and run.saves == 1


def test_run_epochs_resumes_mid_epoch_where_the_order_left_off():
    run = _CountingRun()
    run.step = 3  # resumed after epoch 2's first step
    run_epochs(run, seed=0, epochs=3, desc="t")
    order = epoch_order(10, 0, 1)
    assert run.seen[0] == list(order[4:8]) and run.step == 6
