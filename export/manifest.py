"""The export manifest: everything a device needs to feed the exported towers and to trust them.

A device has no PyTorch and no config classes, so preprocessing is written out as numbers (image size, mean/std,
crop fraction per zoom, GSD per imagery, the log-mel parameters, tokenizer files and max tokens), and every file is
listed with its target, tower, variant, input/output names, shapes, dtypes, sha256 and size. The source checkpoint's
fingerprint and kind tie the files to the weights they came from; parity figures say how closely each runnable file
matched PyTorch when it was written. ``build_manifest`` is the one place the document is assembled, for
`sat2sound export` (export/exporter.py) and the demo bundle's quick export (bundle/demo.py) alike.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contracts.artifacts import MANIFEST_FILE, ArtifactKind, sha256_file
from contracts.schema import AUDIO_SOURCES, CAPTION_SOURCES, IMAGERY_GSD_M, META_FIELDS, ZOOM_CROP_FRACTION
from export.towers import tower_inputs, tower_outputs

if TYPE_CHECKING:
    from core.checkpoint import Loaded
    from core.config import Sat2SoundConfig

SCHEMA = "sat2sound-export/1"
TOKENIZER_DIR = "tokenizer"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
HASHING = ("sha256 of each file; of a folder (.mlpackage): every file's relative path, a NUL byte and its bytes, in "
           "path order (export/manifest.py entry_sha256)")


def entry_sha256(path: str | Path) -> str:
    """sha256 of a listed file (``contracts.artifacts.sha256_file``), or of a package folder (.mlpackage): every
    file's relative path, a NUL byte and its bytes, in path order."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.relative_to(path).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    return h.hexdigest()


def size_bytes(path: str | Path) -> int:
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def preprocessing(cfg: Sat2SoundConfig) -> dict[str, Any]:
    """Preprocessing constants for both towers' inputs, as numbers: the device computes them without torch."""
    a, im = cfg.audio, cfg.image
    imagery = im.imagery
    return {
        "image": {
            "input": "image (B, 3, S, S) float32, RGB, channels first",
            "image_size": im.image_size,
            "patch_size": im.patch_size,
            "n_patches": im.n_patches,
            "grid": im.grid,
            "scale": "pixel / 255",
            "mean": list(im.mean),
            "std": list(im.std),
            "normalise": "(pixel / 255 - mean) / std per channel",
            "resize": "bicubic (Pillow, antialiased when shrinking)",
            "crop": "centre crop of the native tile by zoom, square",
            "imagery": imagery,
            "zooms": list(im.zooms),
            "zoom_crop_fraction": {k: {str(z): f for z, f in v.items()} for k, v in ZOOM_CROP_FRACTION.items()},
            "gsd_m": dict(IMAGERY_GSD_M),
            "zoom_input": "zoom level as float32 (1, 3 or 5)",
            "gsd_input": "native ground sample distance of the imagery in metres per pixel, float32",
            "reference": "contracts/image_prep.py",
        },
        "metadata": {
            "fields": list(META_FIELDS),
            "meta_mask": "(B, 5) float32, 1 = field given, 0 = missing; order as 'fields'",
            "lat": "degrees north, float32", "lon": "degrees east, float32",
            "month": "1-12, float32", "hour": "0-23 local hour, float32",
            "audio_source": {"dtype": "int64 (int32 on TFLite / Core ML)", "values": list(AUDIO_SOURCES)},
            "caption_source": {"dtype": "int64 (int32 on TFLite / Core ML)", "values": list(CAPTION_SOURCES)},
            "uses_metadata": bool(cfg.model.fusion.use_metadata),
        },
        "audio": {
            "input_mel": "mel (B, frames, n_mels) float32 log-mel in dB",
            "input_wave": "wave (B, n_samples) float32 mono in [-1, 1] at sample_rate (the audio_wave tower)",
            "sample_rate": a.sample_rate,
            "clip_seconds": a.clip_seconds,
            "n_samples": a.n_samples,
            "crop": "centred window of n_samples from a longer clip; a shorter one is zero-padded at the end",
            "n_fft": a.n_fft,
            "hop_length": a.hop_length,
            "window": "hann (periodic)",
            "center": True,
            "pad_mode": "reflect",
            "power": 2.0,
            "n_mels": a.n_mels,
            "f_min": a.f_min,
            "f_max": a.f_max,
            "mel_scale": "slaney",
            "mel_norm": "slaney",
            "log": "10 * log10(max(mel, amin))",
            "amin": a.amin,
            "top_db": None,
            "n_frames": a.n_frames,
            "reference": "core/data/logmel_numpy.py (numpy twin, no torch)",
        },
        "text": {
            "tokenizer_dir": TOKENIZER_DIR,
            "tokenizer": f"{TOKENIZER_DIR}/tokenizer.json (load with tokenizers.Tokenizer.from_file)",
            "backbone": cfg.model.text.backbone,
            "max_tokens": cfg.model.text.export_tokens or cfg.model.text.max_tokens,
            "padding": "pad (and truncate) to max_tokens; attention_mask 1 for tokens, 0 for padding. The shipped "
                       "tokenizer.json already does both (tokenizers.Tokenizer.from_file(...).encode_batch)",
            "special_tokens": ("text </s> (no start token)" if cfg.model.text.backbone == "flan-t5" else
                               "[CLS] text [SEP]") + " as the tokenizer's post-processor adds them",
            "dtype": "int64 (int32 on TFLite / Core ML)",
        },
    }


