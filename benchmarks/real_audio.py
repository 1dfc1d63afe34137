"""The domain gap on sound, measured: real recordings the model never heard, zero-shot.

    python -m benchmarks.real_audio --ckpt runs/demo/teacher [--student runs/demo/student]
        [--export runs/demo/export] [--gallery runs/demo/gallery] [--baseline runs/synth/teacher]
        [--out runs/bench/real_audio]

Clips: the held-out split of ``world.recordings`` (never world material, never in training, distillation,
calibration or the gallery), cut into windows of the model's clip length (up to ``--windows`` per clip, evenly
spread; a shorter clip is zero-padded as any query is). Beside them, the same number of synthetic clips of the same
sources, rendered by the world's synthesiser over its noise floor.

For each window and model: the audio embedding ranks the world's 21 sources, each named by the mean of its caption
phrases' text embeddings ("sounds of birds chirping", ...): top-1 / top-3 accuracy of the true source. With a
gallery, the audio embedding also ranks the gallery's captions: top-1 / top-3 = the true source is named by the
best / one of the three best captions. Models: the teacher, the fp32 student, the exported int8 student (the
``audio_wave`` tower, waveform in, run by ONNX Runtime as the device runs it; its text side is the teacher's, which
the student shares by construction), and a baseline teacher (e.g. one trained on the synthetic-only world).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contracts.artifacts import MANIFEST_FILE, read_json
from contracts.errors import ConfigError, run_guarded
from world import recordings
from world.sources import SOURCE_PHRASES, SOURCES

logger = logging.getLogger(__name__)

TEMPLATE = "sounds of {}"


@dataclass(frozen=True)
class Window:
    clip: str  # the clip's catalogue key ("synthetic/<source>/<i>" for a synthetic one)
    source: str  # the source it stands for (its per-source row)
    wave: np.ndarray
    sources: tuple[str, ...] = ()  # every source it holds: naming any of them counts as right (default: source)

    @property
    def truth(self) -> tuple[str, ...]:
        return self.sources or (self.source,)


def real_windows(sample_rate: int, seconds: float, max_windows: int) -> list[Window]:
    """Windows of every installed held-out clip, at the model's rate and clip length."""
    n = int(round(sample_rate * seconds))
    out = []
    for clip in recordings.catalogue():
        if clip.split != recordings.HELD_OUT_SPLIT:
            continue
        wave = recordings.decode_clip(clip, sample_rate)
        if wave.size <= n:
            out.append(Window(clip.key, clip.source, np.pad(wave, (0, n - wave.size)), clip.sources))
            continue
        starts = np.linspace(0, wave.size - n, min(max_windows, wave.size // n)).astype(int)
        out += [Window(clip.key, clip.source, wave[s:s + n].copy(), clip.sources) for s in starts]
    return out


def synthetic_windows(like: list[Window], sample_rate: int, seconds: float, seed: int = 0) -> list[Window]:
    """One synthetic clip per window of ``like``, of the same source: the world's synthesiser over its noise floor."""
    from world.sounds import render_scene

    out = []
    for i, w in enumerate(like):
        wave = render_scene([w.source], seconds, sample_rate, np.random.default_rng([seed, i]), [0.0])
        out.append(Window(f"synthetic/{w.source}/{i}", w.source, wave))
    return out


class TorchModel:
    """A checkpoint's audio and text towers in PyTorch."""

    def __init__(self, path: Path):
        from core.checkpoint import load_checkpoint

        self.loaded = load_checkpoint(path)
        self.cfg = self.loaded.cfg

    def audio(self, waves: list[np.ndarray]) -> np.ndarray:
        import torch

        from core.data.logmel_numpy import log_mel_numpy

        with torch.no_grad():
            mel = torch.from_numpy(np.stack([log_mel_numpy(w, self.cfg.audio) for w in waves]))
            return np.concatenate([self.loaded.model.encode_audio(mel[i:i + 32]).embedding.numpy()
                                   for i in range(0, len(waves), 32)])

    def text(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.loaded.model.encode_text(texts).embedding.numpy()


class OrtAudio:
    """The exported int8 ``audio_wave`` tower of an export folder, run by ONNX Runtime (batch by batch)."""

    def __init__(self, export_dir: Path):
        from export.ort_session import onnx_session

        manifest = read_json(export_dir / MANIFEST_FILE, ConfigError)
        entries = [e for e in manifest["files"] if e["tower"] == "audio_wave" and e["target"] == "onnx"]
        int8 = [e for e in entries if e["variant"] == "int8"]
        if not int8:
            raise ConfigError(f"{export_dir} has no int8 ONNX audio_wave tower; export with --int8 and --towers "
                              "including audio_wave")
        self.entry = int8[0]
        self.source_fingerprint = manifest.get("source", {}).get("fingerprint")
        self.session = onnx_session(export_dir / self.entry["path"])
        self.input = self.session.get_inputs()[0].name

    def audio(self, waves: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([self.session.run(["embedding"], {self.input: np.stack(waves[i:i + 16])})[0]
                               for i in range(0, len(waves), 16)])


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def source_embeddings(text_model: TorchModel) -> np.ndarray:
    """(21, d): per source, the normalised mean of its phrases' embeddings in the template."""
    rows = []
    for s in SOURCES:
        rows.append(_unit(_unit(text_model.text([TEMPLATE.format(p) for p in SOURCE_PHRASES[s]])).mean(axis=0)))
    return np.stack(rows)


def source_accuracy(audio: np.ndarray, windows: list[Window], sources: np.ndarray) -> dict[str, Any]:
    scores = _unit(audio) @ sources.T
    order = np.argsort(-scores, axis=1)
    truth = np.array([SOURCES.index(w.source) for w in windows])
    # the best rank any of the window's true sources reaches (a truck that sounds its horn is traffic or horns)
    rank = np.array([min(int(np.where(order[i] == SOURCES.index(s))[0][0]) for s in w.truth)
                     for i, w in enumerate(windows)])
    per_source = {s: {"n": int((truth == k).sum()), "top1": float((rank[truth == k] == 0).mean()),
                      "top3": float((rank[truth == k] < 3).mean())}
                  for k, s in enumerate(SOURCES) if (truth == k).any()}
    return {"n": len(windows), "top1": float((rank == 0).mean()), "top3": float((rank < 3).mean()),
            "per_source": per_source}


def gallery_accuracy(audio: np.ndarray, windows: list[Window], gallery: Any) -> dict[str, Any]:
    hits1 = hits3 = 0
    for vec, w in zip(_unit(audio), windows):
        found = gallery.search(vec.astype(np.float32), k=3, kind="caption")
        named = [any(s in h.sources for s in w.truth) for h in found]
        hits1 += bool(named[:1] and named[0])
        hits3 += any(named)
    return {"n": len(windows), "top1": hits1 / len(windows), "top3": hits3 / len(windows)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    teacher = TorchModel(Path(args.ckpt))
    cfg = teacher.cfg.audio
    real = real_windows(cfg.sample_rate, cfg.clip_seconds, args.windows)
    if not real:
        raise ConfigError("no held-out real recordings are installed (apt-get install megaglest-data "
                          "openttd-opensfx); nothing to measure")
    synth = synthetic_windows(real, cfg.sample_rate, cfg.clip_seconds)
    gallery = None
    if args.gallery:
        from gallery.query import Gallery

        gallery = Gallery.open(args.gallery, expect_fingerprint=teacher.loaded.fingerprint)
    phrases = source_embeddings(teacher)
    models: list[tuple[str, Any, np.ndarray]] = [("teacher", teacher, phrases)]
    student = TorchModel(Path(args.student)) if args.student else None
    if student is not None:
        models.append(("student fp32 (PyTorch)", student, phrases))
    if args.export:
        exported = OrtAudio(Path(args.export))
        if student is not None and exported.source_fingerprint not in (None, student.loaded.fingerprint):
            logger.info("the export was made from %s (an int8 folder of the student, or another model)",
                        str(exported.source_fingerprint)[:12])
        models.append(("student int8 (ONNX Runtime)", exported, phrases))
    if args.baseline:
        base = TorchModel(Path(args.baseline))
        models.append((f"baseline teacher ({args.baseline_label})", base, source_embeddings(base)))
    rows = []
    for label, model, sources in models:
        row: dict[str, Any] = {"model": label}
        for kind, windows in (("real", real), ("synthetic", synth)):
            emb = model.audio([w.wave for w in windows])
            row[kind] = source_accuracy(emb, windows, sources)
            if gallery is not None and not label.startswith("baseline"):  # the gallery is the teacher's space
                row[kind]["gallery"] = gallery_accuracy(emb, windows, gallery)
        rows.append(row)
        logger.info("%s: real top-3 %.3f, synthetic top-3 %.3f", label, row["real"]["top3"], row["synthetic"]["top3"])
    clips = sorted({w.clip for w in real})
    return {"kind": "sat2sound-real-audio-benchmark", "windows": len(real), "clips": len(clips),
            "sources": sorted({w.source for w in real}), "clip_keys": clips, "chance_top1": 1 / len(SOURCES),
            "chance_top3": 3 / len(SOURCES), "template": TEMPLATE, "models": rows,
            "ckpt": str(args.ckpt), "baseline": args.baseline, "gallery": args.gallery, "export": args.export}


def to_markdown(res: dict[str, Any]) -> str:
    lines = [f"# Real recordings the model never heard: {res['clips']} held-out clips, {res['windows']} windows "
             f"of {len(res['sources'])} sources", "",
             f"Chance: top-1 {res['chance_top1']:.3f}, top-3 {res['chance_top3']:.3f} (21 sources). Synthetic: the "
             "same number of clips of the same sources from the world's synthesiser.", "",
             "| model | real top-1 | real top-3 | synthetic top-1 | synthetic top-3 | gallery real top-1 / top-3 | "
             "gallery synthetic top-1 / top-3 |", "|---|---:|---:|---:|---:|---|---|"]
    for r in res["models"]:
        g = [f"{r[k]['gallery']['top1']:.3f} / {r[k]['gallery']['top3']:.3f}" if "gallery" in r[k] else "-"
             for k in ("real", "synthetic")]
        lines.append(f"| {r['model']} | {r['real']['top1']:.3f} | {r['real']['top3']:.3f} | "
                     f"{r['synthetic']['top1']:.3f} | {r['synthetic']['top3']:.3f} | {g[0]} | {g[1]} |")
    lines += ["", "Per source, real recordings (top-1 / top-3, windows):", "",
              "| source | " + " | ".join(r["model"] for r in res["models"]) + " |",
              "|---|" + "---|" * len(res["models"])]
    for s in res["sources"]:
        cells = [f"{r['real']['per_source'][s]['top1']:.2f} / {r['real']['per_source'][s]['top3']:.2f} "
                 f"({r['real']['per_source'][s]['n']})" for r in res["models"]]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.real_audio", description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="teacher checkpoint (its text tower names the sources)")
    p.add_argument("--student", default=None, help="fp32 student checkpoint")
    p.add_argument("--export", default=None, help="export folder holding the int8 audio_wave tower")
    p.add_argument("--gallery", default=None, help="gallery folder embedded by the teacher")
    p.add_argument("--baseline", default=None, help="another teacher, e.g. trained on the synthetic-only world")
    p.add_argument("--baseline-label", default="synthetic-only world")
    p.add_argument("--windows", type=int, default=4, help="windows per held-out clip, at most (default 4)")
    p.add_argument("--out", default="runs/bench/real_audio", help="writes OUT.json and OUT.md")
    args = p.parse_args(argv)

    def go() -> int:
        res = run(args)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
        text = to_markdown(res)
        out.with_suffix(".md").write_text(text)
        print(text)
        return 0

    return run_guarded(p.prog, go)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main())
