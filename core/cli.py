"""The one command-line tool, ``sat2sound``, with a subcommand per pipeline stage.

Each subcommand lives in the module named in ``COMMANDS`` and exposes ``add_arguments(parser)`` and
``run(args) -> int``. Modules are imported only when their subcommand runs, so ``sat2sound --help`` is quick and
the device-side commands never pull in torch.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import re
import sys

from contracts.errors import run_guarded
from core.cli_args import check_required

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("core.data.cli", "build the embedded world dataset, or inspect/validate a dataset folder"),
    "train": ("core.train", "train the full-precision Sat2Sound teacher"),
    "evaluate": ("core.evaluate", "retrieval metrics (R@10%%, median rank) the paper's way"),
    "map": ("core.maps.cli", "soundscape map of a region for a text or audio query"),
    "ground": ("core.grounding.cli", "grounding heat map of a text query inside one tile"),
    "concepts": ("core.concepts", "which codebook concepts a dataset activates, as a contact sheet"),
    "distill": ("compress.distill", "distil the teacher into a mobile student"),
    "quantize": ("compress.quantize", "post-training int8 quantization with a quality gate"),
    "compress-report": ("compress.report", "teacher vs student vs int8: size, speed, retrieval"),
    "export": ("export.cli", "export towers to ONNX / ORT / Core ML / TFLite with parity checks"),
    "gallery": ("gallery.cli", "build or query a soundscape caption+clip gallery"),
    "bundle": ("bundle.cli", "gather a verified offline bundle for the device app"),
    "app": ("mobile_app.__main__", "run the offline Kivy app on a bundle"),
    "walk": ("mobile_app.walk", "render the spatial soundscape of a GPX walk to a stereo file"),
    "import": ("published.cli", "import a released Sat2Sound .ckpt (published weights) as a checkpoint folder"),
    "pipeline": ("core.pipeline", "run the whole chain on the embedded default, resuming finished stages"),
}


def _offline_environment() -> None:
    # Nothing may download at run time: pretrained parts come from installed packages only.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _available(module: str) -> bool:
    return importlib.util.find_spec(module.rsplit(".", 1)[0]) is not None and _spec(module) is not None


def _spec(module: str):
    try:
        return importlib.util.find_spec(module)
    except ModuleNotFoundError:
        return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sat2sound", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"sat2sound {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        if not _available(module):
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module, _parser=p)
    return parser


def _version() -> str:
    from core import __version__

    return __version__


# Options whose values are coordinate lists that may start with a minus sign ("--bbox -125,24,-66,50"): argparse
# would take such a value for an option, so it is glued to its option ("--bbox=-125,...") before parsing.
COORDINATE_OPTIONS = ("--bbox", "--region", "--at")


def _glue_negative_values(argv: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in COORDINATE_OPTIONS and i + 1 < len(argv) and re.match(r"^-\d", argv[i + 1]):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


PROJECT_LOGGERS = ("contracts", "world", "core", "published", "compress", "export", "gallery", "bundle", "mobile_app",
                   "benchmarks")


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (so a redirected or captured stderr gets the messages)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr)


def setup_logging(level: int = logging.INFO) -> None:
    """The project's messages (``logging.getLogger(__name__)`` in every module) as plain lines on stderr."""
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in PROJECT_LOGGERS:
        log = logging.getLogger(name)
        if not any(isinstance(h, _StderrHandler) for h in log.handlers):
            log.addHandler(handler)
        log.setLevel(level)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def main(argv: list[str] | None = None, *, prog: str = "sat2sound") -> int:
    """Run ``sat2sound ARGV``; ``prog`` names the program in messages (``python -m export`` runs this too)."""
    _offline_environment()
    setup_logging()
    argv = _glue_negative_values(list(sys.argv[1:] if argv is None else argv))
    bad = next((a for a in argv if not _is_utf8(a)), None)
    if bad is not None:  # bytes that are not UTF-8 arrive as lone surrogates; a tokenizer would choke on them
        print(f"{prog}: error: argument {bad.encode('utf-8', 'backslashreplace').decode()!r} is not valid UTF-8 "
              "text: retype it, or check the terminal's encoding", file=sys.stderr)
        return 2
    parser = build_parser()
    # Two passes: find the subcommand, then let its module add its own arguments.
    first, _ = parser.parse_known_args([a for a in argv if a not in ("-h", "--help")])
    if not getattr(first, "command", None):
        parser.print_help()
        return 1
    module = importlib.import_module(first._module)
    module.add_arguments(first._parser)
    args = parser.parse_args(argv)
    check_required(first._parser, args)
    return run_guarded(f"{prog} {args.command}" if prog == "sat2sound" else prog, lambda: module.run(args))


if __name__ == "__main__":
    sys.exit(main())
