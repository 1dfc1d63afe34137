"""Shared fixtures: the tiny embedded world is built once per test session and shared (read-only) by all tests."""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Keep the frozen text encoder's disk cache of the test session out of the user's home.
os.environ.setdefault("SAT2SOUND_CACHE_DIR", tempfile.mkdtemp(prefix="sat2sound-test-cache-"))


def pytest_unconfigure(config):
    """JAX (pulled in by litert-torch) logs a debug line from an atexit hook, after pytest has closed the captured
    stream a library's handler still points at; logging would print a "Logging error" traceback for it."""
    import logging

    logging.raiseExceptions = False


@pytest.fixture(scope="session")
def tiny_cfg():
    from core.config import get_preset

    return get_preset("tiny")


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory, tiny_cfg):
    """A tiny world dataset folder (GeoSound layout). Treat as read-only: copy it before changing anything."""
    from world.build import build_world

    out = tmp_path_factory.mktemp("world") / "tiny"
    build_world(tiny_cfg, out, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def tiny():
    """An untrained tiny-preset model (eval mode, seed 0, 1 thread) and its config; one per test module."""
    import torch

    from core.config import get_preset
    from core.model import build_model

    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = get_preset("tiny")
    return build_model(cfg).eval(), cfg


def save_untrained(tmp_path_factory, cfg, name: str, seed: int = 0):
    """An untrained model of ``cfg`` saved as a checkpoint folder (evaluation, maps and grounding do not care
    whether it learnt anything); returns the folder."""
    import torch

    from core.checkpoint import save_checkpoint
    from core.model import build_model

    torch.manual_seed(seed)
    path = tmp_path_factory.mktemp(name) / "ckpt"
    save_checkpoint(build_model(cfg), cfg, path)
    return path


@pytest.fixture(scope="session")
def fault_chain(tmp_path_factory):
    """Every artifact stage once on the tiny preset (world, teacher, student, int8, export, gallery, map, bundle):
    the inputs and the uninterrupted references of the fault-injection and bad-input tests."""
    from benchmarks.fault_stages import build_chain

    return build_chain(tmp_path_factory.mktemp("fault-chain"))
