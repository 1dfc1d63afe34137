"""The CLI's one vocabulary: shared flags from one parent parser, model inputs spelt ``--ckpt``, old spellings kept
for one release with a deprecation message.

- ``--ckpt DIR``     a model input (teacher, student or int8 checkpoint folder), in every command that takes one
- ``--export DIR``   an export folder (``sat2sound export``'s output)
- ``--data DIR``, ``--out DIR``, ``--preset NAME`` (every preset listed), ``--cache-dir DIR``, ``--no-progress``
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from contracts.errors import ConfigError

SHARED_FLAGS = ("preset", "cache-dir", "no-progress")
REMOVED_IN = "0.3"


def _preset_names() -> tuple[str, ...]:
    from core.config import PRESETS

    return tuple(PRESETS)


def shared_parent(flags: Sequence[str], *, preset_default: str | None = "default") -> argparse.ArgumentParser:
    """One parent parser holding the shared ``flags`` (names from ``SHARED_FLAGS``), for ``parents=[...]``."""
    unknown = sorted(set(flags) - set(SHARED_FLAGS))
    if unknown:
        raise ValueError(f"unknown shared flags {unknown}; known: {', '.join(SHARED_FLAGS)}")
    parent = argparse.ArgumentParser(add_help=False)
    if "preset" in flags:
        names = _preset_names()
        default = f" (default: {preset_default})" if preset_default else ""
        parent.add_argument("--preset", default=preset_default, metavar="NAME",
                            help=f"config preset: {', '.join(names)}{default}")
    if "cache-dir" in flags:
        parent.add_argument("--cache-dir", default=None, help="where decoded features and reusable exports are cached")
    if "no-progress" in flags:
        parent.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parent


class DeprecatedAlias(argparse.Action):
    """An old spelling of an option (or a positional): stores into the new option's dest and says so on stderr."""

    def __init__(self, option_strings, dest, *, new: str, target: str | None = None, **kwargs):
        self.new, self.target = new, target or dest
        kwargs.setdefault("help", argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if self.nargs == 0:  # a flag: its value is the const
            values = self.const
        if values is None or values == []:  # an absent optional positional
            return
        old = option_string or f"a positional {self.metavar or 'argument'}"
        print(f"{parser.prog}: warning: {old} is deprecated, use {self.new} (the old spelling goes in "
              f"{REMOVED_IN})", file=sys.stderr)
        setattr(namespace, self.target, values)


def add_path_input(parser: argparse.ArgumentParser, flag: str, *, required: bool, help: str,
                   old: Sequence[str] = (), old_positional: str | None = None, default=None) -> None:
    """``flag`` (``--ckpt`` or ``--export``) with its old spellings accepted and flagged as deprecated.

    When ``required``, the check runs after parsing (``check_required``) so that an old spelling satisfies it.
    """
    dest = flag.lstrip("-").replace("-", "_")
    parser.add_argument(flag, dest=dest, default=default, metavar="DIR",
                        help=help + (" (required)" if required else ""))
    for spelling in old:
        parser.add_argument(spelling, dest=dest, action=DeprecatedAlias, new=flag, default=argparse.SUPPRESS)
    if old_positional:
        parser.add_argument(f"_{dest}_positional", nargs="?", action=DeprecatedAlias, new=flag, target=dest,
                            metavar=old_positional,
                            default=argparse.SUPPRESS)
    if required:
        needed = list(parser.get_default("_required_inputs") or [])
        parser.set_defaults(_required_inputs=[*needed, (dest, flag)])


def add_ckpt(parser: argparse.ArgumentParser, *, required: bool = True, help: str = "checkpoint folder",
             old: Sequence[str] = (), old_positional: str | None = None, default=None) -> None:
    add_path_input(parser, "--ckpt", required=required, help=help, old=old, old_positional=old_positional,
                   default=default)


def add_export(parser: argparse.ArgumentParser, *, required: bool = True, help: str = "export folder",
               old: Sequence[str] = ()) -> None:
    add_path_input(parser, "--export", required=required, help=help, old=old)


def check_required(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """argparse's own 'required' error for the path inputs that neither the new nor an old spelling gave."""
    needed = getattr(args, "_required_inputs", None) or []
    missing = [flag for dest, flag in needed if getattr(args, dest, None) is None]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")


def add_shared(parser: argparse.ArgumentParser, *flags: str, preset_default: str | None = "default") -> None:
    """Give ``parser`` the shared ``flags``, taken from the one parent parser (as ``parents=[...]`` would)."""
    parser._add_container_actions(shared_parent(flags, preset_default=preset_default))


def parse_lat_lon(text: str, flag: str = "--at") -> tuple[float, float]:
    """``LAT,LON`` in degrees -> (lat, lon); anything else, or a point off the Earth, is a ConfigError naming
    ``flag``."""
    try:
        lat, lon = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{flag} wants LAT,LON (e.g. {flag}=42.0,-93.5), got {text!r}") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ConfigError(f"{flag} {lat},{lon} is not a place on Earth (lat -90..90, lon -180..180)")
    return lat, lon
