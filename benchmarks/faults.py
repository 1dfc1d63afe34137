"""The fault sweep: every artifact stage killed at many seeded write points, on the tiny preset.

    python -m benchmarks.faults [--per-label 3] [--seed 0] [--only world,train,...] [--work DIR]
        -> runs/bench/faults.json, runs/bench/faults.md

Per stage: one clean run as a subprocess counts how often it passes each fault point (``SAT2SOUND_FAULT_LOG``)
and times a fresh run; then, for each point, up to ``--per-label`` seeded hits (always the first and the last)
are killed with SIGKILL (``SAT2SOUND_FAULT_AT``). After each kill a consumer is asked whether it accepts what is
on disk, the same command is rerun (a subprocess, timed: the resumed run) and its result is compared with the
uninterrupted reference (``benchmarks/fault_stages.py``). Reported per stage: faults injected, killed, recovered
(nothing accepted in between, the rerun equal to the reference, no staging left behind), bytes lost (reference
bytes the resumed artifact lacks or holds differently), litter bytes, and the resumed run's time against the
fresh one's. Run it under ``flock /tmp/sat2sound-bench.lock`` so timings do not overlap another benchmark's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import time
from pathlib import Path

from benchmarks.fault_stages import ORDER, STAGES, build_chain, count_points, run_fault

OUT_JSON = Path("runs/bench/faults.json")
OUT_MD = Path("runs/bench/faults.md")


def pick_hits(count: int, per_label: int, rng: random.Random) -> list[int]:
    """Seeded hits among 1..count: the first, the last and random ones between, ``per_label`` at most."""
    if count <= 0:
        return []
    hits = {1, count}
    middle = list(range(2, count))
    rng.shuffle(middle)
    hits.update(middle[: max(0, per_label - len(hits))])
    return sorted(hits)[:per_label] if per_label < len(hits) else sorted(hits)


def lost_bytes(ref: Path, diffs: list[str]) -> int:
    """Bytes of the reference that a resumed artifact lacks or holds differently (0 when it equals the reference)."""
    if not diffs:
        return 0
    files = [p for p in ref.rglob("*") if p.is_file() and not p.name.startswith(".")]
    named = [p for p in files if any(p.name in d for d in diffs)]
    return sum(p.stat().st_size for p in (named or files))


def sweep(stage: str, chain, work: Path, per_label: int, rng: random.Random) -> dict:
    case = STAGES[stage]
    scratch = work / stage
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    counts, fresh_s = count_points(case, chain, scratch)
    faults = []
    for label in case.labels:
        for n in pick_hits(counts.get(label, 0), per_label, rng):
            trial = scratch / f"{label}-{n}"
            trial.mkdir()
            r = run_fault(case, chain, trial, label, n, in_process_rerun=False)
            faults.append({"label": label, "n": n, "killed": r.killed, "accepted": r.accepted,
                           "rerun_exit": r.rerun_exit, "diffs": r.diffs[:5], "recovered": r.recovered,
                           "lost_bytes": lost_bytes(case.reference(chain), r.diffs), "litter_bytes": r.litter_bytes,
                           "killed_after_s": round(r.kill_s, 2), "resumed_s": round(r.rerun_s, 2)})
            shutil.rmtree(trial, ignore_errors=True)
    killed = [f for f in faults if f["killed"]]
    resumed = [f["resumed_s"] for f in killed]
    return {"stage": stage, "points": counts, "fresh_s": round(fresh_s, 2), "injected": len(faults),
            "killed": len(killed), "recovered": sum(f["recovered"] for f in killed),
            "accepted": sum(f["accepted"] is not None for f in killed),
            "lost_bytes": sum(f["lost_bytes"] for f in killed), "litter_bytes": sum(f["litter_bytes"] for f in killed),
            "resumed_s_mean": round(sum(resumed) / len(resumed), 2) if resumed else None,
            "resumed_s_max": max(resumed) if resumed else None, "faults": faults}


def resume_gain(chain, work: Path, epochs: int) -> dict:
    """Where resuming pays: a training run of ``epochs`` epochs killed at its last step, rerun, against a fresh run
    (subprocesses; the kill loses at most the steps since the last end-of-epoch save)."""
    from benchmarks.fault_stages import run_cli

    def argv(out: Path) -> list[str]:
        return STAGES["train"].argv(chain, out)[:-3] + ["--epochs", str(epochs), "--no-progress"]

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t0 = time.perf_counter()
    assert run_cli(argv(work / "fresh")).returncode == 0
    fresh = time.perf_counter() - t0
    steps = sum('"kind": "step"' in line for line in (work / "fresh" / "train_log.jsonl").read_text().splitlines())
    killed = run_cli(argv(work / "resumed"), fault=f"train.step:{steps}")
    t1 = time.perf_counter()
    assert run_cli(argv(work / "resumed")).returncode == 0
    resumed = time.perf_counter() - t1
    return {"epochs": epochs, "steps": steps, "killed_at_step": steps, "killed": killed.returncode == -9,
            "fresh_s": round(fresh, 2), "resumed_s": round(resumed, 2)}


def write_md(doc: dict, path: Path = OUT_MD) -> None:
    rows = ["# Fault sweep (`python -m benchmarks.faults`)", "",
            f"{doc['machine']}; load average at the start {doc['load_start']}, at the end {doc['load_end']}; "
            f"{doc['per_label']} seeded hits per fault point at most (seed {doc['seed']}); tiny preset.", "",
            "| stage | fault points (hits in a clean run) | injected | killed | recovered | accepted in between | "
            "bytes lost | litter bytes | fresh run s | resumed run s (mean / max) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for s in doc["stages"]:
        pts = ", ".join(f"{k} x{v}" for k, v in s["points"].items())
        rows.append(f"| {s['stage']} | {pts} | {s['injected']} | {s['killed']} | {s['recovered']} | {s['accepted']} | "
                    f"{s['lost_bytes']} | {s['litter_bytes']} | {s['fresh_s']} | {s['resumed_s_mean']} / "
                    f"{s['resumed_s_max']} |")
    t = doc["total"]
    rows += ["", f"Total: {t['injected']} faults injected, {t['killed']} killed, {t['recovered']} recovered, "
             f"{t['accepted']} half-written states accepted, {t['lost_bytes']} bytes lost, {t['litter_bytes']} "
             "litter bytes.", "",
             "A run's times include starting Python and importing torch (about 3-5 s here); a resumed run's time is "
             "the rerun after the kill, the work done before the kill not counted.", ""]
    g = doc.get("resume_gain")
    if g:
        rows += [f"Where resuming pays: a tiny training run of {g['epochs']} epochs ({g['steps']} steps) killed at its "
                 f"last step resumes in {g['resumed_s']} s; a fresh run takes {g['fresh_s']} s.", ""]
    bad = [(s["stage"], f) for s in doc["stages"] for f in s["faults"] if f["killed"] and not f["recovered"]]
    if bad:
        rows += ["Not recovered:", ""] + [f"- {st} at {f['label']}:{f['n']}: accepted={f['accepted']}, "
                                          f"diffs={f['diffs']}, litter={f['litter_bytes']}" for st, f in bad]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.faults", description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="runs/bench/faults-work")
    p.add_argument("--per-label", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", default=None, help="comma-separated stages (default: all); 'resume': only the "
                   "resume-gain run, added to the last sweep's figures")
    p.add_argument("--resume-epochs", type=int, default=12, help="epochs of the resume-gain training run (0: skip)")
    args = p.parse_args(argv)
    from tqdm.auto import tqdm

    work = Path(args.work)
    chain = build_chain(work / "chain")
    if args.only == "resume" and OUT_JSON.is_file():  # only the resume-gain run, added to the last sweep's figures
        doc = json.loads(OUT_JSON.read_text())
        doc["resume_gain"] = resume_gain(chain, work / "resume", args.resume_epochs or 12)
        OUT_JSON.write_text(json.dumps(doc, indent=1) + "\n")
        write_md(doc)
        print(f"resume gain: {doc['resume_gain']} -> {OUT_MD}")
        return 0
    rng = random.Random(args.seed)
    stages = [s for s in ORDER if not args.only or s in args.only.split(",")]
    load_start = os.getloadavg()[0]
    t0 = time.perf_counter()
    results = [sweep(s, chain, work / "sweep", args.per_label, rng) for s in tqdm(stages, desc="stages")]
    total = {k: sum(r[k] for r in results) for k in ("injected", "killed", "recovered", "accepted", "lost_bytes",
                                                      "litter_bytes")}
    doc = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "load_start": round(load_start, 2),
           "load_end": round(os.getloadavg()[0], 2), "per_label": args.per_label, "seed": args.seed,
           "seconds": round(time.perf_counter() - t0, 1), "total": total, "stages": results}
    if args.resume_epochs:
        doc["resume_gain"] = resume_gain(chain, work / "resume", args.resume_epochs)
    OUT_JSON.parent.mkdir(parents=True, exist_ok=True)
    OUT_JSON.write_text(json.dumps(doc, indent=1) + "\n")
    write_md(doc)
    print(f"faults: {total['injected']} injected, {total['killed']} killed, {total['recovered']} recovered, "
          f"{total['accepted']} accepted in between, {total['lost_bytes']} bytes lost -> {OUT_MD}")
    return 0 if total["recovered"] == total["killed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
