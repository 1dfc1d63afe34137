"""The published model through the chain, measured on stand-ins of the released checkpoints.

    python -m benchmarks.published_model [--size paper|tiny] [--sections coverage,parity,latency,chain]
        [--threads 1,2] [--work runs/bench/published] [--out runs/bench/published_model]

No released weights ship here, so each of the six released files is stood in for by a checkpoint in the authors'
exact format (their key names and shapes, random values: ``published.standin``), and FLAN-T5-large by a random T5
encoder of its geometry (``published.t5_standin``). Sections:

- ``coverage``  every released file imported: tensors in the file, mapped, checked (derived buffers), dropped on
                purpose (with why), coverage (must be 100%), import time;
- ``parity``    per tower, the imported model against references this import path did not write: the authors'
                architecture re-read from their code (``published.reference``; its fusion IS
                ``torch.nn.TransformerEncoder``) and ``transformers``' T5 encoder for the text: max |diff|, min cosine;
- ``latency``   the paper-size towers at batch 1, PyTorch fp32, ORT fp32 / int8 and LiteRT fp32 / int8 per thread
                count, file sizes, beside the paper's 0.5 s CPU figure and an (untrained) paper-size student;
- ``chain``     data -> distil -> int8 -> export (ONNX/ORT, TFLite, Core ML) -> gallery -> bundle from the imported
                teacher (``benchmarks.published_chain``): time per stage, teacher targets per second, minutes per
                epoch, and the student's retention on the subset used.
Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from contracts.errors import ConfigError, run_guarded

logger = logging.getLogger(__name__)

SECTIONS = ("coverage", "parity", "latency", "chain")
CHAIN_FILE = "bingmap_withmeta"  # the released file the chain runs on
PAPER_CPU_MS = 500.0  # the paper's retrieval-based synthesis on CPU
T5_LARGE = {"d_model": 1024, "layers": 24, "heads": 16, "d_ff": 2816}  # FLAN-T5-large's encoder geometry
T5_TINY = {"layers": 2, "heads": 2, "d_ff": 48}


def sizes_for(size: str, metadata_type: str):
    from published.reference import AuthorsSizes

    return AuthorsSizes.paper(metadata_type) if size == "paper" else AuthorsSizes.tiny(metadata_type)


def base_config(size: str):
    """Our architecture for the sizes: the file's own published preset at paper size, published-tiny otherwise."""
    from core.config import get_preset

    return None if size == "paper" else get_preset("published-tiny")


def text_folder(work: Path, size: str) -> Path:
    from published.t5_standin import write_t5_folder

    folder = work / f"flan-t5-{size}"
    if not (folder / "config.json").is_file():
        geometry = T5_LARGE if size == "paper" else {"d_model": sizes_for("tiny", "none").text_width, **T5_TINY}
        write_t5_folder(folder, **geometry)
    return folder


# ---------------------------------------------------------------------------------------------------- coverage


def coverage(work: Path, size: str) -> list[dict[str, Any]]:
    """Import a stand-in of every released file; keep the chain's teacher, remove the rest as it goes."""
    from published.importer import import_checkpoint
    from published.standin import RELEASED, write_standin

    t5 = text_folder(work, size)
    rows = []
    for name, (sat_type, metadata_type) in RELEASED.items():
        ckpt = work / f"{name}.ckpt"
        out = work / "imported" / name
        t0 = time.perf_counter()
        write_standin(ckpt, sizes_for(size, metadata_type), sat_type, seed=0, with_optimizer=size != "paper")
        t1 = time.perf_counter()
        report = import_checkpoint(ckpt, t5, out, base=base_config(size), force=True)
        t2 = time.perf_counter()
        rows.append({"file": f"{name}.ckpt", "bytes": ckpt.stat().st_size, "preset": report.preset,
                     "keys": report.keys, "mapped": report.mapped, "derived": report.derived,
                     "dropped": report.dropped, "initialised": report.initialised, "coverage": report.coverage,
                     "ours_filled": f"{report.filled}/{report.ours}", "write_s": round(t1 - t0, 1),
                     "import_s": round(t2 - t1, 1)})
        logger.info("%s: %d keys, coverage %.0f%%, import %.1f s", name, report.keys, 100 * report.coverage, t2 - t1)
        if name != CHAIN_FILE:
            ckpt.unlink()
            shutil.rmtree(out, ignore_errors=True)
    return rows


