"""`sat2sound pipeline`: the whole chain on the embedded world, each stage skipped when its output is complete.

world -> teacher -> evaluate -> maps + grounding -> student -> int8 -> export -> gallery -> bundle -> report.
Every stage is one `sat2sound` subcommand writing one self-describing folder under OUT; a stage whose folder already
holds its completion marker is skipped, and the long stages (world, training, distillation, gallery) resume their own
partial work, so rerunning the same command after an interruption continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from contracts.durability import atomic_write_text
from contracts.errors import Sat2SoundError
from core.cli_args import add_shared
from core.config import student_preset_for

# The map regions the pipeline draws: the contiguous USA (country scale, Figure 3c) and a city-scale box.
USA_BBOX = "-125,24.5,-66.5,49.5"
CITY_BBOX = "-90.45,38.45,-90.05,38.75"  # St. Louis, Missouri (urban core, river, parks, farmland)
MAP_QUERIES = (
    "birds chirping, leaves rustling in the forest",
    "sounds of farm machinery",
    "waves crashing on the beach",
    "cars and traffic on a busy road",
    "a train passing by on the tracks",
    "frogs croaking in the marsh",
    "wind blowing over bare rock and sand",
    "people talking in a crowd",
    "construction drilling",
    "cows and sheep on a farm",
)


@dataclass
class Stage:
    name: str
    # path relative to OUT whose existence means the stage is complete: a file the stage writes last and atomically,
    # or a ".done" the pipeline writes after the stage's command succeeded (for stages whose folders appear early and
    # fill up as they go: training, distillation, the gallery, maps)
    marker: str
    argv: Callable[[Path, argparse.Namespace], list[str] | list[list[str]]]
    needs: tuple[str, ...] = ()


def _stages(preset: str) -> list[Stage]:
    student = student_preset_for(preset) or student_preset_for("default")
    maps_cols = {"tiny": 12}.get(preset, 160)  # ~10,000 tiles over the contiguous USA
    city_cols = {"tiny": 8}.get(preset, 60)
    ground_n = {"tiny": 5}.get(preset, 150)

    def world(o, a):
        return ["data", "build", "--preset", preset, "--out", str(o / "world")]

    def cache(o):
        return str(o / "cache" / "features")

    def teacher(o, a):
        return ["train", "--preset", preset, "--data", str(o / "world"), "--out", str(o / "teacher"),
                "--cache-dir", cache(o)]

    def evaluate(o, a):
        return ["evaluate", "--ckpt", str(o / "teacher"), "--data", str(o / "world"), "--split", "test",
                "--out", str(o / "eval" / "teacher.json"), "--cache-dir", cache(o)]

    def maps(o, a):
        base = ["map", "--ckpt", str(o / "teacher"), "--zoom", "1", "--out", str(o / "maps")]
        queries = [x for q in MAP_QUERIES for x in ("--query", q)]
        return [base + ["--bbox", USA_BBOX, "--cols", str(maps_cols)] + queries,
                base + ["--bbox", CITY_BBOX, "--cols", str(city_cols)] + queries]

    def grounding(o, a):
        return ["ground", "--ckpt", str(o / "teacher"), "--evaluate", "--data", str(o / "world"), "--split", "test",
                "--n", str(ground_n), "--out", str(o / "grounding")]

    def distill(o, a):
        return ["distill", "--ckpt", str(o / "teacher"), "--preset", student, "--data", str(o / "world"),
                "--out", str(o / "student"), "--cache-dir", cache(o)]

    def quantize(o, a):
        return ["quantize", "--ckpt", str(o / "student"), "--calib", str(o / "world"), "--out", str(o / "int8"),
                "--max-drop", "0.02", "--cache-dir", str(o / "cache" / "onnx"),
                # per target the measured int8 method (docs/int8_methods.md); QAT only if a PT2E target misses the gate
                "--method", "auto", "--qat", "2", "--data", str(o / "world")]

    def report_compress(o, a):
        return ["compress-report", "--teacher", str(o / "teacher"), "--student", str(o / "student"),
                "--int8", str(o / "int8"), "--data", str(o / "world"), "--out", str(o / "compress" / "report.md"),
                "--cache-dir", str(o / "cache" / "onnx")]

    def export(o, a):
        return ["export", "--ckpt", str(o / "int8"), "--target", "onnx", "--target", "ort", "--target", "tflite",
                "--target", "coreml", "--data", str(o / "world"), "--out", str(o / "export")]

    def gallery(o, a):
        # the test split's captions, as the paper's gallery is its test set (9,931 items there)
        return ["gallery", "build", "--ckpt", str(o / "teacher"), "--captions", str(o / "world"), "--split", "test",
                "--renderer", "procedural", "--out", str(o / "gallery")]

    def bundle(o, a):
        return ["bundle", "--export", str(o / "export"), "--gallery", str(o / "gallery"), "--region", CITY_BBOX,
                "--out", str(o / "bundle")]

    return [
        Stage("world", "world/world.json", world),
        Stage("teacher", "teacher/.done", teacher, ("world",)),
        Stage("evaluate", "eval/teacher.json", evaluate, ("teacher",)),
        Stage("maps", "maps/.done", maps, ("teacher",)),
        Stage("grounding", "grounding/grounding-eval-z1.json", grounding, ("teacher",)),
        Stage("student", "student/.done", distill, ("teacher",)),
        Stage("int8", "int8/manifest.json", quantize, ("student",)),
        Stage("compress-report", "compress/report.md", report_compress, ("int8",)),
        Stage("export", "export/manifest.json", export, ("int8",)),
        Stage("gallery", "gallery/.done", gallery, ("teacher",)),
        Stage("bundle", "bundle/manifest.json", bundle, ("export", "gallery")),
    ]


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_shared(p, "preset")
    p.add_argument("--out", default="runs/demo", help="run folder; rerunning resumes it")
    p.add_argument("--only", default=None, help="comma-separated stage names to run (others are skipped)")
    p.add_argument("--until", default=None, help="stop after this stage")
    p.add_argument("--list", action="store_true", help="list the stages and their state, then exit")


def run(args: argparse.Namespace) -> int:
    from core.cli import COMMANDS, _available, main
    from core.config import get_preset

    get_preset(args.preset)  # unknown preset -> clear error before anything runs
    out = Path(args.out)
    stages = _stages(args.preset)
    names = [s.name for s in stages]
    only = set(args.only.split(",")) if args.only else None
    for n in (only or set()) | ({args.until} if args.until else set()):
        if n not in names:
            raise Sat2SoundError(f"unknown stage {n!r}; stages: {', '.join(names)}")
    if args.list:
        for s in stages:
            state = "done" if (out / s.marker).exists() else "to do"
            print(f"{s.name:16s} {state:6s} {out / s.marker}")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "pipeline.json"
    try:
        log = json.loads(log_path.read_text())
    except (OSError, ValueError):  # none yet (or one from a version that wrote it in place and was killed)
        log = {"preset": args.preset, "stages": {}}
    failed: list[str] = []
    for s in stages:
        if only is not None and s.name not in only:
            continue
        if (out / s.marker).exists():
            print(f"[pipeline] {s.name}: done already ({s.marker})")
        elif any(not (out / st.marker).exists() for st in stages if st.name in s.needs):
            print(f"[pipeline] {s.name}: skipped, needs {', '.join(s.needs)}")
            failed.append(s.name)
        else:
            argvs = s.argv(out, args)
            argvs = argvs if argvs and isinstance(argvs[0], list) else [argvs]
            if not _available(COMMANDS[argvs[0][0]][0]):
                print(f"[pipeline] {s.name}: the `{argvs[0][0]}` command is not part of this build yet; skipped")
                failed.append(s.name)
                continue
            print(f"[pipeline] {s.name}: sat2sound {' '.join(argvs[0])}")
            t0 = time.perf_counter()
            code = 0
            for argv in argvs:
                try:
                    code = main(argv)
                except SystemExit as exc:  # argparse refusing the arguments
                    code = exc.code if isinstance(exc.code, int) else 2
                if code:
                    break
            seconds = time.perf_counter() - t0
            if code == 0 and s.marker.endswith(".done"):  # the command finished: mark the stage complete
                (out / s.marker).parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(out / s.marker, f"{seconds:.1f}\n", label="pipeline.marker")
            log["stages"][s.name] = {"exit": code, "seconds": round(seconds, 1)}
            atomic_write_text(log_path, json.dumps(log, indent=2), label="pipeline.log")
            if code:
                print(f"[pipeline] {s.name}: failed (exit {code})")
                failed.append(s.name)
        if args.until == s.name:
            break
    from core.report import write_report

    report = write_report(out)
    print(f"[pipeline] report: {report}")
    if failed:
        print(f"[pipeline] not finished: {', '.join(failed)}")
        return 1
    return 0
