"""Stand-ins for the authors' released checkpoints: their Lightning layout, their key names and shapes, random values.

The six released files (``RELEASED``, from ``configs/sat2sound/*.yaml``) are ``sat2soundModel`` checkpoints written
by PyTorch Lightning 2.2 (``environment.yml``): ``state_dict``, ``hyper_parameters`` (the argparse ``Namespace`` of
``src/train.py`` with the yaml values, saved as a plain dict, ``hparams_name = "hparams"``), ``epoch``,
``global_step``, ``pytorch-lightning_version``, ``loops``, ``callbacks`` (three ``ModelCheckpoint`` states),
``optimizer_states`` (one AdamW, betas (0.9, 0.98), eps 1e-8, weight decay 0.2) and ``lr_schedulers`` (one
``CosineAnnealingWarmRestarts``, T_0 = warm_up_iterations). Everything here is of the types
``torch.load(weights_only=True)`` accepts, so a stand-in proves an import without the real weights.

AdamW keeps state only for parameters that ever got a gradient: not the frozen log-mel extractor, not the parts of
the audio tower whose output the loss never reads, and not ``logit_scale_it_a`` (kept for checkpoint compatibility,
unread by the loss).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from contracts.errors import ConfigError
from published.reference import AuthorsSat2Sound, AuthorsSizes

# released file stem -> (sat_type, metadata_type)
RELEASED: dict[str, tuple[str, str]] = {
    "bingmap_nometa": ("bingmap", "none"),
    "bingmap_withmeta": ("bingmap", "latlong_month_time_asource_tsource"),
    "sentinel_nometa": ("sentinel", "none"),
    "sentinel_withmeta": ("sentinel", "latlong_month_time_asource_tsource"),
    "SoundingEarth_nometa": ("googleEarth", "none"),
    "SoundingEarth_withmeta": ("googleEarth", "latlong_month_time_tsource"),
}
DATASET = {"bingmap": "GeoSound", "sentinel": "GeoSound", "googleEarth": "SoundingEarth"}
LIGHTNING_VERSION = "2.2.5"


def query_gain(sizes: AuthorsSizes) -> float:
    """Gain of the last query-map layer that makes sparsemax keep roughly a tenth of the codes, as a trained model
    must: code scores spread about ``gain / temperature`` and sparsemax keeps ~10% of ``K`` codes when the spread is
    ``1 / (0.05 K)``. About 1.25 at paper size (plain fan-in scaling); large for tiny codebooks."""
    return max(1.0, sizes.temperature / (0.05 * sizes.codebook_size))


def _is_deterministic(name: str) -> bool:
    return name.endswith(("relative_position_index", "attn_mask")) or ".audio_feats_extractor." in name


@torch.no_grad()
def randomize_(model: AuthorsSat2Sound, seed: int = 0) -> AuthorsSat2Sound:
    """Realistic random values for every learned tensor and running statistic (same seed, same values):
    weights N(0, 1/fan_in) (the codebook query maps' last layer times ``query_gain``), norm weights 1 +- 0.1,
    biases N(0, 0.02), relative-position tables N(0, 0.02), codebook rows and source embeddings N(0, 1), running
    means N(0, 0.1), running variances in [0.5, 1.5], batch counters a random count, logit scales log(1/0.07) +- 0.1.
    Computed tensors (window indices, shift masks, the frozen log-mel extractor) keep their values. Every key then
    moves the embeddings except ``model.inert_keys()``."""
    g = torch.Generator().manual_seed(seed)
    for name, t in model.state_dict(keep_vars=True).items():
        if _is_deterministic(name):
            continue
        if not t.is_floating_point():
            if name.endswith("num_batches_tracked"):
                t.fill_(int(torch.randint(1000, 100000, (), generator=g)))
            continue
        leaf = name.rsplit(".", 1)[-1]
        noise = torch.randn(t.shape, generator=g, dtype=torch.float32)
        if name.startswith("logit_scale_"):
            value = math.log(1 / 0.07) + 0.1 * noise
        elif name == "fdt.space_dict" or name.endswith("source_embed.weight"):
            value = noise
        elif leaf == "relative_position_bias_table":
            value = 0.02 * noise
        elif leaf == "running_mean":
            value = 0.1 * noise
        elif leaf == "running_var":
            value = 0.5 + torch.rand(t.shape, generator=g)
        elif t.dim() == 1 and leaf == "weight":
            value = 1.0 + 0.1 * noise
        elif name.startswith("fdt.") and ".q_map.4." in name:
            value = noise * query_gain(model.sizes) * (0.02 if t.dim() == 1 else 1 / math.sqrt(t[0].numel()))
        elif t.dim() == 1:
            value = 0.02 * noise
        else:
            value = noise / math.sqrt(t[0].numel())
        t.copy_(value.to(t.dtype))
    return model


def hyper_parameters(sizes: AuthorsSizes, sat_type: str) -> dict:
    """``src/train.py``'s arguments with a release config's values, as Lightning stores them."""
    if sat_type not in DATASET:
        raise ConfigError(f"sat_type {sat_type!r}: use one of {', '.join(DATASET)}")
    dataset = DATASET[sat_type]
    prefix = "SoundingEarth" if dataset == "SoundingEarth" else sat_type
    run_name = f"{prefix}_{'nometa' if sizes.metadata_type == 'none' else 'withmeta'}"
    return {
        "config": f"configs/sat2sound/{run_name}.yaml", "num_workers": 16,
        "limit_val_batches": 25 if dataset == "SoundingEarth" else 35, "val_check_interval": 500,
        "batch_size": 128, "max_epochs": 20, "mode": "train", "dataset_type": dataset,
        "sat_input_size": sizes.image_size, "sat_type": sat_type, "metadata_type": sizes.metadata_type,
        "meta_droprate": 0.5, "precomputed_mel": 1, "combined_modality_loss": int(sizes.combined_modality_loss),
        "learning_rate": 5e-05, "weight_decay": 0.2, "warm_up_iterations": 5000,
        "strategy": "ddp_find_unused_parameters_true", "accelerator": "gpu", "devices": 1,
        "project_name": "sat2sound", "run_name": run_name, "wandb_mode": "online", "fc_dim": sizes.fc_dim,
        "codebook_dim": sizes.dim, "codebook_size": sizes.codebook_size, "fdt_weight": 1.0,
        "pseudo_match_alpha": 0.1, "recall_at": 10, "ckpt_path": "none", "ckpt_mode": "hard",
        "satmae_ckpt_path": "ckpts/SATMAE/pretrain-vit-base-e199.pth",
    }


def _adamw_state(model: AuthorsSat2Sound, hp: dict, step: int, lr: float, g: torch.Generator) -> dict:
    no_grad = set(model.inert_keys()) - {"logit_scale_it", "logit_scale_ia", "logit_scale_at", "logit_scale_fdt",
                                         "logit_scale_i_at"}
    names = [n for n, _ in model.named_parameters()]
    state = {}
    for i, (name, p) in enumerate(model.named_parameters()):
        if name in no_grad or not p.requires_grad:
            continue
        state[i] = {"step": torch.tensor(float(step)),
                    "exp_avg": 1e-4 * torch.randn(p.shape, generator=g),
                    "exp_avg_sq": 1e-8 * torch.rand(p.shape, generator=g)}
    group = {"lr": lr, "betas": (0.9, 0.98), "eps": 1e-08, "weight_decay": hp["weight_decay"], "amsgrad": False,
             "foreach": None, "maximize": False, "capturable": False, "differentiable": False, "fused": None,
             "initial_lr": hp["learning_rate"], "params": list(range(len(names)))}
    return {"state": state, "param_groups": [group]}


def _checkpoint_callback(monitor: str, mode: str, value: float, run: str, epoch: int, step: int) -> tuple[str, dict]:
    key = (f"ModelCheckpoint{{'monitor': '{monitor}', 'mode': '{mode}', 'every_n_train_steps': 0, "
           f"'every_n_epochs': 1, 'train_time_interval': None}}")
    folder = f"logs/sat2sound/{run}/checkpoints"
    best = f"{folder}/epoch={epoch}-step={step}-{monitor}={value:.3f}.ckpt"
    return key, {"monitor": monitor, "best_model_score": torch.tensor(value), "best_model_path": best,
                 "current_score": torch.tensor(value), "dirpath": folder, "best_k_models": {best: torch.tensor(value)},
                 "kth_best_model_path": best, "kth_value": torch.tensor(value),
                 "last_model_path": f"{folder}/last.ckpt"}


def authors_checkpoint(model: AuthorsSat2Sound, sizes: AuthorsSizes, sat_type: str, seed: int = 0,
                       with_optimizer: bool = True) -> dict:
    """The dict Lightning writes for the authors' module (tensors share storage with ``model``)."""
    if model.sizes != sizes:
        raise ConfigError("the model was built with other sizes than the ones given")
    hp = hyper_parameters(sizes, sat_type)
    g = torch.Generator().manual_seed(10_000 + seed)
    epoch = int(torch.randint(3, 20, (), generator=g))
    step = epoch * 1500 + int(torch.randint(0, 1500, (), generator=g))
    t_cur = step % hp["warm_up_iterations"]
    lr = 0.5 * hp["learning_rate"] * (1 + math.cos(math.pi * t_cur / hp["warm_up_iterations"]))
    callbacks = dict(_checkpoint_callback(monitor, mode, value, hp["run_name"], epoch, step)
                     for monitor, mode, value in (("val_loss", "min", 3.2), ("I2S_Recall", "max", 0.61),
                                                  ("I2St_Recall", "max", 0.66)))
    progress = {"total": {"ready": step, "started": step, "processed": step, "completed": step},
                "current": {"ready": step % 1500, "started": step % 1500, "processed": step % 1500,
                            "completed": step % 1500}}
    loops = {"fit_loop": {"state_dict": {}, "epoch_loop.state_dict": {"_batches_that_stepped": step},
                          "epoch_loop.batch_progress": progress,
                          "epoch_progress": {"total": {"ready": epoch + 1, "started": epoch + 1,
                                                       "processed": epoch, "completed": epoch},
                                             "current": {"ready": epoch + 1, "started": epoch + 1,
                                                         "processed": epoch, "completed": epoch}}}}
    scheduler = {"T_0": hp["warm_up_iterations"], "T_i": hp["warm_up_iterations"], "T_mult": 1, "eta_min": 0,
                 "T_cur": t_cur, "base_lrs": [hp["learning_rate"]], "last_epoch": step, "verbose": False,
                 "_step_count": step + 1, "_get_lr_called_within_step": False, "_last_lr": [lr]}
    return {
        "epoch": epoch,
        "global_step": step,
        "pytorch-lightning_version": LIGHTNING_VERSION,
        "state_dict": {k: v.detach() for k, v in model.state_dict().items()},
        "loops": loops,
        "callbacks": callbacks,
        "optimizer_states": [_adamw_state(model, hp, step, lr, g)] if with_optimizer else [],
        "lr_schedulers": [scheduler],
        "hparams_name": "hparams",
        "hyper_parameters": hp,
    }


def write_standin(path: str | os.PathLike, sizes: AuthorsSizes, sat_type: str, seed: int = 0,
                  with_optimizer: bool = True) -> Path:
    """Build, randomise and write a stand-in ``.ckpt`` atomically (a temporary file, then ``os.replace``)."""
    path = Path(path)
    model = randomize_(AuthorsSat2Sound(sizes), seed)
    ckpt = authors_checkpoint(model, sizes, sat_type, seed, with_optimizer=with_optimizer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
