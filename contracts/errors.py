"""User-facing errors: the CLI prints them as one clear line and exits non-zero, without a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable


class Sat2SoundError(Exception):
    """Base of every error a user can cause (bad input, mismatched artifacts)."""

    exit_code = 2


class ConfigError(Sat2SoundError, ValueError):
    """A preset, config file or option that does not exist or does not fit."""


class DataError(Sat2SoundError):
    """Bad dataset input. Always names the file (or folder) and, where there is one, the field and sample."""

    def __init__(self, message: str, *, path: object = None, field: str | None = None, sample: object = None):
        where = []
        if path is not None:
            where.append(f"file {path}")
        if sample is not None:
            where.append(f"sample {sample}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)
        self.path, self.field, self.sample = path, field, sample


class CheckpointError(Sat2SoundError):
    """A checkpoint or artifact folder that is missing, corrupt, or does not match what was asked for."""


class TrainingError(Sat2SoundError):
    """Training cannot go on (e.g. a non-finite loss); the last good checkpoint is kept."""


def describe_os_error(exc: OSError) -> str:
    """One line naming the path(s) and the cause of an OS error: permission, read-only, disk full, file exists..."""
    cause = exc.strerror or type(exc).__name__
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    return f"{cause}: {' -> '.join(paths)}" if paths else cause


def run_guarded(prog: str, main: Callable[[], int | None]) -> int:
    """The one error path of every entry point: a user error is one line on stderr and a non-zero exit; so is an
    OS error (it names the path and the cause) and running out of memory; Ctrl-C says that finished work is kept.
    Anything else is a bug and keeps its traceback."""
    try:
        return int(main() or 0)
    except Sat2SoundError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"{prog}: error: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    except MemoryError:
        print(f"{prog}: error: out of memory; ask for less at once (a smaller grid, batch or gallery)",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; finished work is kept and a rerun resumes", file=sys.stderr)
        return 130