# ------------------------------------------------------------------------------------------------------ parity


def parity(work: Path, size: str, batch: int = 2) -> dict[str, Any]:
    """Per tower: the imported model against the reference loaded by the authors' own key names."""
    from transformers import AutoTokenizer, T5EncoderModel

    from core.checkpoint import load_checkpoint
    from published.reference import AuthorsSat2Sound

    ckpt, imported = work / f"{CHAIN_FILE}.ckpt", work / "imported" / CHAIN_FILE
    state = torch.load(ckpt, weights_only=True, mmap=True)
    ref = AuthorsSat2Sound(sizes_for(size, state["hyper_parameters"]["metadata_type"]))
    ref.load_state_dict(state["state_dict"], strict=True)
    model = load_checkpoint(imported).model
    cfg = model.cfg
    g = torch.Generator().manual_seed(0)
    image = torch.randn(batch, 3, cfg.image.image_size, cfg.image.image_size, generator=g)
    zoom = torch.tensor([1.0, 5.0, 3.0, 1.0][:batch])
    values = {"lat": [41.5, -33.9, 64.1, 0.0], "lon": [-93.6, 151.2, -21.9, 9.0], "month": [5.0, 11.0, 1.0, 7.0],
              "hour": [13.0, 22.0, 0.0, 6.0], "audio_source": [0, 2, 3, 1], "caption_source": [0, 1, 2, 0]}
    raw = {k: torch.tensor(v[:batch]) for k, v in values.items()}
    meta = {**{k: v.float() for k, v in raw.items()}, "meta_mask": torch.ones(batch, 5)}
    mel = torch.randn(batch, cfg.audio.n_frames, cfg.audio.n_mels, generator=g) * 15.0 - 20.0
    texts = ["one could hear birds and a stream in the forest", "cars pass on a wet road"][:batch]
    tok = AutoTokenizer.from_pretrained(cfg.model.text.path, local_files_only=True)
    t5 = T5EncoderModel.from_pretrained(cfg.model.text.path, local_files_only=True).eval()
    enc = tok(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")
    with torch.no_grad():
        t5_states = t5(**enc).last_hidden_state
        ours = {"image": model.encode_image(image, zoom, torch.full((batch,), 0.6), meta).embedding,
                "audio": model.encode_audio(mel).embedding, "text": model.encode_text(texts).embedding}
        tokens = torch.randn(batch, 9, cfg.model.codebook.dim, generator=g)
        fusion = (model.fusion(tokens), ref.sat_encoder.meta_fuser.transformer_encoder(tokens)) \
            if cfg.model.fusion.layers else None
    theirs = {"image": ref.encode_image(image, zoom, "bingmap", raw), "audio": ref.encode_audio(mel),
              "text": ref.encode_text(t5_states, enc["attention_mask"])}
    refs = {"image": "published.reference (SatMAE ViT + torch.nn.TransformerEncoder fusion + FDT)",
            "audio": "published.reference_htsat (MGA-CLAP HTSAT re-read from the authors' code) + FDT",
            "text": "transformers T5EncoderModel + published.reference FDT text query"}
    out = {tower: _compare(ours[tower], theirs[tower]) | {"reference": refs[tower]} for tower in ours}
    if fusion is not None:
        out["fusion"] = _compare(*fusion) | {"reference": "torch.nn.TransformerEncoder (the authors' class)"}
    return out


def _compare(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    cos = torch.nn.functional.cosine_similarity(a.flatten(1).double(), b.flatten(1).double())
    return {"max_abs_diff": float((a - b).abs().max()), "min_cosine": float(cos.min())}


# ------------------------------------------------------------------------------------------------------ report


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# The published model through the chain ({result['size']} size, stand-in weights)", "",
             f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores. Stand-ins: the authors' "
             "key names and shapes with random values; FLAN-T5-large replaced by a random T5 encoder of its "
             "geometry.", ""]
    if result.get("coverage"):
        lines += ["## Key coverage", "", "| file | MB | tensors | mapped | checked | dropped | coverage | ours filled "
                  "| import s |", "|---|---:|---:|---:|---:|---:|---:|---|---:|"]
        for r in result["coverage"]:
            lines.append(f"| {r['file']} | {r['bytes'] / 1e6:.0f} | {r['keys']} | {r['mapped']} | {r['derived']} | "
                         f"{len(r['dropped'])} | {100 * r['coverage']:.0f}% | {r['ours_filled']} | {r['import_s']} |")
        reasons: dict[str, list[str]] = {}
        for k, why in result["coverage"][0]["dropped"].items():
            reasons.setdefault(why, []).append(k)
        lines += ["", f"Dropped keys of {result['coverage'][0]['file']}:", ""]
        lines += [f"- {why}: {', '.join(f'`{k}`' for k in sorted(keys))}" for why, keys in reasons.items()]
        lines.append("")
    if result.get("parity"):
        lines += ["## Parity with the references", "", "| tower | max abs diff | min cosine | reference |",
                  "|---|---:|---:|---|"]
        for tower, r in result["parity"].items():
            lines.append(f"| {tower} | {r['max_abs_diff']:.2e} | {r['min_cosine']:.8f} | {r['reference']} |")
        lines.append("")
    if result.get("latency"):
        from benchmarks.published_chain import latency_markdown

        lines += latency_markdown(result["latency"], result["threads"])
    if result.get("chain"):
        from benchmarks.published_chain import chain_markdown

        lines += chain_markdown(result["chain"])
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.published_model", description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=("paper", "tiny"), default="paper")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated: {', '.join(SECTIONS)}")
    parser.add_argument("--threads", default="1,2", help="thread counts for the latency section")
    parser.add_argument("--chain-samples", type=int, default=96, help="world samples the chain runs on")
    parser.add_argument("--distill-steps", type=int, default=12, help="distillation steps the chain times")
    parser.add_argument("--work", type=Path, default=Path("runs/bench/published"))
    parser.add_argument("--out", type=Path, default=Path("runs/bench/published_model"))
    args = parser.parse_args(argv)

    def run() -> int:
        from benchmarks.latency.machine import machine_info

        sections = tuple(s.strip() for s in args.sections.split(",") if s.strip())
        bad = sorted(set(sections) - set(SECTIONS))
        if bad:
            raise ConfigError(f"unknown section(s) {bad}; known: {', '.join(SECTIONS)}")
        threads = tuple(int(t) for t in args.threads.split(","))
        args.work.mkdir(parents=True, exist_ok=True)
        result: dict[str, Any] = {"size": args.size, "threads": list(threads), "machine": machine_info(threads)}
        teacher = args.work / "imported" / CHAIN_FILE
        if "coverage" in sections or not teacher.is_dir():
            result["coverage"] = coverage(args.work, args.size)
        if "parity" in sections:
            result["parity"] = parity(args.work, args.size)
        if "latency" in sections:
            from benchmarks.published_chain import latency

            result["latency"] = latency(teacher, args.work, threads)
        if "chain" in sections:
            from benchmarks.published_chain import chain

            result["chain"] = chain(teacher, args.work, samples=args.chain_samples, steps=args.distill_steps)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        args.out.with_suffix(".md").write_text(markdown(result))
        print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")
        return 0

    from core.cli import setup_logging

    setup_logging()
    return run_guarded("benchmarks.published_model", run)


if __name__ == "__main__":
    sys.exit(main())
