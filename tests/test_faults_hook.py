"""The fault hook and the durability helpers in contracts: the kill lands at the n-th hit, atomic writes never
show half a file, a second writer is refused, stale staging is swept, sizes are refused up front, and every
environment failure reaches the user as one line."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys

import pytest

from contracts import durability, faults
from contracts.errors import ConfigError, environment_cause, run_guarded

HOOK = ("from contracts.faults import fault_point\n"
        "for i in range(5):\n    print(i, flush=True)\n    fault_point('x.y')\n")


def _hook(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", HOOK], env={**os.environ, **env}, capture_output=True, text=True)


def test_the_hook_kills_at_the_nth_hit_and_logs_every_point(tmp_path):
    log = tmp_path / "points"
    r = _hook({faults.FAULT_ENV: "x.y:3", faults.FAULT_LOG_ENV: str(log)})
    assert r.returncode == -9 and r.stdout.split() == ["0", "1", "2"]
    assert log.read_text().splitlines() == ["x.y"] * 3
    assert _hook({faults.FAULT_ENV: "x.*:2"}).stdout.split() == ["0", "1"]  # a prefix pattern
    assert _hook({faults.FAULT_ENV: "other:1"}).returncode == 0  # another label: no effect
    assert _hook({faults.FAULT_ENV: "x.y:zero,,:"}).returncode == 0  # malformed plans never fail a run


def test_parse_plan_reads_counts_and_stops():
    faults.reset()
    assert faults.parse_plan("a.b:2, c.*:1:stop") == {"a.b": 2, "c.*": 1}
    assert faults._stop == {"c.*"}
    faults.reset()


def test_atomic_writes_leave_no_temp_and_sweep_a_dead_writers(tmp_path):
    target = tmp_path / "index.json"
    stale = tmp_path / ".index.json.999999999-abc.tmp"  # a pid that cannot be alive
    stale.write_text("half")
    durability.atomic_write_text(target, "{}")
    assert target.read_text() == "{}" and sorted(p.name for p in tmp_path.iterdir()) == ["index.json"]


def test_staging_folders_carry_the_pid_and_only_dead_ones_are_swept(tmp_path):
    dead = tmp_path / ".out.tmp-999999999-x"
    dead.mkdir()
    (dead / "f").write_bytes(b"x" * 10)
    alive = tmp_path / f".out.tmp-{os.getppid()}-y"
    alive.mkdir()
    stage = durability.staging_folder(tmp_path / "out")
    assert stage.name.startswith(f".out.tmp-{os.getpid()}-") and not dead.exists() and alive.exists()


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path):
    with durability.exclusive_lock(tmp_path, what="the gallery"):
        code = ("from contracts.durability import exclusive_lock\n"
                f"with exclusive_lock({str(tmp_path)!r}, what='the gallery'): pass\n")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert r.returncode == 1 and f"being written by another process (pid {os.getpid()})" in r.stderr
    with durability.exclusive_lock(tmp_path, what="the gallery"):  # released: free again
        pass


def test_sizes_are_refused_before_the_work_starts(tmp_path):
    with pytest.raises(ConfigError, match="needs about 8.00 GiB of memory and 4.00 GiB is available"):
        durability.check_room("--n-samples 1000000", memory=8 * 2**30, available_memory=4 * 2**30)
    with pytest.raises(ConfigError, match="of disk at .* and 1.0 MiB is free"):
        durability.check_room("the gallery", disk=2**30, out=tmp_path / "g", free_disk=2**20)
    durability.check_room("a small job", memory=2**20, disk=2**20, out=tmp_path)
    assert durability.free_disk_bytes(tmp_path / "not" / "yet") > 0
    assert durability.available_memory_bytes() > 0


@pytest.mark.parametrize("exc, line", [
    (RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })"), "No space left on device"),
    (sqlite3.OperationalError("database or disk is full"), "database: database or disk is full"),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), "text that is not valid utf-8 at byte 0"),
    (durability.BusyError("the gallery g is being written by another process (pid 1)"), "being written"),
])
def test_wrapped_environment_failures_are_one_line(exc, line, capsys):
    assert run_guarded("prog", lambda: (_ for _ in ()).throw(exc)) != 0
    err = capsys.readouterr().err
    assert line in err and err.count("\n") == 1


def test_a_bug_wrapped_around_nothing_keeps_its_traceback():
    assert environment_cause(ValueError("a bug")) is None
    assert durability.is_disk_full(OSError(errno.EFBIG, "File too large"))


POOL = """
import os, signal, multiprocessing
from concurrent.futures import ProcessPoolExecutor
from contracts.durability import die_with_parent
if __name__ == "__main__":
    pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent)
    print(pool.submit(os.getpid).result(), flush=True)  # a worker's pid
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_pool_workers_die_with_a_killed_parent(tmp_path):
    import time

    script = tmp_path / "pool.py"
    script.write_text(POOL)
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert r.returncode == -9
    pid = int(r.stdout.split()[-1])
    for _ in range(50):
        if not os.path.exists(f"/proc/{pid}"):
            break
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{pid}"), "a worker outlived its killed parent"
