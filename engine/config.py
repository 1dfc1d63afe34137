"""Which engine runs a long job, and the CLI flags that choose it (shared by ``map``, ``gallery build`` and
``data build``)."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from typing import Any

from contracts.errors import ConfigError, Sat2SoundError

ENGINES = ("local", "ray")


class EngineError(Sat2SoundError):
    """The distributed engine cannot run the job: no cluster at the address, workers without the project, Ray not
    installed, a task that failed on every retry."""


@dataclass(frozen=True)
class EngineConfig:
    """How to run a job: ``kind`` local (this process and its pools, the default) or ray.

    ray: ``address`` None starts a local Ray runtime on this machine (stopped when the job ends); ``auto`` joins
    the cluster already running here; ``HOST:PORT`` (a head node's GCS port, 6379 by default) or
    ``ray://HOST:10001`` joins that cluster. ``workers`` Ray actors each hold the model once (None: one per CPU
    the cluster has). A task whose worker dies is run again, at most ``max_retries`` times.
    """

    kind: str = "local"
    address: str | None = None
    workers: int | None = None
    cpus_per_worker: float = 1.0
    max_retries: int = 3
    connect_timeout_s: float = 5.0
    start_timeout_s: float = 120.0
    local_cpus: int | None = None  # CPUs of a runtime started here (None: all of the machine's)
    object_store_mb: int | None = None  # object store of a runtime started here (None: Ray's default)
    runtime_env: dict[str, Any] = field(default_factory=dict)  # Ray runtime_env for the workers (e.g. env_vars)

    def __post_init__(self) -> None:
        if self.kind not in ENGINES:
            raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got {self.kind!r}")
        if self.kind == "local" and self.address:
            raise ConfigError("--address is for --engine ray; the local engine runs on this machine")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--ray-workers must be at least 1, got {self.workers}")
        if self.max_retries < 0:
            raise ConfigError(f"max_retries must be 0 or more, got {self.max_retries}")
        if self.address is not None:
            check_address(self.address)

    @property
    def is_ray(self) -> bool:
        return self.kind == "ray"


_HOST_PORT = re.compile(r"^(ray://)?(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


def check_address(address: str) -> tuple[str, int] | None:
    """``auto`` -> None; ``HOST:PORT`` or ``ray://HOST:PORT`` -> (host, port); anything else is a ConfigError."""
    if address == "auto":
        return None
    m = _HOST_PORT.match(address.strip())
    if not m or not 0 < int(m.group(3)) < 65536:
        raise ConfigError(f"--address must be auto, HOST:PORT (a Ray head's GCS port, e.g. 10.0.0.5:6379) or "
                          f"ray://HOST:PORT, got {address!r}")
    return m.group(2).strip("[]"), int(m.group(3))


def add_engine_options(p: argparse.ArgumentParser) -> None:
    """``--engine``, ``--address``, ``--ray-workers``: the same three flags on every stage that can use Ray."""
    g = p.add_argument_group("engine (more than one machine)")
    g.add_argument("--engine", default="local", choices=ENGINES,
                   help="local: this machine (default); ray: a Ray cluster (pip install .[ray])")
    g.add_argument("--address", default=None,
                   help="with --engine ray: a cluster to join (HOST:PORT of its head, ray://HOST:PORT, or auto for "
                        "the one running here); default: start a local Ray runtime for this job")
    g.add_argument("--ray-workers", type=int, default=None,
                   help="with --engine ray: workers (each holds the model once); default: one per CPU of the cluster")


def engine_from_args(args: argparse.Namespace) -> EngineConfig:
    """The EngineConfig the CLI flags ask for (flags absent from a parser count as the local engine)."""
    kind = getattr(args, "engine", "local") or "local"
    address = getattr(args, "address", None)
    workers = getattr(args, "ray_workers", None)
    if kind == "local" and workers is not None:
        raise ConfigError("--ray-workers is for --engine ray")
    return EngineConfig(kind=kind, address=address, workers=workers)