def copy_tokenizer(model: Any, out_dir: Path, max_tokens: int) -> list[str]:
    """Copy the frozen text backbone's tokenizer files next to the models; returns the copied names.

    The package's tokenizer.json pads and truncates to 128 tokens; the exported text towers take exactly
    ``max_tokens``, so the copy is rewritten to pad and truncate to that, and ``tokenizers.Tokenizer.from_file``
    on a device yields the right ids and mask with no further settings.
    """
    src = Path(model.text_backbone.path)
    dst = out_dir / TOKENIZER_DIR
    dst.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
            copied.append(name)
    if "tokenizer.json" not in copied:
        raise RuntimeError(f"{src} has no tokenizer.json; the device could not tokenize")
    spec = json.loads((dst / "tokenizer.json").read_text(encoding="utf-8"))
    spec["truncation"] = {**(spec.get("truncation") or {"strategy": "LongestFirst", "stride": 0}),
                          "max_length": int(max_tokens), "direction": "Right"}
    tok = getattr(model.text_backbone, "tokenizer", None)
    pad = spec.get("padding") or {"direction": "Right", "pad_to_multiple_of": None,
                                  "pad_id": int(getattr(tok, "pad_token_id", None) or 0), "pad_type_id": 0,
                                  "pad_token": str(getattr(tok, "pad_token", None) or "[PAD]")}
    spec["padding"] = {**pad, "strategy": {"Fixed": int(max_tokens)}}
    (dst / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    return copied


def file_entry(out_dir: Path, path: Path, *, target: str, tower: str, variant: str, inputs: list[dict],
               outputs: list[dict], batch: str | int, quantization: dict | None = None) -> dict[str, Any]:
    return {
        "path": path.relative_to(out_dir).as_posix(),
        "target": target,
        "tower": tower,
        "variant": variant,
        "batch": batch,
        "inputs": inputs,
        "outputs": outputs,
        "sha256": entry_sha256(path),
        "bytes": size_bytes(path),
        "quantization": quantization,
    }


def build_manifest(loaded: Loaded, *, targets: Sequence[str], towers: Sequence[str], files: list[dict[str, Any]],
                   tokenizer_files: Sequence[str] = (), quantization: dict[str, Any] | None = None,
                   parity: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The export manifest of ``files`` (``file_entry`` dicts) written from the checkpoint ``loaded``.

    ``quantization``: how the int8 variants were made; ``parity``: the held-out and retrieval checks; ``extra``:
    per-target sections (e.g. ``ort``: the operator config and the mobile usability verdicts).
    """
    src, cfg = loaded.manifest, loaded.cfg
    manifest: dict[str, Any] = {
        "schema": SCHEMA,
        "kind": ArtifactKind.EXPORT,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "source": {
            "path": str(loaded.path), "kind": src.get("kind"), "source_kind": src.get("source_kind"),
            "fingerprint": loaded.fingerprint, "teacher_fingerprint": src.get("teacher_fingerprint"),
            "preset": cfg.name, "head": cfg.model.codebook.head, "metadata": cfg.model.fusion.use_metadata,
            "text_backbone": src.get("text_backbone"),
        },
        "embedding_dim": cfg.model.codebook.dim,
        "codebook_size": cfg.model.codebook.size,
        "targets": list(targets),
        "towers": {t: {"inputs": list(tower_inputs(t)), "outputs": list(tower_outputs(t))} for t in towers},
        "preprocessing": preprocessing(cfg),
        "tokenizer_files": [f"{TOKENIZER_DIR}/{f}" for f in tokenizer_files],
    }
    if quantization is not None:
        manifest["quantization"] = quantization
    if parity is not None:
        manifest["parity"] = parity
    manifest.update(extra or {})
    manifest["hashing"] = HASHING
    manifest["files"] = files
    return manifest


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> Path:
    """``manifest`` as OUT/manifest.json."""
    path = Path(out_dir) / MANIFEST_FILE
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def tree_sha256(folder: Path) -> str:
    """One sha256 over a folder's files (names and contents, sorted): how an .mlpackage is fingerprinted."""
    h = hashlib.sha256()
    for p in sorted(q for q in Path(folder).rglob("*") if q.is_file()):
        h.update(p.relative_to(folder).as_posix().encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()
