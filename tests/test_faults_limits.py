"""A full disk and a second writer: a stage under RLIMIT_FSIZE stops with one clear line and leaves no corrupt
artifact; two processes building one gallery or filling one map cache at once never corrupt it."""

from __future__ import annotations

import signal
import time

from benchmarks.fault_stages import STAGES, litter, run_cli


def _one_line_error(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if "error" in ln]
    assert "Traceback" not in stderr, stderr[-800:]
    assert lines, stderr[-800:]
    return lines[-1]


def test_a_world_build_on_a_full_disk_is_one_line_and_leaves_nothing(fault_chain, tmp_path):
    out = tmp_path / "world"
    proc = run_cli(STAGES["world"].argv(fault_chain, out), fsize=40_000)
    assert proc.returncode == 1
    line = _one_line_error(proc.stderr)
    assert "File too large" in line and str(tmp_path) in line
    assert not out.exists() and litter(tmp_path, out) == 0  # the staging folder went with the error


def test_a_gallery_build_on_a_full_disk_is_clear_refused_by_readers_and_resumes(fault_chain, tmp_path):
    case = STAGES["gallery"]
    out = tmp_path / "gallery"
    proc = run_cli(case.argv(fault_chain, out), fsize=60_000)
    assert proc.returncode in (1, 2)
    line = _one_line_error(proc.stderr)
    assert f"cannot write {out / 'gallery.db'}" in line and "ulimit -f" in line and "rerun" in line
    assert case.consumer(out) is None  # the reader refuses the unfinished gallery
    assert run_cli(case.argv(fault_chain, out)).returncode == 0  # room again: the same command finishes it
    assert case.compare(fault_chain.gallery, out) == []


def _wait_stopped(proc, seconds: float = 120) -> None:
    """Wait until ``proc`` has stopped itself at its fault point (state T in /proc)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-800:]
        with open(f"/proc/{proc.pid}/stat") as f:
            if f.read().split(") ", 1)[1].startswith("T"):
                return
        time.sleep(0.1)
    raise AssertionError("the first writer never reached its fault point")


def test_a_second_gallery_builder_is_refused_while_the_first_holds_the_folder(fault_chain, tmp_path):
    case = STAGES["gallery"]
    out = tmp_path / "gallery"
    first = run_cli(case.argv(fault_chain, out), fault="gallery.batch:1:stop", wait=False)
    try:
        _wait_stopped(first)  # one batch committed, the folder locked, the first builder frozen
        second = run_cli(case.argv(fault_chain, out))
        assert second.returncode == 2
        assert "being written by another process" in _one_line_error(second.stderr)
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-800:]
    assert case.compare(fault_chain.gallery, out) == []


def test_two_processes_filling_one_map_cache_agree(fault_chain, tmp_path):
    case = STAGES["map"]
    out = tmp_path / "maps"
    first = run_cli(case.argv(fault_chain, out), fault="map.chunk:1:stop", wait=False)
    try:
        _wait_stopped(first)  # its first chunk is written to a temp file, not yet renamed
        second = run_cli(case.argv(fault_chain, out))  # fills every chunk, the first one included
        assert second.returncode == 0, second.stderr[-800:]
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-800:]  # it renames its (identical) chunk and goes on
    assert case.compare(fault_chain.maps, out) == []
    assert litter(out.parent, out) == 0
