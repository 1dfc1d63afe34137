"""User-facing errors: the CLI prints them as one clear line and exits non-zero, without a traceback."""

from __future__ import annotations

import os
import re
import sqlite3
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


# SQLite's messages for what the environment did (a full disk, a lock, a read-only file), not a bug in the SQL
_SQLITE_ENVIRONMENT = ("disk is full", "database is locked", "readonly database", "unable to open database",
                       "disk I/O error", "malformed", "not a database", "too big")


def environment_cause(exc: BaseException) -> str | None:
    """One line for an error the environment caused, however a library wrapped it: an OSError anywhere in the
    chain, SQLite's full disk / lock / read-only, or a Rust library's ``Os { code: N }``; None for anything else."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, OSError) and (seen.errno or seen.strerror):
            return describe_os_error(seen)
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    if isinstance(exc, sqlite3.Error) and any(m in text for m in _SQLITE_ENVIRONMENT):
        return f"database: {text}"
    code = re.search(r"Os \{ code: (\d+)", text)
    if code:
        return os.strerror(int(code.group(1)))
    return None


def describe_decode_error(exc: UnicodeError) -> str:
    """One line for text that is not in the encoding it claims (a file or an argument), with the byte position."""
    where = f" at byte {exc.start}" if isinstance(exc, UnicodeDecodeError) else ""
    return f"text that is not valid {getattr(exc, 'encoding', 'UTF-8')}{where} ({getattr(exc, 'reason', exc)}): " \
           "check the file's or argument's encoding"


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
    except UnicodeError as exc:
        print(f"{prog}: error: {describe_decode_error(exc)}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"{prog}: error: out of memory; ask for less at once (a smaller grid, batch or gallery)",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; finished work is kept and a rerun resumes", file=sys.stderr)
        return 130
    except Exception as exc:  # a library's wrapper around a full disk or a read-only file: still one line
        cause = environment_cause(exc)
        if cause is None:
            raise
        print(f"{prog}: error: {cause}", file=sys.stderr)
        return 1
