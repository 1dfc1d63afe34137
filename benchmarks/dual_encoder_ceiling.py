"""How far can a cosine dual encoder get in this world if it perceives perfectly?

    python -m benchmarks.dual_encoder_ceiling [--data runs/demo/world] [--out runs/demo/eval/dual_encoder_ceiling]

The teacher ranks recordings for an image by the cosine of two embeddings learned with InfoNCE. The generator oracle
(``sat2sound data oracle --resample-audio``) ranks them by the exact likelihood ratio, which no embedding dot product
need be able to express. This benchmark separates the two gaps. It trains the teacher's kind of model, two towers
meeting at a cosine under the symmetric InfoNCE loss, on the world's ground truth instead of pixels and waveforms:

- place side: the full tile's cover fractions (what the recording generator reads), latitude, and, in the
  ``all`` setting, month and hour (sin/cos) and the recording platform (one-hot);
- recording side: which sources the clip holds (multi-hot) and how loud each is relative to the loudest.

Each tower is an MLP (LayerNorm, two GELU layers of ``--hidden``) into ``--dim`` (the codebook width d); training
uses the train split, model selection the validation split, and the figures are the test split's I2A and A2I R@10%
(the paper's protocol, ``core.metrics.retrieval_report``). The gap between this and the teacher is perception
(pixels and audio to concepts); the gap between this and the generator oracle is what a cosine of two embeddings
cannot express (e.g. how many sources a platform's clips hold, what a recording does not contain).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from contracts.errors import DataError, run_guarded
from contracts.schema import AUDIO_SOURCES
from world.audio_oracle import month_hour
from world.cover_classes import FINE_CLASSES
from world.shards import read_split
from world.sources import SOURCES

COLUMNS = ["gt_cover_fractions", "gt_present", "gt_levels_db", "latitude", "date", "source"]
SETTINGS = ("none", "all")


def place_features(table, setting: str) -> np.ndarray:
    """(N, F) float32: cover fractions and latitude; with ``all`` also month, hour and platform."""
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
    cover = np.asarray(table.column("gt_cover_fractions").to_pylist(), dtype=np.float32)
    if cover.ndim != 2 or cover.shape[1] != len(FINE_CLASSES):
        raise DataError(f"gt_cover_fractions must hold {len(FINE_CLASSES)} fractions per row",
                        field="gt_cover_fractions")
    lat = np.asarray(table.column("latitude").to_pylist(), dtype=np.float32)[:, None]
    parts = [np.sqrt(cover), lat / 90.0, np.sin(np.radians(lat)), np.cos(np.radians(lat))]
    if setting == "all":
        dates = table.column("date").to_pylist()
        month, hour = (np.array(v, dtype=np.float32)[:, None] for v in zip(*(month_hour(d) for d in dates)))
        platform = np.zeros((len(dates), len(AUDIO_SOURCES)), dtype=np.float32)
        for i, src in enumerate(table.column("source").to_pylist()):
            platform[i, AUDIO_SOURCES.index(src)] = 1.0
        parts += [np.sin(2 * math.pi * month / 12), np.cos(2 * math.pi * month / 12),
                  np.sin(2 * math.pi * hour / 24), np.cos(2 * math.pi * hour / 24), platform]
    return np.concatenate(parts, axis=1).astype(np.float32)


def recording_features(table) -> np.ndarray:
    """(N, 2S) float32: multi-hot of the sources a clip holds, then each one's level relative to the loudest / 20 dB."""
    present = table.column("gt_present").to_pylist()
    levels = table.column("gt_levels_db").to_pylist()
    out = np.zeros((len(present), 2 * len(SOURCES)), dtype=np.float32)
    for i, (srcs, dbs) in enumerate(zip(present, levels)):
        if not srcs or len(srcs) != len(dbs):
            raise DataError("gt_present and gt_levels_db must list the same non-empty sources", field="gt_present")
        top = max(dbs)
        for s, db in zip(srcs, dbs):
            j = SOURCES.index(s)
            out[i, j] = 1.0
            out[i, len(SOURCES) + j] = 1.0 + (db - top) / 20.0
    return out


def _tower(n_in: int, hidden: int, dim: int):
    from torch import nn

    return nn.Sequential(nn.LayerNorm(n_in), nn.Linear(n_in, hidden), nn.GELU(), nn.Linear(hidden, hidden),
                         nn.GELU(), nn.Linear(hidden, dim))


