"""``python -m export --model DIR --target coreml --out DIR``: the same command as ``sat2sound export``.

Its own parser (same arguments, export/cli.py) so ``python -m export --help`` lists them; errors a user can cause
are printed as one line with exit code 2, as the ``sat2sound`` CLI does.
"""

from __future__ import annotations

import argparse
import os
import sys

from contracts.errors import Sat2SoundError
from export import cli


def main(argv: list[str] | None = None) -> int:
    for key, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false")):
        os.environ.setdefault(key, value)
    parser = argparse.ArgumentParser(prog="python -m export", description=cli.__doc__.split("\n\n")[0])
    cli.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return int(cli.run(args) or 0)
    except Sat2SoundError as exc:
        print(f"python -m export: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("python -m export: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
