"""Inputs that used to end in a traceback: bytes that are not UTF-8, a map grid larger than memory, a region all over
open water (each now one clear line, or a map without the land-only scores)."""

from __future__ import annotations

import pytest

from contracts.errors import ConfigError
from core.cli import main
from core.maps.grid import BBox, check_grid_fits, make_grid


def test_non_utf8_argument_is_one_clear_line(capsys):
    bad = b"waves \xff\xfe".decode("utf-8", "surrogateescape")  # what Python makes of such bytes in argv
    assert main(["gallery", "query", "somewhere", "--text", bad]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not valid UTF-8" in err and "\\udcff" in err


def test_a_grid_too_large_for_memory_is_refused_up_front():
    grid = make_grid(BBox.parse("-125,24.5,-66.5,49.5"), 200_000)
    with pytest.raises(ConfigError, match="--cols 200000 asks for .* GiB"):
        check_grid_fits(grid.size, 192, "--cols 200000", available=24 * 2**30)
    check_grid_fits(make_grid(BBox.parse("-125,24.5,-66.5,49.5"), 160).size, 192, "--cols 160",
                    available=24 * 2**30)
