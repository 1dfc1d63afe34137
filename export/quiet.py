"""Silence converters that print progress bars and advice to stdout/stderr (coremltools, litert-torch, quantizers).

The export has its own progress bar; a converter's forty lines of "Running MIL pipeline" per tower hide it. Errors
still surface as exceptions. C-level logs (absl) write to the file descriptor directly and are not caught here.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet() -> Iterator[io.StringIO]:
    """Redirect Python-level stdout/stderr into a buffer, raise the root log level, ignore warnings."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    sink = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            yield sink
    finally:
        root.setLevel(level)
