"""Writing artifact folders atomically: build in a staging folder, then swap it into place in one rename."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from contracts.faults import fault_point


@contextlib.contextmanager
def written_beside(path: Path) -> Iterator[Path]:
    """A temporary file in ``path``'s folder (created if missing) to write into; when the block ends without an
    error it is ``os.replace``d onto ``path``, else removed: a reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def move_into_place(stage: Path, out: Path) -> None:
    """Rename the finished ``stage`` folder to ``out``. An existing ``out`` (replaced with --force) is moved aside
    first and removed only once the new folder is in place, so a failure leaves the old artifact untouched."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    fault_point("artifact.publish")
    try:
        os.replace(stage, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
