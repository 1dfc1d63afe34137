"""``python -m export --ckpt DIR --target coreml --out DIR``: the same command as ``sat2sound export``."""

from __future__ import annotations

import sys

from core.cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    return cli_main(["export", *(sys.argv[1:] if argv is None else argv)], prog="python -m export")


if __name__ == "__main__":
    sys.exit(main())
