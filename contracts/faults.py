"""The fault-injection hook: kill this process with SIGKILL at the n-th time a write path passes a named point.

Every stage that writes an artifact calls :func:`fault_point` with a label at the places where a crash would hurt
most (between two files of one artifact, just before a folder is renamed into place, after each committed batch).
Normally the call costs one dictionary lookup and does nothing. With the environment variable::

    SAT2SOUND_FAULT_AT=<label>:<n>[:stop][,<label>:<n>...]     e.g. SAT2SOUND_FAULT_AT=gallery.batch:2

the process sends itself SIGKILL the n-th time (1-based) it reaches ``<label>``: no ``finally``, no ``atexit``, no
flush, exactly what a power cut or the OOM killer leaves behind. With ``:stop`` it sends itself SIGSTOP instead and
waits there, holding whatever it holds, until someone sends SIGCONT (the concurrency tests start a second writer
in that window). A label may end in ``*`` to count every label
with that prefix (``world.*:3``). With ``SAT2SOUND_FAULT_LOG=FILE`` each point reached is appended to FILE as one
line (its label), so a test or benchmark can first count the points of a clean run and then seed kills among
them. The fault tests (``tests/test_faults*.py``) and the sweep (``python -m benchmarks.faults``) use both.

The labels in use are listed in ``docs/reliability.md``. Torch-free, stdlib only.
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "SAT2SOUND_FAULT_AT"
FAULT_LOG_ENV = "SAT2SOUND_FAULT_LOG"

_plan: dict[str, int] | None = None  # label (or prefix*) -> the hit that kills; parsed once per process
_stop: set[str] = set()  # labels whose hit stops (SIGSTOP) instead of killing
_hits: dict[str, int] = {}


def parse_plan(text: str | None) -> dict[str, int]:
    """``"a.b:2,c.*:1:stop"`` -> {"a.b": 2, "c.*": 1} (and "c.*" stops); malformed parts are ignored (the hook must
    never fail a run)."""
    plan: dict[str, int] = {}
    for part in (text or "").split(","):
        part = part.strip()
        stop = part.endswith(":stop")
        label, _, n = part.removesuffix(":stop").rpartition(":")
        if label and n.isdigit() and int(n) > 0:
            plan[label] = int(n)
            if stop:
                _stop.add(label)
    return plan


def _matches(pattern: str, label: str) -> bool:
    return label.startswith(pattern[:-1]) if pattern.endswith("*") else label == pattern


def fault_point(label: str) -> None:
    """A point where a crash is survivable by design; see the module docstring. Cheap when no fault is asked for."""
    global _plan
    if _plan is None:
        _plan = parse_plan(os.environ.get(FAULT_ENV))
        if os.environ.get(FAULT_LOG_ENV):
            _plan["\0log"] = 0  # keep the slow path on when logging
    if not _plan:
        return
    log = os.environ.get(FAULT_LOG_ENV)
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(label + "\n")
    for pattern, n in _plan.items():
        if n and _matches(pattern, label):
            _hits[pattern] = _hits.get(pattern, 0) + 1
            if _hits[pattern] == n:
                os.kill(os.getpid(), signal.SIGSTOP if pattern in _stop else signal.SIGKILL)


def reset() -> None:
    """Forget the parsed plan and the counts (tests that change the environment in-process)."""
    global _plan
    _plan = None
    _hits.clear()
    _stop.clear()