def _embed(tower, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return torch.nn.functional.normalize(tower(torch.from_numpy(x)), dim=-1).numpy()


def train_ceiling(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], *, dim: int = 192,
                  hidden: int = 256, epochs: int = 300, batch: int = 128, lr: float = 1e-3, seed: int = 0,
                  progress: bool = True) -> tuple[object, object, dict]:
    """Two MLP towers trained with symmetric InfoNCE (learnable logit scale); the epoch with the best validation
    I2A R@10% is kept. Returns (place tower, recording tower, history)."""
    import copy

    import torch
    from tqdm.auto import tqdm

    from core.metrics import retrieval_report

    torch.manual_seed(seed)
    (xp, xa), (vp, va) = train, val
    place, rec = _tower(xp.shape[1], hidden, dim), _tower(xa.shape[1], hidden, dim)
    log_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    params = [*place.parameters(), *rec.parameters(), log_scale]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    tp, ta = torch.from_numpy(xp), torch.from_numpy(xa)
    batch = max(2, min(batch, len(xp)))
    rng = np.random.default_rng(seed)
    best, history = None, []
    for epoch in tqdm(range(epochs), desc="dual-encoder ceiling", unit="epoch", disable=not progress, leave=False):
        place.train()
        rec.train()
        order = rng.permutation(len(xp))
        for s in range(0, len(order) - batch + 1, batch):
            idx = torch.from_numpy(order[s:s + batch])
            p = torch.nn.functional.normalize(place(tp[idx]), dim=-1)
            a = torch.nn.functional.normalize(rec(ta[idx]), dim=-1)
            logits = log_scale.clamp(max=math.log(100.0)).exp() * p @ a.t()
            target = torch.arange(len(idx))
            loss = (torch.nn.functional.cross_entropy(logits, target)
                    + torch.nn.functional.cross_entropy(logits.t(), target)) / 2
            opt.zero_grad()
            loss.backward()
            opt.step()
        if (epoch + 1) % 10 == 0 or epoch + 1 == epochs:
            place.eval()
            rec.eval()
            r10 = retrieval_report(_embed(place, vp), _embed(rec, va))["r10"]
            history.append({"epoch": epoch + 1, "val_i2a_r10": r10})
            if best is None or r10 > best[0]:
                best = (r10, copy.deepcopy(place), copy.deepcopy(rec))
    return best[1], best[2], {"history": history, "best_val_i2a_r10": best[0]}


def _read(data: Path, split: str):
    """One split's ground-truth columns; a dataset without them (not an embedded world) is a DataError."""
    import pyarrow as pa

    try:
        table = read_split(data, split, COLUMNS)
    except (KeyError, pa.ArrowInvalid) as exc:
        raise DataError(f"no world ground truth ({', '.join(COLUMNS)}) in the {split!r} split: this benchmark needs "
                        f"an embedded world built by `sat2sound data build` ({exc})", path=data) from None
    if table.num_rows < 2:
        raise DataError(f"the {split!r} split has {table.num_rows} rows; retrieval needs at least 2", path=data)
    return table


def run(data: Path, *, epochs: int = 300, dim: int = 192, hidden: int = 256, seed: int = 0,
        progress: bool = True) -> dict:
    from core.metrics import retrieval_report

    tables = {s: _read(data, s) for s in ("train", "validation", "test")}
    out = {"data": str(data), "dim": dim, "hidden": hidden, "epochs": epochs, "seed": seed,
           "n": {s: t.num_rows for s, t in tables.items()}, "settings": {}}
    rec = {s: recording_features(t) for s, t in tables.items()}
    for setting in SETTINGS:
        t0 = time.perf_counter()
        feats = {s: place_features(t, setting) for s, t in tables.items()}
        place, audio, hist = train_ceiling((feats["train"], rec["train"]), (feats["validation"], rec["validation"]),
                                           dim=dim, hidden=hidden, epochs=epochs, seed=seed, progress=progress)
        p_test, a_test = _embed(place, feats["test"]), _embed(audio, rec["test"])
        p_train, a_train = _embed(place, feats["train"]), _embed(audio, rec["train"])
        i2a, a2i = retrieval_report(p_test, a_test), retrieval_report(a_test, p_test)
        out["settings"][setting] = {
            "test_i2a_r10": i2a["r10"], "test_i2a_mr": i2a["mr"], "test_a2i_r10": a2i["r10"], "test_a2i_mr": a2i["mr"],
            "train_i2a_r10": retrieval_report(p_train, a_train)["r10"], "seconds": round(time.perf_counter() - t0, 1),
            **hist}
    return out


def markdown(res: dict) -> str:
    n = res["n"]
    rows = [f"Cosine dual encoder on the world's ground truth (two MLP towers into d={res['dim']}, symmetric InfoNCE, "
            f"{res['epochs']} epochs on the train split, N={n['train']}; best validation epoch; test N={n['test']}).",
            "", "| metadata | test I2A R@10% / MR | test A2I R@10% / MR | train I2A R@10% |", "|---|---|---|---|"]
    for setting, r in res["settings"].items():
        rows.append(f"| {setting} | {r['test_i2a_r10']:.3f} / {r['test_i2a_mr']:.1f} | "
                    f"{r['test_a2i_r10']:.3f} / {r['test_a2i_mr']:.1f} | {r['train_i2a_r10']:.3f} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.dual_encoder_ceiling", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="runs/demo/world", help="an embedded world folder (it has ground truth)")
    p.add_argument("--out", default="runs/demo/eval/dual_encoder_ceiling", help="writes OUT.json and OUT.md")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--dim", type=int, default=192)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.dim < 1 or args.hidden < 1:
        p.error("--epochs, --dim and --hidden must be >= 1")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    def go() -> int:
        res = run(Path(args.data), epochs=args.epochs, dim=args.dim, hidden=args.hidden, seed=args.seed)
        text = markdown(res)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
        out.with_suffix(".md").write_text(text)
        print(text)
        return 0

    return run_guarded(p.prog, go)


if __name__ == "__main__":
    raise SystemExit(main())
