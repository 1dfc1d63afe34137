"""The bad-input table: many wrong inputs across every stage and the app's bundle loading, each run the way a user
would run it, counted as a clear error (one line naming what is wrong, non-zero exit) or a traceback.

    python -m benchmarks.bad_inputs [--work DIR] [--only STAGE,...]
        -> runs/bench/bad_inputs.json, docs/bad_inputs.md (input -> the message it gets)

Every command runs in this process through ``core.cli.main`` (what ``sat2sound`` runs), with stderr captured: an
exception escaping ``main`` is a traceback; an exit of 0 on an input that should be refused is counted as
"accepted" (a few inputs that used to crash, such as a map over open water, are meant to succeed and say so).
The cases are in ``benchmarks/bad_input_cases.py``; the artifacts they need are built once (tiny preset) by
``benchmarks/fault_stages.build_chain``. ``tests/test_bad_inputs.py`` runs a subset.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from contracts.errors import Sat2SoundError

DOC = Path("docs/bad_inputs.md")
JSON = Path("runs/bench/bad_inputs.json")


@dataclass
class Outcome:
    stage: str
    input: str
    verdict: str  # "clear" | "traceback" | "accepted" | "ok" (an input meant to succeed) | "skipped"
    exit: int | None
    message: str
    seconds: float


def run_case(case, fix) -> Outcome:
    """Run one case (see bad_input_cases.Case) and classify what the user saw."""
    from core.cli import main

    err, out = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    code: int | None = None
    try:
        target = case.make(fix)
    except SkipCaseError as exc:
        return Outcome(case.stage, case.what, "skipped", None, str(exc), 0.0)
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            if callable(target):
                try:
                    target()
                    code = 0
                except Sat2SoundError as exc:  # an API call (the app's bundle loading): its error is the message
                    print(f"error: {exc}", file=err)
                    code = exc.exit_code
            else:
                code = main(list(target))
        except SystemExit as exc:  # argparse refusing an option: usage + one error line, exit 2
            code = exc.code if isinstance(exc.code, int) else 2
        except BaseException as exc:
            tb = traceback.format_exception(exc)
            return Outcome(case.stage, case.what, "traceback", None, "".join(tb[-3:]).strip()[-300:],
                           time.perf_counter() - t0)
    # the message: stderr's last error line; a report on stdout (`bundle --verify`) gives its FAIL/VERDICT lines
    said = err.getvalue() or out.getvalue()
    lines = [ln for ln in said.splitlines() if ln.strip() and ("error" in ln.lower() or ln.startswith("FAIL"))]
    text = lines[-1] if lines else (said.strip().splitlines() or [""])[-1]
    if not err.getvalue() and lines and lines[0] != text:  # a verification report: its first failure says most
        text = lines[0]
    if code == 0:
        verdict = "ok" if case.succeeds else "accepted"
    else:
        verdict = "clear" if text and "Traceback" not in said else "traceback"
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]|\r", "", text).strip().replace(str(fix.scratch.parent), "WORK")
    return Outcome(case.stage, case.what, verdict, code, text[:300], time.perf_counter() - t0)


class SkipCaseError(Exception):
    """A case this machine cannot set up (e.g. no read-only mount without root)."""


def summarise(rows: list[Outcome]) -> dict:
    counts = {v: sum(r.verdict == v for r in rows) for v in ("clear", "ok", "traceback", "accepted", "skipped")}
    return {"tried": len(rows) - counts["skipped"], **counts,
            "stages": sorted({r.stage for r in rows})}


def write_table(rows: list[Outcome], path: Path = DOC) -> Path:
    s = summarise(rows)
    out = ["# Bad inputs and the message each gets", "",
           "Written by `python -m benchmarks.bad_inputs` (tiny preset; every command run as `sat2sound` runs it).",
           f"Tried: **{s['tried']}**; clear one-line errors: **{s['clear']}**; meant to succeed and did: {s['ok']}; "
           f"tracebacks: **{s['traceback']}**; wrongly accepted: **{s['accepted']}**; skipped: {s['skipped']}.", "",
           "| # | stage | input | exit | message |", "|---:|---|---|---:|---|"]
    for i, r in enumerate(rows, 1):
        msg = r.message.replace("|", "\\|").replace("\n", " ")
        flag = "" if r.verdict in ("clear", "ok") else f"**{r.verdict}**: "
        out.append(f"| {i} | {r.stage} | {r.input.replace('|', '/')} | {r.exit if r.exit is not None else '-'} | "
                   f"{flag}{msg} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n")
    return path


def run_all(work: Path, only: set[str] | None = None, *, progress: bool = True, chain=None) -> list[Outcome]:
    """Every case (of the stages in ``only``), with the artifacts of ``chain`` (built under ``work`` if None)."""
    from tqdm.auto import tqdm

    from benchmarks.bad_input_cases import CASES, Fixtures

    fix = Fixtures.make(work, chain)
    try:
        cases = [c for c in CASES if only is None or c.stage in only]
        return [run_case(c, fix) for c in tqdm(cases, desc="bad inputs", unit="input", disable=not progress)]
    finally:
        fix.close()


def main(argv: list[str] | None = None) -> int:
    from core.cli import setup_logging

    p = argparse.ArgumentParser(prog="python -m benchmarks.bad_inputs", description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="runs/bench/bad_inputs-work", help="scratch folder (artifacts built once)")
    p.add_argument("--only", default=None, help="comma-separated stages (the table then goes to --work)")
    args = p.parse_args(argv)
    setup_logging()
    rows = run_all(Path(args.work), set(args.only.split(",")) if args.only else None)
    s = summarise(rows)
    doc, js = (DOC, JSON) if not args.only else (Path(args.work) / DOC.name, Path(args.work) / JSON.name)
    js.parent.mkdir(parents=True, exist_ok=True)  # a partial run (--only) does not replace the full table
    js.write_text(json.dumps({"summary": s, "inputs": [asdict(r) for r in rows]}, indent=1) + "\n")
    write_table(rows, doc)
    print(f"bad inputs: {s['tried']} tried, {s['clear']} clear errors, {s['ok']} meant to succeed, "
          f"{s['traceback']} tracebacks, {s['accepted']} wrongly accepted, {s['skipped']} skipped -> {doc}, {js}")
    for r in rows:
        if r.verdict in ("traceback", "accepted"):
            print(f"  {r.verdict}: [{r.stage}] {r.input}: {r.message}")
    return 0 if s["traceback"] == 0 and s["accepted"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
