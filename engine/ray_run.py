"""Run a job's tasks on Ray: one actor per worker holds the stage's model once, tasks go to free actors, a task
lost with a dead worker is run again, and the driver keeps one progress bar and receives every result.

Why actors and not Ray Data's ``map_batches``: the stages already cut their work into keyed, resumable pieces (map
chunks, gallery batches, world shards) that the driver writes atomically into the same folders the local engine
writes; a small scheduler over an actor pool keeps that layout byte for byte, and it counts what was retried. The
actors are what ``map_batches(..., concurrency=n)`` would start (a class built once per worker), restarted by Ray
when their process dies (``max_restarts=-1``); the driver resubmits the lost task itself (``max_task_retries=0``),
so a result is accepted once per key and a retry can never write a piece twice.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import tempfile
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.errors import ConfigError, Sat2SoundError
from engine.config import EngineConfig, EngineError, check_address

logger = logging.getLogger(__name__)
IN_FLIGHT_PER_WORKER = 2  # a second task queued on each worker so it never waits for the driver


@dataclass(frozen=True)
class Task:
    """One retryable piece of a job: ``key`` names it (a chunk, batch or shard), ``weight`` counts its items."""

    key: Hashable
    payload: Any
    weight: int = 1


@dataclass
class RunReport:
    """What a Ray run did: its tasks, the ones run again after a worker died, and where the time went."""

    tasks: int = 0
    done: int = 0
    items: int = 0
    retried: int = 0
    duplicates: int = 0
    workers: int = 0
    address: str = ""
    started_here: bool = False
    startup_s: float = 0.0
    seconds: float = 0.0
    retried_keys: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: (v if k != "retried_keys" else [str(x) for x in v]) for k, v in self.__dict__.items()}


def import_ray():
    """Ray, or a clear EngineError saying how to install it (it is an optional extra)."""
    try:
        import ray
    except ModuleNotFoundError:
        raise EngineError("--engine ray needs Ray, an optional extra: pip install '.[ray]' or pip install -c "
                          "requirements/constraints.txt -r requirements/ray.txt") from None
    return ray


HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # preface + SETTINGS


def probe_address(host: str, port: int, timeout_s: float) -> None:
    """Fail within ``timeout_s`` unless a gRPC server (a Ray head's GCS, or Ray Client) answers at host:port.

    Ray itself retries for 20 s and more, and waits without end on a port that accepts and never answers; this
    opens the connection, says HTTP/2 hello and wants the server's SETTINGS frame back in time."""
    t0 = time.perf_counter()
    where = f"{host}:{port}"
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as conn:
            if os.environ.get("RAY_USE_TLS", "0") not in ("0", ""):
                return  # a TLS cluster: the hello would need a handshake first; Ray's own window applies
            conn.settimeout(max(0.1, timeout_s - (time.perf_counter() - t0)))
            conn.sendall(HTTP2_HELLO)
            reply = conn.recv(9)
    except OSError as exc:
        if isinstance(exc, TimeoutError):
            why = "connected, but no answer" if "conn" in locals() else "timed out"
        else:
            why = exc.strerror or type(exc).__name__
        raise EngineError(f"no Ray cluster answers at {where} ({why} after {time.perf_counter() - t0:.1f} s): "
                          "start one there with `ray start --head`, check the address and firewall, or leave out "
                          "--address to run on a local Ray runtime") from None
    if len(reply) < 9 or reply[3] != 0x04:
        raise EngineError(f"something listens at {where} but it is not a Ray head (no gRPC answer"
                          f"{': it closed the connection' if not reply else ''}): check the address and port (the "
                          "head's GCS port, 6379 by default, or ray://HOST:10001 for Ray Client)")


@contextmanager
def ray_session(cfg: EngineConfig) -> Iterator[tuple[str, bool]]:
    """Connect to the cluster ``cfg`` names, or start a local runtime (stopped on exit); yields (address, started).
    A runtime already initialised in this process (a test's, a benchmark's) is used as it is."""
    ray = import_ray()
    started = False
    if cfg.address is not None and (host_port := check_address(cfg.address)) is not None:
        probe_address(*host_port, cfg.connect_timeout_s)
    if not ray.is_initialized():
        quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
        if cfg.address is None:
            store = cfg.object_store_mb * 2**20 if cfg.object_store_mb else None
            # address="local": a new runtime for this job, never one that `ray start` left running here
            ray.init(address="local", num_cpus=cfg.local_cpus, include_dashboard=False, object_store_memory=store,
                     **quiet)
            started = True
        else:
            _join(ray, cfg, quiet)
    try:
        yield (ray.get_runtime_context().gcs_address, started)
    finally:
        if started:
            ray.shutdown()


def _join(ray, cfg: EngineConfig, quiet: dict) -> None:
    """ray.init(address=...) that gives up after ``cfg.connect_timeout_s`` (Ray's own window is 20 s and more) and
    keeps Ray's per-second C++ warnings off the terminal, quoting the last one in the error instead."""
    key = "RAY_gcs_server_port_wait_time_s"  # Ray's connect window in seconds (its retries sleep 1 s each)
    old = os.environ.get(key)
    try:  # Ray 2.60 heads want a token by default; a joining driver sends the one it has (~/.ray/auth_token)
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )

        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    except ImportError:  # another Ray version: its own defaults apply
        pass
    os.environ[key] = str(max(1, math.ceil(cfg.connect_timeout_s)))
    with tempfile.TemporaryFile() as log:
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            ray.init(address=cfg.address, **quiet)
            return
        except (ConnectionError, RuntimeError, TimeoutError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            error = exc
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        log.seek(0)
        said = [ln.split("] ", 1)[-1].strip() for ln in log.read().decode(errors="replace").splitlines() if ln.strip()]
    if any("InvalidAuthToken" in line or "Unauthenticated" in line for line in said):
        raise EngineError(f"the Ray cluster at {cfg.address} refused this machine's authentication token: copy the "
                          "head's ~/.ray/auth_token here (or set RAY_AUTH_TOKEN) and run again") from error
    hint = f" (last: {said[-1][:200]})" if said else ""
    raise EngineError(f"cannot join the Ray cluster at {cfg.address}: {first}{hint}; is a Ray head running there "
                      "(`ray start --head`), with the same Ray version?") from error


class _Host:
    """The actor: builds the stage's worker once (loads the model), then runs tasks with it."""

    def __init__(self, factory: Callable[[], Callable[[Any], Any]]):
        self.fn = factory()

    def ready(self) -> tuple[int, str]:
        return os.getpid(), socket.gethostname()

    def run(self, payload: Any) -> Any:
        return self.fn(payload)


def local_worker_pids(name: str = "_Host") -> list[int]:
    """PIDs of the Ray workers (actors of class ``name``) of the runtime this process started on this machine: the
    processes titled ``ray::NAME`` below this one (``_Host.run``: the workers running a task right now, as Ray titles
    them). For fault drills (the tests and the benchmark kill one)."""
    me, found = os.getpid(), []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if not (d / "cmdline").read_bytes().startswith(f"ray::{name}".encode()):
                continue
            pid = int(d.name)
            while pid > 1:
                pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if pid == me:
                    found.append(int(d.name))
                    break
        except (OSError, ValueError, IndexError):
            continue
    return found


def explain_worker_failure(exc: BaseException) -> Exception:
    """The one-line error a user gets when workers cannot start or keep failing: the project missing on a node, a
    user error raised on the worker (an unreadable checkpoint: its own message), or Ray's first line."""
    cause = _user_cause(exc)
    if cause is not None:
        return cause
    text = str(exc)
    for line in text.splitlines():
        if "ModuleNotFoundError" in line or "No module named" in line or "ImportError" in line:
            return EngineError(f"Ray workers cannot import the project ({line.strip()}): install sat2sound-edge on "
                               "every node, the same version as here (pip install -e . from the same checkout), "
                               "or run the job from the project folder")
    for marker in ("CheckpointError:", "ConfigError:", "DataError:", "EngineError:"):
        for line in text.splitlines():
            if marker in line:
                return EngineError("on a Ray worker: " + line.split(marker, 1)[1].strip())
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    return EngineError(f"Ray workers failed: {first}")


def _user_cause(exc: BaseException) -> Exception | None:
    seen = exc
    for _ in range(4):
        cause = getattr(seen, "cause", None) or seen.__cause__
        if cause is None:
            return None
        if isinstance(cause, Sat2SoundError | OSError):
            return cause
        seen = cause
    return None


def _start_workers(ray, cfg: EngineConfig, factory, n: int) -> list:
    host = ray.remote(_Host).options(num_cpus=cfg.cpus_per_worker, max_restarts=-1, max_task_retries=0,
                                     runtime_env=cfg.runtime_env or None)
    actors = [host.remote(factory) for _ in range(n)]
    try:
        ray.get([a.ready.remote() for a in actors], timeout=cfg.start_timeout_s)
    except ray.exceptions.GetTimeoutError:
        _stop(ray, actors)
        raise EngineError(f"{n} Ray workers did not start within {cfg.start_timeout_s:.0f} s: the cluster may lack "
                          "free CPUs (ask for fewer --ray-workers) or cannot set up their environment") from None
    except ray.exceptions.RayError as exc:
        _stop(ray, actors)
        raise explain_worker_failure(exc) from None
    return actors


def _stop(ray, actors: Sequence) -> None:
    for a in actors:
        with suppress(Exception):  # an actor that is already gone
            ray.kill(a, no_restart=True)


def run_tasks(cfg: EngineConfig, factory: Callable[[], Callable[[Any], Any]], tasks: Sequence[Task],
              on_result: Callable[[Hashable, Any], None], *, desc: str = "job", unit: str = "item",
              progress: bool = True) -> RunReport:
    """Run every task on Ray workers built by ``factory()`` and hand each result to ``on_result(key, result)`` in
    this process, once per key (in completion order). A task whose worker died is run again (at most
    ``cfg.max_retries`` times); an error the task itself raises stops the job with that error."""
    from tqdm.auto import tqdm

    if not cfg.is_ray:
        raise ConfigError("run_tasks is the Ray engine; the local engine runs in the stage itself")
    ray = import_ray()
    report = RunReport(tasks=len(tasks))
    t0 = time.perf_counter()
    with ray_session(cfg) as (address, started):
        report.address, report.started_here = address, started
        if not tasks:
            return report
        fit = max(1, int(ray.cluster_resources().get("CPU", 1.0) // cfg.cpus_per_worker))
        if cfg.workers and cfg.workers > fit:
            logger.warning("the cluster has CPUs for %d workers of %g CPUs each; starting %d, not %d", fit,
                           cfg.cpus_per_worker, fit, cfg.workers)
        n = min(cfg.workers or fit, fit, len(tasks))
        actors = _start_workers(ray, cfg, factory, n)
        report.workers, report.startup_s = n, time.perf_counter() - t0
        bar = tqdm(total=sum(t.weight for t in tasks), desc=f"{desc} (ray, {n} workers)", unit=unit,
                   disable=not progress, dynamic_ncols=True)
        try:
            _drive(ray, cfg, actors, tasks, on_result, report, bar)
            if report.done != len(tasks):  # every key handed over once, or the job is not finished
                raise EngineError(f"the Ray job ended with {report.done} of {len(tasks)} tasks done")
        finally:
            bar.close()
            _stop(ray, actors)
    report.seconds = time.perf_counter() - t0
    return report


def _drive(ray, cfg: EngineConfig, actors: list, tasks: Sequence[Task], on_result, report: RunReport, bar) -> None:
    """The scheduler: up to IN_FLIGHT_PER_WORKER tasks on each live worker; a worker whose process died is
    restarted by Ray and probed until it answers, its lost tasks go back to the front of the queue."""
    queue: deque[Task] = deque(tasks)
    inflight: dict[Any, tuple[int, Task]] = {}
    probes: dict[Any, int] = {}
    load = [0] * len(actors)
    up = [True] * len(actors)
    gone = [False] * len(actors)  # restarted and failed to start again: no more tasks
    attempts: dict[Hashable, int] = {}
    done: set[Hashable] = set()
    last_error: BaseException | None = None
    down_since: float | None = None

    def refill() -> None:
        while queue:
            live = [i for i in range(len(actors)) if up[i] and load[i] < IN_FLIGHT_PER_WORKER]
            if not live:
                return
            i = min(live, key=load.__getitem__)
            task = queue.popleft()
            inflight[actors[i].run.remote(task.payload)] = (i, task)
            load[i] += 1

    def probe_down() -> None:
        for i in range(len(actors)):
            if not up[i] and not gone[i] and i not in probes.values():
                probes[actors[i].ready.remote()] = i

    refill()
    while inflight or queue:
        if all(gone):
            raise explain_worker_failure(last_error) if last_error else EngineError("every Ray worker is gone")
        if not any(up):
            down_since = down_since or time.perf_counter()
            if time.perf_counter() - down_since > cfg.start_timeout_s:
                raise EngineError(f"no Ray worker came back within {cfg.start_timeout_s:.0f} s after dying")
        else:
            down_since = None
        probe_down()
        ready, _ = ray.wait([*inflight, *probes], num_returns=1, timeout=1.0)
        for ref in ready:
            if ref in probes:
                i = probes.pop(ref)
                try:
                    ray.get(ref)
                    up[i] = True
                except ray.exceptions.ActorUnavailableError:
                    time.sleep(0.2)  # still restarting: probe again
                except ray.exceptions.RayError as exc:
                    gone[i], last_error = True, exc
                continue
            i, task = inflight.pop(ref)
            load[i] -= 1
            try:
                result = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                    ray.exceptions.ObjectLostError) as exc:
                up[i], last_error = False, exc
                queue.appendleft(task)  # the task running on the dead worker, or queued behind it there
                attempts[task.key] = attempts.get(task.key, 0) + 1
                if attempts[task.key] > cfg.max_retries:
                    raise explain_worker_failure(exc) from None
                report.retried += 1
                report.retried_keys.append(task.key)
                logger.warning("a Ray worker died running task %s; running it again", task.key)
                bar.set_postfix(retried=report.retried)
                continue
            except ray.exceptions.RayTaskError as exc:
                raise explain_worker_failure(exc) from None
            if task.key in done:
                report.duplicates += 1
                continue
            on_result(task.key, result)
            done.add(task.key)
            report.done += 1
            report.items += task.weight
            bar.update(task.weight)
        refill()

