"""The stages the fault-injection suite kills, and how: each stage's command, its fault points, its consumer check
and how its result is compared with an uninterrupted run's.

One fault is: run the stage's ``sat2sound`` command as a subprocess with ``SAT2SOUND_FAULT_AT=<label>:<n>`` (the
hook in ``contracts/faults.py`` sends it SIGKILL at the n-th time it passes ``label``), ask the stage's consumer
whether it accepts what is on disk (it must refuse, or find a complete, self-consistent artifact), rerun the same
command, and compare the result with a reference run's. ``tests/test_faults.py`` runs a few points per stage and
``python -m benchmarks.faults`` sweeps more. Everything runs on the tiny preset.

Comparisons are byte for byte where a stage is deterministic. Fields that record when or how fast something ran
(``created``, ``updated``, ``seconds``, ``samples_per_s``, a gallery's random ``build_id``, its index timings)
and files that are logs or timed choices (``train_log.jsonl``, the gallery's index files) are left out; the
reliability doc lists them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.fault_checks import (
    compare_bundle,
    compare_checkpoint,
    compare_folders,
    compare_gallery,
    compare_maps,
    consumer_bundle,
    consumer_checkpoint,
    consumer_folder_absent,
    consumer_gallery,
    consumer_map,
    consumer_world,
    in_process,
)
from contracts.faults import FAULT_ENV, FAULT_LOG_ENV

REPO = Path(__file__).resolve().parents[1]
MAP_BBOX = "-90.45,38.45,-90.05,38.75"  # the pipeline's city box
BUNDLE_REGION = "-90.205,38.625,-90.195,38.632"  # about 1 km: few map tiles
@dataclass
class Chain:
    """The upstream artifacts every stage reads (and, for its own stage, the reference output)."""

    root: Path
    world: Path
    teacher: Path
    student: Path
    int8: Path
    export: Path
    gallery: Path
    maps: Path
    bundle: Path


@dataclass
class StageCase:
    name: str
    labels: tuple[str, ...]  # the fault points this stage passes, in the order it meets them
    argv: Callable[[Chain, Path], list[str]]  # the command that writes OUT
    reference: Callable[[Chain], Path]  # the uninterrupted run's output
    compare: Callable[[Path, Path], list[str]]  # differences (reference, result); [] when equal
    consumer: Callable[[Path], str | None]  # None: refused / absent / self-consistent; else what it wrongly accepted


def _train(c: Chain, out: Path) -> list[str]:
    return ["train", "--preset", "tiny", "--data", str(c.world), "--out", str(out), "--threads", "1",
            "--epochs", "2", "--no-progress"]


def _distill(c: Chain, out: Path) -> list[str]:
    return ["distill", "--ckpt", str(c.teacher), "--preset", "student-tiny", "--data", str(c.world), "--out",
            str(out), "--threads", "1", "--epochs", "2", "--no-progress"]


STAGES: dict[str, StageCase] = {s.name: s for s in [
    StageCase("world", ("world.shard", "world.publish"),
              lambda c, o: ["data", "build", "--preset", "tiny", "--n-samples", "40", "--workers", "1",
                            "--out", str(o), "--no-progress"],
              lambda c: c.world, compare_folders, consumer_world),
    StageCase("train", ("train.step", "checkpoint.file", "state.write", "state.swap"), _train,
              lambda c: c.teacher, compare_checkpoint, consumer_checkpoint),
    StageCase("distill", ("train.step", "checkpoint.file", "state.write", "state.swap"), _distill,
              lambda c: c.student, compare_checkpoint, consumer_checkpoint),
    StageCase("quantize", ("export.file", "artifact.publish"),
              lambda c, o: ["quantize", "--ckpt", str(c.student), "--calib", str(c.world), "--out", str(o),
                            "--towers", "image,audio", "--no-gate", "--min-parity", "0", "--no-progress"],
              lambda c: c.int8, lambda a, b: compare_folders(a, b), consumer_folder_absent),
    StageCase("export", ("export.file", "artifact.publish"),
              lambda c, o: ["export", "--ckpt", str(c.int8), "--target", "onnx", "--towers", "image",
                            "--out", str(o), "--no-progress"],
              lambda c: c.export, lambda a, b: compare_folders(a, b), consumer_folder_absent),
    StageCase("gallery", ("gallery.batch", "gallery.index", "gallery.publish"),
              lambda c, o: ["gallery", "build", "--ckpt", str(c.teacher), "--captions", str(c.world), "--split",
                            "test", "--renderer", "procedural", "--batch-size", "8", "--threads", "1", "--workers", "1",
                            "--out", str(o), "--no-progress"],
              lambda c: c.gallery, compare_gallery, consumer_gallery),
    StageCase("map", ("map.spec", "map.chunk", "map.summary"),
              lambda c, o: ["map", "--ckpt", str(c.teacher), "--bbox", MAP_BBOX, "--cols", "8", "--chunk", "8",
                            "--workers", "0", "--query", "birds chirping in the forest", "--out", str(o),
                            "--no-progress"],
              lambda c: c.maps, compare_maps, consumer_map),
    StageCase("bundle", ("bundle.copy", "bundle.publish"),
              lambda c, o: ["bundle", "--export", str(c.export), "--gallery", str(c.gallery), "--region",
                            BUNDLE_REGION, "--overview-levels", "0", "--context-tiles", "0", "--out", str(o),
                            "--no-progress"],
              lambda c: c.bundle, compare_bundle, consumer_bundle),
]}
ORDER = ("world", "train", "distill", "quantize", "export", "gallery", "map", "bundle")


def build_chain(root: Path) -> Chain:
    """Every stage once, uninterrupted, in this process: the inputs of the faulted runs and their references."""
    root = Path(root)
    c = Chain(root, *(root / n for n in ("world", "teacher", "student", "int8", "export", "gallery", "maps",
                                         "bundle")))
    for name, out in zip(ORDER, (c.world, c.teacher, c.student, c.int8, c.export, c.gallery, c.maps, c.bundle)):
        done = root / f".{name}.ok"
        if done.exists():
            continue
        code = in_process(STAGES[name].argv(c, out))
        if code != 0:
            raise RuntimeError(f"the reference {name} run failed (exit {code})")
        done.write_text("")
    return c


@dataclass
class FaultResult:
    stage: str
    label: str
    n: int
    killed: bool  # the process died by SIGKILL at the point (False: it finished before reaching it)
    accepted: str | None  # what a consumer wrongly accepted in between (None: nothing)
    rerun_exit: int
    diffs: list[str]
    litter_bytes: int  # staging/temp bytes left beside the artifact after the rerun
    kill_s: float
    rerun_s: float
    stderr: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def recovered(self) -> bool:
        return self.accepted is None and self.rerun_exit == 0 and not self.diffs and self.litter_bytes == 0


def run_cli(argv: list[str], *, fault: str | None = None, log: Path | None = None, fsize: int | None = None,
            timeout: float = 600, wait: bool = True) -> subprocess.CompletedProcess | subprocess.Popen:
    """``sat2sound ARGV`` as a subprocess, with a fault plan, a fault-point log, a file-size limit (RLIMIT_FSIZE:
    a write past it fails with EFBIG, as on a full disk); ``wait=False`` returns the running Popen."""
    env = {k: v for k, v in os.environ.items() if k not in (FAULT_ENV, FAULT_LOG_ENV)}
    if fault:
        env[FAULT_ENV] = fault
    if log:
        env[FAULT_LOG_ENV] = str(log)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # as the in-process runs: floats do not move with threads

    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    cmd = [sys.executable, "-m", "core.cli", *argv]
    if not wait:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=limit if fsize else None, start_new_session=True)
    # Output to files, not pipes: a killed command's worker processes (a pool) would hold pipes open forever.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=err, text=True,
                                preexec_fn=limit if fsize else None, start_new_session=True)
        try:
            proc.wait(timeout)
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # what a power cut does to its workers too
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read())


def litter(parent: Path, out: Path) -> int:
    """Bytes of hidden staging / temp entries left beside or inside ``out`` (a killed writer's leftovers)."""
    total = 0
    spots = [p for p in parent.glob(f".{out.name}.*")] + [p for p in out.rglob(".*") if p.name != ".lock"
                                                          and (".tmp" in p.name or ".old" in p.name)]
    for p in spots:
        total += p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return total


def run_fault(case: StageCase, chain: Chain, work: Path, label: str, n: int, *, in_process_rerun: bool = True
              ) -> FaultResult:
    """Kill ``case``'s command at ``label``:``n``, check the consumer, rerun, compare with the reference."""
    out = Path(work) / case.name
    argv = case.argv(chain, out)
    t0 = time.perf_counter()
    proc = run_cli(argv, fault=f"{label}:{n}")
    kill_s = time.perf_counter() - t0
    killed = proc.returncode == -signal.SIGKILL
    accepted = case.consumer(out)
    t1 = time.perf_counter()
    code = in_process(argv) if in_process_rerun else run_cli(argv).returncode
    rerun_s = time.perf_counter() - t1
    diffs = case.compare(case.reference(chain), out) if code == 0 else ["the rerun failed"]
    return FaultResult(case.name, label, n, killed, accepted, code, diffs, litter(out.parent, out), kill_s, rerun_s,
                       stderr=proc.stderr[-400:] if not killed else "")


def count_points(case: StageCase, chain: Chain, work: Path) -> tuple[dict[str, int], float]:
    """How many times a clean run of ``case`` passes each of its labels, and how long it takes (a subprocess)."""
    log = Path(work) / f"{case.name}.points"
    log.unlink(missing_ok=True)
    t0 = time.perf_counter()
    proc = run_cli(case.argv(chain, Path(work) / case.name), log=log)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{case.name}: clean run failed: {proc.stderr[-600:]}")
    counts: dict[str, int] = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        counts[line] = counts.get(line, 0) + 1
    return counts, seconds
