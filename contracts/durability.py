"""Writing that survives a crash and a second writer: atomic files, an exclusive folder lock, room checks up front.

- :func:`atomic_write_bytes` / :func:`atomic_write_text`: a unique temporary file beside the target, then
  ``os.replace``; a reader sees the old file or the new one, never half of one, and two writers never share a
  temporary name.
- :func:`exclusive_lock`: an ``fcntl.flock`` on ``FOLDER/.lock`` held while one process builds into a folder (a
  gallery); a second process is refused at once with a line naming the folder and the holder's pid (or waits, with
  ``wait=True``). The kernel drops the lock when its holder dies, SIGKILL included, so no stale lock is left.
- :func:`staging_folder`: the temporary folder an artifact is built in before its rename into place, named with the
  builder's pid, so the next build removes what a killed one left behind (its pid is gone) and nothing else.
- :func:`check_room`: refuse before the work starts when the estimated bytes of a job do not fit in the memory or
  the disk available (``/proc/meminfo`` MemAvailable, ``shutil.disk_usage``).

Torch-free, stdlib only (the device side may use it).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

from contracts.errors import ConfigError, Sat2SoundError
from contracts.faults import fault_point

LOCK_FILE = ".lock"


class BusyError(Sat2SoundError):
    """Another process is writing the same artifact."""


def atomic_write_bytes(path: str | Path, data: bytes, *, label: str = "write") -> Path:
    """Write ``data`` to ``path`` through a unique temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path.parent, f".{path.name}.")  # a killed writer's temp file of this target
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        fault_point(label)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | Path, text: str, *, label: str = "write") -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), label=label)


def acquire_lock(folder: str | Path, *, what: str, wait: bool = False) -> int:
    """Lock ``folder/.lock`` exclusively and return its descriptor (``release_lock`` it, or let the process end).
    Busy: BusyError naming the folder and the holder's pid (or wait for it, with ``wait=True``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise BusyError(f"{what} {folder} is being written by another process (pid {holder}); wait for it to "
                        "finish, or write to another folder") from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def release_lock(fd: int) -> None:
    """Drop a lock from :func:`acquire_lock` (the file stays: removing it would race a waiting process)."""
    with contextlib.suppress(OSError):
        os.close(fd)


@contextlib.contextmanager
def exclusive_lock(folder: str | Path, *, what: str, wait: bool = False) -> Iterator[Path]:
    """Hold ``folder/.lock`` exclusively for the block; see :func:`acquire_lock`."""
    fd = acquire_lock(folder, what=what, wait=wait)
    try:
        yield Path(folder) / LOCK_FILE
    finally:
        release_lock(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(parent: str | Path, prefix: str) -> int:
    """Remove ``parent/<prefix><pid>[-.]*`` entries whose process is gone (a killed build's staging); returns the
    bytes freed."""
    parent, freed = Path(parent), 0
    if not parent.is_dir():
        return 0
    for entry in parent.glob(f"{prefix}*"):
        pid = entry.name[len(prefix):].replace(".", "-").split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _pid_alive(int(pid)):
            continue
        files = [entry] if entry.is_file() else [f for f in entry.rglob("*") if f.is_file()]
        freed += sum(f.stat().st_size for f in files if f.exists())
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    return freed


def staging_folder(out: str | Path) -> Path:
    """A new empty folder beside ``out`` (``.NAME.tmp-PID-XXXX``) to build the artifact in and then rename onto
    ``out``; stale staging folders of ``out`` left by killed processes are removed first."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{out.name}.tmp-"
    sweep_stale(out.parent, prefix)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=out.parent))


def die_with_parent() -> None:
    """A pool worker's initializer: on Linux, ask the kernel to SIGKILL this worker when its parent dies. Without it,
    a killed stage's pool workers live on, holding memory and its output pipes, with no one to give them work."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: nothing to ask for


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo, else physical pages x page size; None where neither can be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def free_disk_bytes(path: str | Path) -> int | None:
    """Free bytes on the file system that holds ``path`` (or its nearest existing parent); None if unknown."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def _gib(n: float) -> str:
    if n >= 2**40:
        return f"{n / 2**40:,.1f} TiB"
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.1f} MiB"


def check_room(what: str, *, memory: int = 0, disk: int = 0, out: str | Path | None = None,
               available_memory: int | None = None, free_disk: int | None = None) -> None:
    """Refuse (ConfigError naming ``what``) a job whose estimated ``memory`` bytes exceed half the available memory
    or whose ``disk`` bytes exceed the free space where ``out`` lives. Unknown availability is not refused."""
    if memory > 0:
        avail = available_memory_bytes() if available_memory is None else available_memory
        if avail is not None and memory > avail // 2:
            raise ConfigError(f"{what} needs about {_gib(memory)} of memory and {_gib(avail)} is available: "
                              "ask for less at once")
    if disk > 0 and out is not None:
        free = free_disk_bytes(out) if free_disk is None else free_disk
        if free is not None and disk > free:
            raise ConfigError(f"{what} needs about {_gib(disk)} of disk at {out} and {_gib(free)} is free: "
                              "free some space or write elsewhere")


@contextlib.contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """Give an OSError raised without a file name (pyarrow's, a codec's) the ``path`` being written, so the one
    line the user sees says where: ``File too large: /data/world/data/train-00001-of-00004.parquet``."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None:
            raise
        code = exc.errno or _errno_in(str(exc))
        raise OSError(code, os.strerror(code) if code else str(exc), str(path)) from exc


def _errno_in(text: str) -> int | None:
    import re

    found = re.search(r"errno (\d+)", text, re.IGNORECASE)
    return int(found.group(1)) if found else None


def space_note(path: str | Path) -> str:
    """What limits writing at ``path`` now: the free space on its disk and this process's file-size limit."""
    import resource

    parts = []
    free = free_disk_bytes(path)
    if free is not None:
        parts.append(f"{_gib(free)} free on its disk")
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != resource.RLIM_INFINITY:
        parts.append(f"files limited to {_gib(soft)} (ulimit -f)")
    return ", ".join(parts) or "no space figures available"


def is_disk_full(exc: BaseException) -> bool:
    """True for the errors a full disk (or a file-size limit) gives: ENOSPC, EFBIG, EDQUOT, SQLite's 'disk is full'."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
    return "disk is full" in str(exc) or "too large" in str(exc)
