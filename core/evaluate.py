"""`sat2sound evaluate`: the benchmarks' retrieval protocol on a checkpoint, per zoom and per metadata setting.

What is measured (the paper's metrics and Tables 1, 2, 6, 12-14 and the authors' evaluation code):
- image <-> audio: I2A (image queries, audio gallery) and A2I, R@10% and median rank, in three composed settings:
  ``none``  : image vs audio;
  ``audio`` : the audio side is normalise(norm(a) + norm(c)) (c = the recording's audio caption), both directions;
  ``query`` : the caption is added to whichever side is the QUERY (PSM's protocol): I2A = normalise(norm(i) + norm(c))
              vs plain audio; A2I = normalise(norm(a) + norm(c)) vs plain images. (So A2I is the same in ``audio`` and
              ``query``, as in the paper's tables.)
- image <-> text: the image vs its own LLaVA-style caption of the same zoom (I2T and T2I), R@10% and MR.
- metadata settings (only the image tower sees metadata): ``none`` (no metadata at all), each field alone
  (``latlon``, ``month``, ``hour``, ``audio_source``, ``caption_source``) and ``all``. "Given" always means given AND
  present in the data: a field the dataset lacks for a sample stays missing.
- per zoom level (1, 3, 5 for GeoSound-like data).
Chance level of R@10% is 0.10 (its exact value for the gallery size is reported too); chance MR is about N/2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contracts.artifacts import ArtifactKind
from contracts.errors import ConfigError
from contracts.schema import META_FIELDS
from core.cli_args import add_ckpt, add_shared
from core.metrics import CHANCE_R10, chance_recall_at_percent, compose, retrieval_report

META_SETTINGS_ORDER: tuple[str, ...] = ("none", *META_FIELDS, "all")
COMPOSED_MODES: tuple[str, ...] = ("none", "audio", "query")
EVAL_BATCH = 128


# ------------------------------------------------------------------------------------------- option parsing


def parse_zooms(text: str | Sequence[int]) -> list[int]:
    """"1,3,5" or [1, 3, 5] -> [1, 3, 5]; anything else is a ConfigError."""
    items = text.split(",") if isinstance(text, str) else list(text)
    zooms = []
    for item in items:
        try:
            z = int(str(item).strip())
        except ValueError:
            raise ConfigError(f"zoom {item!r} is not an integer (expected e.g. --zooms 1,3,5)") from None
        if z not in zooms:
            zooms.append(z)
    if not zooms:
        raise ConfigError("no zoom levels given")
    return zooms


def metadata_settings(modes: str | Iterable[str]) -> list[str]:
    """Expand "none,all,each" into concrete settings: none, one per field (each), all. Field names are accepted too."""
    items = modes.split(",") if isinstance(modes, str) else list(modes)
    out: list[str] = []
    for raw in items:
        mode = raw.strip().lower()
        if mode == "each":
            expanded = list(META_FIELDS)
        elif mode in META_SETTINGS_ORDER:
            expanded = [mode]
        else:
            raise ConfigError(f"unknown metadata setting {raw!r}; expected none, all, each or one of "
                              f"{', '.join(META_FIELDS)}")
        out.extend(m for m in expanded if m not in out)
    if not out:
        raise ConfigError("no metadata settings given")
    return sorted(out, key=META_SETTINGS_ORDER.index)


def setting_mask(setting: str) -> np.ndarray:
    """(5,) float32 mask of the fields a setting gives (multiplied with the data's own presence mask)."""
    if setting == "none":
        return np.zeros(len(META_FIELDS), np.float32)
    if setting == "all":
        return np.ones(len(META_FIELDS), np.float32)
    mask = np.zeros(len(META_FIELDS), np.float32)
    mask[META_FIELDS.index(setting)] = 1.0
    return mask


# ---------------------------------------------------------------------------------------------- embeddings


def _meta(batch: dict[str, Any], setting: str) -> dict[str, torch.Tensor] | None:
    if setting == "none":
        return None
    given = torch.as_tensor(setting_mask(setting))
    meta = {k: torch.as_tensor(batch[k]) for k in ("lat", "lon", "month", "hour", "audio_source", "caption_source")}
    meta["meta_mask"] = torch.as_tensor(batch["meta_mask"]).float() * given
    return meta


def _tensor(x: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    t = torch.as_tensor(x)
    return t.to(dtype) if dtype is not None else t


@torch.no_grad()
def embed_table(model: torch.nn.Module, table: Any, zooms: Sequence[int], settings: Sequence[str], *,
                batch_size: int = EVAL_BATCH, progress: bool = True,
                desc: str = "embedding") -> dict[str, Any]:
    """Embed a FeatureTable once: audio, audio captions, and per zoom the image captions and the images under
    every metadata setting. Returns float32 numpy arrays:
    {"audio": (N,d), "audio_caption": (N,d), "image_caption": {zoom: (N,d)}, "image": {(zoom, setting): (N,d)}}.
    The model is put in eval mode and restored to its previous mode afterwards.
    """
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    use_meta = getattr(model, "metadata", None) is not None
    n = len(table)
    audio, image = [], {(z, s): [] for z in zooms for s in settings}
    audio_captions: list[str] = []
    image_captions: dict[int, list[str]] = {z: [] for z in zooms}
    n_batches = -(-n // batch_size)
    bar = tqdm(total=n_batches * len(zooms), desc=desc, unit="batch", disable=not progress, leave=False)
    try:
        for zi, zoom in enumerate(zooms):
            for start in range(0, n, batch_size):
                idx = np.arange(start, min(start + batch_size, n))
                batch = table.batch(idx, zoom=zoom, rng=None, jitter=0.0)
                img = _tensor(batch["image"], torch.float32)
                zt = _tensor(batch["zoom"], torch.long)
                gsd = _tensor(batch["gsd"], torch.float32)
                for setting in settings:
                    meta = _meta(batch, setting) if use_meta else None
                    image[(zoom, setting)].append(model.encode_image(img, zt, gsd, meta).embedding.float().numpy())
                image_captions[zoom].extend(batch["image_caption"])
                if zi == 0:
                    audio.append(model.encode_audio(_tensor(batch["mel"], torch.float32)).embedding.float().numpy())
                    audio_captions.extend(batch["audio_caption"])
                bar.update(1)
        bar.close()
        texts = audio_captions + [t for z in zooms for t in image_captions[z]]
        model.text_backbone.precompute(texts, progress=progress)
        out = {
            "audio": np.concatenate(audio),
            "audio_caption": _embed_texts(model, audio_captions, batch_size),
            "image_caption": {z: _embed_texts(model, image_captions[z], batch_size) for z in zooms},
            "image": {k: np.concatenate(v) for k, v in image.items()},
        }
    finally:
        model.train(was_training)
    return out


@torch.no_grad()
def _embed_texts(model: torch.nn.Module, texts: list[str], batch_size: int) -> np.ndarray:
    parts = [model.encode_text(texts[i:i + batch_size]).embedding.float().numpy()
             for i in range(0, len(texts), batch_size)]
    return np.concatenate(parts)


# ---------------------------------------------------------------------------------------------- retrieval


def image_audio_rows(image: np.ndarray, audio: np.ndarray, audio_caption: np.ndarray,
                     composed: Sequence[str] = COMPOSED_MODES) -> list[dict[str, Any]]:
    """I2A / A2I R@10% and MR for each composed setting (see the module docstring for their exact meaning)."""
    rows = []
    for mode in composed:
        if mode == "none":
            i2a = retrieval_report(image, audio)
            a2i = retrieval_report(audio, image)
        elif mode == "audio":
            audio_c = compose(audio, audio_caption)
            i2a = retrieval_report(image, audio_c)
            a2i = retrieval_report(audio_c, image)
        elif mode == "query":
            i2a = retrieval_report(compose(image, audio_caption), audio)
            a2i = retrieval_report(compose(audio, audio_caption), image)
        else:
            raise ConfigError(f"unknown composed setting {mode!r}; expected one of {', '.join(COMPOSED_MODES)}")
        rows.append({"composed": mode, "i2a_r10": i2a["r10"], "i2a_mr": i2a["mr"], "i2a_r1": i2a["r1"],
                     "a2i_r10": a2i["r10"], "a2i_mr": a2i["mr"], "a2i_r1": a2i["r1"]})
    return rows


def image_text_row(image: np.ndarray, image_caption: np.ndarray) -> dict[str, float]:
    i2t = retrieval_report(image, image_caption)
    t2i = retrieval_report(image_caption, image)
    return {"i2t_r10": i2t["r10"], "i2t_mr": i2t["mr"], "i2t_r1": i2t["r1"],
            "t2i_r10": t2i["r10"], "t2i_mr": t2i["mr"], "t2i_r1": t2i["r1"]}


VALIDATION_KEYS = ("i2a_r10", "i2a_mr", "a2i_r10", "a2i_mr", "i2t_r10", "i2t_mr")


def validation_metrics(model: torch.nn.Module, table: Any, *, progress: bool = False) -> dict[str, Any]:
    """What training selects the best checkpoint by: I2A/A2I and image->text R@10% and median rank with all
    (present) metadata given, at every zoom the split has, averaged over the zooms (a model trained on zoom 1/3/5
    crops is judged on all three, and three zooms make the figure less noisy than one). The per-zoom figures are
    under ``by_zoom``."""
    zooms = [int(z) for z in table.zooms]
    setting = "all" if getattr(model, "metadata", None) is not None else "none"
    emb = embed_table(model, table, zooms, [setting], progress=progress, desc="validation")
    by_zoom: dict[str, dict[str, float]] = {}
    for z in zooms:
        ia = image_audio_rows(emb["image"][(z, setting)], emb["audio"], emb["audio_caption"], ("none",))[0]
        row = {**ia, **image_text_row(emb["image"][(z, setting)], emb["image_caption"][z])}
        by_zoom[str(z)] = {k: float(row[k]) for k in VALIDATION_KEYS}
    mean = {k: float(np.mean([row[k] for row in by_zoom.values()])) for k in VALIDATION_KEYS}
    return {**mean, "by_zoom": by_zoom, "n": len(table), "zooms": zooms, "metadata": setting}


# --------------------------------------------------------------------------------------------------- the API


@dataclass
class Evaluation:
    """What ``evaluate_checkpoint`` measured: provenance, N and chance levels, and the metric rows.

    ``retrieval``: one row per zoom x metadata setting x composed mode (I2A / A2I R@10% and median rank);
    ``image_text``: one row per zoom x metadata setting; ``image_text_mean``: per setting, averaged over zooms (as
    the paper's Table 2). ``to_dict()`` is the JSON written by ``write_report``.
    """

    checkpoint: str
    fingerprint: str
    preset: str
    head: str
    trained_with_metadata: bool
    data: str
    split: str
    n: int
    chance_r10: float
    chance_r10_exact: float
    chance_mr: float
    zooms: list[int]
    metadata: list[str]
    composed: list[str]
    retrieval: list[dict[str, Any]]
    image_text: list[dict[str, Any]]
    image_text_mean: dict[str, dict[str, float]]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"kind": str(ArtifactKind.EVALUATION), **dataclasses.asdict(self)}


def evaluate_checkpoint(checkpoint: str | Path | Any, data_dir: str | Path, split: str = "test",
                        zooms: Sequence[int] | str | None = None,
                        metadata_modes: Sequence[str] | str = ("none", "all", "each"),
                        cfg_override: Any = None, *, composed: Sequence[str] = COMPOSED_MODES,
                        cache_dir: str | Path | None = None, batch_size: int = EVAL_BATCH,
                        progress: bool = True) -> Evaluation:
    """Evaluate a checkpoint folder (or an already loaded ``core.checkpoint.Loaded``) on a dataset split.

    ``cfg_override``: a Sat2SoundConfig whose data settings (audio front end, image size/imagery/zooms) are used
    to read the data instead of the checkpoint's own; its model settings are ignored.
    Returns an ``Evaluation``.
    """
    from core.checkpoint import Loaded, load_checkpoint
    from core.data.features import FeatureTable

    loaded = checkpoint if isinstance(checkpoint, Loaded) else load_checkpoint(checkpoint)
    model, cfg = loaded.model, loaded.cfg
    data_cfg = cfg_override if cfg_override is not None else cfg
    zooms = parse_zooms(zooms) if zooms is not None else None
    settings = metadata_settings(metadata_modes)
    notes = []
    if getattr(model, "metadata", None) is None and settings != ["none"]:
        notes.append("the checkpoint was trained without metadata: only the 'none' setting is evaluated")
        settings = ["none"]
    t0 = time.perf_counter()
    table = FeatureTable.build(data_dir, split, data_cfg, cache_dir=cache_dir, progress=progress)
    if zooms is None:
        zooms = list(table.zooms)
    bad = [z for z in zooms if z not in table.zooms]
    if bad:
        raise ConfigError(f"zoom(s) {bad} not in the data's zoom levels {list(table.zooms)}")
    if len(table) < 2:
        raise ConfigError(f"split {split!r} of {data_dir} has {len(table)} sample(s); retrieval needs at least 2")
    emb = embed_table(model, table, zooms, settings, batch_size=batch_size, progress=progress)
    retrieval, image_text = [], []
    for zoom in zooms:
        for setting in settings:
            img = emb["image"][(zoom, setting)]
            for row in image_audio_rows(img, emb["audio"], emb["audio_caption"], composed):
                retrieval.append({"zoom": zoom, "metadata": setting, **row})
            image_text.append({"zoom": zoom, "metadata": setting, **image_text_row(img, emb["image_caption"][zoom])})
    mean = {}
    for setting in settings:
        rows = [r for r in image_text if r["metadata"] == setting]
        mean[setting] = {k: float(np.mean([r[k] for r in rows])) for k in ("i2t_r10", "i2t_mr", "t2i_r10", "t2i_mr")}
    n = len(table)
    return Evaluation(
        checkpoint=str(getattr(loaded, "path", "")), fingerprint=loaded.fingerprint, preset=cfg.name,
        head=cfg.model.codebook.head, trained_with_metadata=getattr(model, "metadata", None) is not None,
        data=str(data_dir), split=split, n=n, chance_r10=CHANCE_R10, chance_r10_exact=chance_recall_at_percent(n),
        chance_mr=(n + 1) / 2, zooms=zooms, metadata=settings, composed=list(composed), retrieval=retrieval,
        image_text=image_text, image_text_mean=mean, notes=notes, seconds=round(time.perf_counter() - t0, 2),
    )


# -------------------------------------------------------------------------------------------------- report


def _fmt(x: float, mr: bool = False) -> str:
    return f"{x:.1f}" if mr else f"{x:.3f}"


def to_markdown(ev: Evaluation | dict[str, Any]) -> str:
    """A readable report: one table for image<->audio, one for image<->text, with the chance level beside them.

    Takes an ``Evaluation`` or its JSON (``to_dict``), as read back from a report file."""
    res = ev.to_dict() if isinstance(ev, Evaluation) else ev
    lines = [
        f"# Sat2Sound evaluation: {res['split']} split, N = {res['n']}",
        "",
        f"- checkpoint: `{res['checkpoint']}` (preset {res['preset']}, head {res['head']}, "
        f"fingerprint {res['fingerprint'][:12]}, trained {'with' if res['trained_with_metadata'] else 'without'} "
        "metadata)",
        f"- data: `{res['data']}`",
        f"- chance level: R@10% = {res['chance_r10']:.2f} (exactly {res['chance_r10_exact']:.4f} for N = {res['n']}),"
        f" median rank = {res['chance_mr']:.1f}",
        "- R@10%: fraction of queries whose true match ranks strictly better than 10% of N (higher is better); "
        "MR: median rank (lower is better); ties take the average rank.",
        "- composed: `none` image vs audio; `audio` audio side = audio + its caption; `query` the caption is added "
        "to the query side (PSM protocol).",
    ]
    lines += [f"- note: {n}" for n in res.get("notes", [])]
    lines += ["", "## Image <-> audio", "",
              "| zoom | metadata | composed | I2A R@10% | I2A MR | A2I R@10% | A2I MR |",
              "|---:|---|---|---:|---:|---:|---:|"]
    for r in res["retrieval"]:
        lines.append(f"| {r['zoom']} | {r['metadata']} | {r['composed']} | {_fmt(r['i2a_r10'])} | "
                     f"{_fmt(r['i2a_mr'], True)} | {_fmt(r['a2i_r10'])} | {_fmt(r['a2i_mr'], True)} |")
    lines += ["", "## Image <-> text (the image's own caption at the same zoom)", "",
              "| zoom | metadata | I2T R@10% | I2T MR | T2I R@10% | T2I MR |",
              "|---:|---|---:|---:|---:|---:|"]
    for r in res["image_text"]:
        lines.append(f"| {r['zoom']} | {r['metadata']} | {_fmt(r['i2t_r10'])} | {_fmt(r['i2t_mr'], True)} | "
                     f"{_fmt(r['t2i_r10'])} | {_fmt(r['t2i_mr'], True)} |")
    for setting, m in res["image_text_mean"].items():
        lines.append(f"| mean | {setting} | {_fmt(m['i2t_r10'])} | {_fmt(m['i2t_mr'], True)} | "
                     f"{_fmt(m['t2i_r10'])} | {_fmt(m['t2i_mr'], True)} |")
    lines.append("")
    return "\n".join(lines)


def write_report(ev: Evaluation, out: str | Path) -> tuple[Path, Path]:
    """Write FILE.json and FILE.md beside it; returns both paths."""
    out = Path(out)
    if out.suffix.lower() != ".json":
        out = out.with_suffix(out.suffix + ".json") if out.suffix else out.with_suffix(".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(ev.to_dict(), indent=2) + "\n")
    md = out.with_suffix(".md")
    md.write_text(to_markdown(ev))
    return out, md


# ----------------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_ckpt(parser, help="checkpoint folder (config.json + model.safetensors + manifest.json)",
             old_positional="CHECKPOINT")
    parser.add_argument("--data", required=True, help="dataset folder (embedded world or GeoSound/SoundingEarth)")
    parser.add_argument("--split", default="test", help="train, validation or test (default test)")
    parser.add_argument("--zooms", default=None, help="comma-separated zoom levels (default: all of the config's)")
    parser.add_argument("--metadata", default="none,all,each",
                        help="metadata settings: none, all, each (every field alone) or field names")
    parser.add_argument("--composed", default=",".join(COMPOSED_MODES), help="composed settings: none,audio,query")
    parser.add_argument("--out", default=None, help="write FILE.json and FILE.md (default: print the markdown only)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    add_shared(parser, "cache-dir", "no-progress")


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    composed = [c.strip() for c in args.composed.split(",") if c.strip()]
    bad = [c for c in composed if c not in COMPOSED_MODES]
    if bad or not composed:
        raise ConfigError(f"unknown composed setting(s) {bad}; expected some of {', '.join(COMPOSED_MODES)}")
    res = evaluate_checkpoint(args.ckpt, args.data, args.split, args.zooms, args.metadata,
                              composed=composed, cache_dir=args.cache_dir, progress=not args.no_progress)
    text = to_markdown(res)
    if args.out:
        js, md = write_report(res, args.out)
        print(text)
        print(f"wrote {js} and {md}")
    else:
        print(text)
    return 0
