"""The paper's two ablations on the same data and budget: codebook vs global pooling, with vs without metadata.

    python -m benchmarks.ablations [--run runs/demo] [--preset default] [--epochs N]

The reference is the pipeline's teacher (codebook head, metadata fusion) in RUN/teacher; the variants are trained
with the same preset, data, seed and epochs into RUN/ablation-global and RUN/ablation-nometa (each resumable), all
three are evaluated on the test split, and RUN/eval/ablation-summary.{json,md} compares them. Whichever way the
numbers fall, they are reported as measured.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

VARIANTS = {
    "global": ["--head", "global"],  # GeoCLAP/PSM-style global pooling, same encoders
    "nometa": ["--no-metadata"],  # codebook head, no metadata fusion
}


def _row(res: dict, zoom: int, setting: str, composed: str = "none") -> dict | None:
    for r in res["retrieval"]:
        if r["zoom"] == zoom and r["metadata"] == setting and r.get("composed", "none") == composed:
            return r
    return None


def _summary_line(name: str, res: dict) -> str:
    cells = [name, res["head"], "yes" if res["trained_with_metadata"] else "no"]
    for setting in ("none", "all"):
        r = _row(res, 1, setting)
        cells += [f"{r['i2a_r10']:.3f} / {r['i2a_mr']:.0f}" if r else "-",
                  f"{r['a2i_r10']:.3f} / {r['a2i_mr']:.0f}" if r else "-"]
    mean = res["image_text_mean"].get("all") or res["image_text_mean"].get("none")
    cells.append(f"{mean['i2t_r10']:.3f} / {mean['i2t_mr']:.0f}")
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    from core.cli import main as cli

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default="runs/demo")
    p.add_argument("--preset", default="default")
    p.add_argument("--epochs", type=int, default=None, help="default: the preset's (the teacher's budget)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-dir", default="runs/cache/features")
    args = p.parse_args(argv)
    run = Path(args.run)
    world, teacher = run / "world", run / "teacher"
    if not (teacher / "manifest.json").exists():
        print(f"no teacher in {teacher}: run `sat2sound pipeline --until teacher` first")
        return 1
    (run / "eval").mkdir(parents=True, exist_ok=True)
    results = {}
    runs = {"teacher": teacher} | {k: run / f"ablation-{k}" for k in VARIANTS}
    for name, folder in runs.items():
        if name != "teacher":  # training resumes, and returns at once when the run is complete
            train = ["train", "--preset", args.preset, "--data", str(world), "--out", str(folder),
                     "--threads", str(args.threads), "--cache-dir", args.cache_dir, *VARIANTS[name]]
            if args.epochs:
                train += ["--epochs", str(args.epochs)]
            if cli(train):
                return 1
        out = run / "eval" / ("teacher.json" if name == "teacher" else f"ablation-{name}.json")
        evaluate = ["evaluate", str(folder), "--data", str(world), "--split", "test", "--zooms", "1",
                    "--metadata", "none,all", "--out", str(out), "--cache-dir", args.cache_dir,
                    "--threads", str(args.threads)]
        if not out.exists() and cli(evaluate):
            return 1
        results[name] = json.loads(out.read_text())
    lines = [
        "| model | head | metadata in training | I2A R@10% / MR (no meta at test) | A2I (no meta) | "
        "I2A (all meta) | A2I (all meta) | image->text R@10% / MR |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [_summary_line(name, res) for name, res in results.items()]
    n = results["teacher"]["n"]
    lines.append(f"\nTest split N={n}, zoom 1; chance R@10% = 0.100, chance median rank = {(n + 1) / 2:.0f}. "
                 "Same preset, data, seed and epochs for every row.")
    (run / "eval" / "ablation-summary.md").write_text("\n".join(lines) + "\n")
    (run / "eval" / "ablation-summary.json").write_text(json.dumps(
        {k: {"fingerprint": v["fingerprint"], "retrieval": v["retrieval"], "image_text_mean": v["image_text_mean"]}
         for k, v in results.items()}, indent=2))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
