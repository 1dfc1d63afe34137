"""The paper's two ablations on the same data and budget: codebook vs global pooling, with vs without metadata.

    python -m benchmarks.ablations [--run runs/demo] [--preset default] [--epochs 10]

The reference is the pipeline's teacher (codebook head, metadata fusion) in RUN/teacher. The variants are trained
with the same preset, data, seed and learning-rate schedule into RUN/ablation-global (global pooling, GeoCLAP/PSM
style) and RUN/ablation-nometa (no metadata fusion), each resumable. They are compared at an equal budget: the
validation figures every run logs after epoch ``--epochs`` (the mean over zooms 1/3/5; all metadata given to models
that take it, none otherwise), read from each run's train_log.jsonl, so the teacher's own log supplies its row
without retraining.
RUN/eval/ablation-summary.{json,md} holds the table; whichever way the numbers fall, they are reported as measured.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

VARIANTS = {
    "ablation-global": ["--head", "global"],
    "ablation-nometa": ["--no-metadata"],
}
LABELS = {
    "teacher": "codebook + metadata (Sat2Sound)",
    "ablation-global": "global pooling + metadata (GeoCLAP/PSM-style)",
    "ablation-nometa": "codebook, no metadata",
}


def val_at_epoch(folder: Path, epoch: int) -> dict | None:
    """The validation record a run logged at the end of ``epoch`` (the last one logged, if it was resumed)."""
    found = None
    log = folder / "train_log.jsonl"
    if not log.exists():
        return None
    for line in log.read_text().splitlines():
        rec = json.loads(line) if line.strip() else {}
        if rec.get("kind") == "epoch" and rec.get("epoch") == epoch and rec.get("val"):
            found = rec["val"]
    return found


def summarise(run: Path, epoch: int) -> tuple[str, dict]:
    rows, data = [], {}
    for name in ("teacher", *VARIANTS):
        val = val_at_epoch(run / name, epoch)
        if val is None:
            rows.append(f"| {LABELS[name]} | not trained to epoch {epoch} yet | | | |")
            continue
        data[name] = val
        rows.append(f"| {LABELS[name]} | {val['i2a_r10']:.3f} / {val['i2a_mr']:.0f} | "
                    f"{val['a2i_r10']:.3f} / {val['a2i_mr']:.0f} | {val['i2t_r10']:.3f} / {val['i2t_mr']:.0f} | "
                    f"{val.get('metadata', '')} |")
    first = next(iter(data.values())) if data else {}
    n = first.get("n", 0)
    where = (f"mean over zooms {' / '.join(str(z) for z in first['zooms'])}" if "zooms" in first
             else f"zoom {first.get('zoom', 1)}")  # logs written before validation covered every zoom
    head = [f"Validation split (N={n}), {where}, after {epoch} epochs of the same schedule, seed and data. "
            f"Chance: R@10% 0.100, median rank {(n + 1) / 2:.0f}.", "",
            "| model | I2A R@10% / MR | A2I R@10% / MR | image->text R@10% / MR | metadata at test |",
            "|---|---|---|---|---|"]
    return "\n".join(head + rows) + "\n", data


def main(argv: list[str] | None = None) -> int:
    from core.cli import main as cli

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default="runs/demo")
    p.add_argument("--preset", default="default")
    p.add_argument("--epochs", type=int, default=10, help="the budget every variant gets (epochs; 10 = the default "
                   "preset's first cosine cycle)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-dir", default=None, help="decoded-feature cache (default RUN/cache/features)")
    p.add_argument("--only", default=None, help="comma-separated variants to train (default: all)")
    args = p.parse_args(argv)
    run = Path(args.run)
    world = run / "world"
    if val_at_epoch(run / "teacher", args.epochs) is None:
        print(f"the teacher in {run / 'teacher'} has no validation record at epoch {args.epochs}")
    cache = args.cache_dir or str(run / "cache" / "features")
    todo = args.only.split(",") if args.only else list(VARIANTS)
    for name in todo:
        train = ["train", "--preset", args.preset, "--data", str(world), "--out", str(run / name),
                 "--threads", str(args.threads), "--cache-dir", cache, "--epochs", str(args.epochs), *VARIANTS[name]]
        if cli(train):  # resumes; returns at once when the run is complete
            return 1
    text, data = summarise(run, args.epochs)
    (run / "eval").mkdir(parents=True, exist_ok=True)
    (run / "eval" / "ablation-summary.md").write_text(text)
    (run / "eval" / "ablation-summary.json").write_text(json.dumps({"epochs": args.epochs, "val": data}, indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
