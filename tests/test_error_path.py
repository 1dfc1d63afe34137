"""The one error path: user errors, OS errors and memory exhaustion are one line each with a non-zero exit."""

from __future__ import annotations

import errno

import pytest

from contracts.errors import DataError, describe_os_error, run_guarded
from core.cli import main


def _raise(exc):
    def go():
        raise exc
    return go


@pytest.mark.parametrize("exc, code, line", [
    (DataError("bad row", path="x.parquet"), 2, "prog: error: bad row (file x.parquet)"),
    (PermissionError(errno.EACCES, "Permission denied", "/ro/out"), 1, "prog: error: Permission denied: /ro/out"),
    (OSError(errno.EROFS, "Read-only file system", "/ro/out/model.safetensors"), 1,
     "prog: error: Read-only file system: /ro/out/model.safetensors"),
    (OSError(errno.ENOSPC, "No space left on device", "/full/x"), 1, "prog: error: No space left on device: /full/x"),
    (FileExistsError(errno.EEXIST, "File exists", "/a/file", None, "/a/file/out"), 1,
     "prog: error: File exists: /a/file -> /a/file/out"),
    (MemoryError(), 1, "prog: error: out of memory"),
    (KeyboardInterrupt(), 130, "prog: interrupted; finished work is kept"),
])
def test_each_failure_is_one_line_and_a_non_zero_exit(exc, code, line, capsys):
    assert run_guarded("prog", _raise(exc)) == code
    err = capsys.readouterr().err
    assert err.startswith(line) and err.count("\n") == 1 and "Traceback" not in err


def test_a_bug_keeps_its_traceback():
    with pytest.raises(ZeroDivisionError):
        run_guarded("prog", lambda: 1 / 0)


def test_an_os_error_without_a_path_still_says_its_cause():
    assert describe_os_error(OSError(errno.EIO, "Input/output error")) == "Input/output error"


def test_an_output_folder_under_a_file_is_one_line_from_the_cli(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code = main(["data", "build", "--preset", "tiny", "--n-samples", "2", "--out", str(blocker / "sub" / "w"),
                 "--workers", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code in (1, 2) and str(blocker) in err and "Traceback" not in err and err.count("\n") == 1
