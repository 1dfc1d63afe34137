"""How the fault suite judges a stage after a kill: the consumer checks (does a reader accept what is on disk?)
and the comparisons of a resumed artifact with the uninterrupted reference (``benchmarks/fault_stages.py``).

Byte for byte where a stage is deterministic. Left out: fields that say when or how fast something ran
(``VOLATILE``, and any key ending in ``_seconds``, ``_s`` or ``_ms``), paths under the output folder (a summary
records where it wrote), a safetensors header's key order (it varies per process), an Ogg clip's random stream
serial (clips are compared decoded), a .npz's zip timestamps (compared as arrays; a map's float scores to 1e-6).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from contracts.artifacts import sha256_file

# fields that say when or how fast, not what: left out of every JSON comparison
VOLATILE = {"created", "updated", "seconds", "samples_per_s", "elapsed_s", "epoch_seconds", "val_seconds",
            "embed_seconds_this_run", "query_ms", "build_id", "measured", "timings", "time_s", "wall_s",
            "resumed", "teacher_targets_cached"}  # (the last two: how this run got there, not what it made)


def _volatile(key: str) -> bool:
    return key in VOLATILE or key.endswith(("_seconds", "_s", "_ms"))


def _strip(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _strip(v) for k, v in doc.items() if not _volatile(k)}
    if isinstance(doc, list):
        return [_strip(v) for v in doc]
    return doc


def _paths(x: Any, y: Any, at: str = "") -> list[str]:
    if isinstance(x, dict) and isinstance(y, dict):
        return [p for k in sorted(set(x) | set(y)) for p in _paths(x.get(k), y.get(k), f"{at}.{k}" if at else k)]
    return [] if x == y else [at or "content"]


def compare_json(a: Path, b: Path, roots: tuple[Path, Path] | None = None) -> list[str]:
    """Equal JSON less VOLATILE fields; ``roots`` = (reference folder, result folder): paths under them compare
    equal (a summary that records where it wrote its files)."""
    text = b.read_text()
    if roots:
        text = text.replace(str(roots[1]), str(roots[0]))
    x, y = _strip(json.loads(a.read_text())), _strip(json.loads(text))
    return [] if x == y else [f"{b.name}: differs in {', '.join(_paths(x, y)[:6])}"]


def _safetensors(path: Path) -> tuple[dict, bytes]:
    """(header, data) of a safetensors file: its header is JSON whose key order (and the metadata's) varies from
    one process to the next, so two files of the same tensors are compared as parsed header + data bytes."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return _strip(json.loads(raw[8:8 + n])), raw[8 + n:]


def compare_folders(ref: Path, got: Path, *, skip: tuple[str, ...] = ()) -> list[str]:
    """Every file of ``ref`` present in ``got`` with the same bytes (JSON: the same content less VOLATILE)."""
    diffs = []
    if not got.is_dir():
        return [f"{got} is missing"]

    def files(root: Path) -> set[str]:
        return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(root).parts)
                and not any(p.relative_to(root).as_posix().startswith(s) or p.name == s for s in skip)}

    fa, fb = files(ref), files(got)
    diffs += [f"missing {n}" for n in sorted(fa - fb)] + [f"extra {n}" for n in sorted(fb - fa)]
    for name in sorted(fa & fb):
        if name.endswith(".json"):
            diffs += compare_json(ref / name, got / name, (ref, got))
        elif name.endswith(".npz"):
            if not _same_npz(ref / name, got / name):
                diffs.append(f"{name}: arrays differ")
        elif name.endswith(".safetensors"):
            if _safetensors(ref / name) != _safetensors(got / name):
                diffs.append(f"{name}: tensors differ")
        elif sha256_file(ref / name) != sha256_file(got / name):
            diffs.append(f"{name}: bytes differ")
    return diffs


def _same_npz(a: Path, b: Path) -> bool:
    """Same arrays (a .npz is a zip whose entries carry the time they were written). Float arrays of a map's scores
    may differ in the last bit with the BLAS thread count of the process that multiplied them: 1e-6 apart at most.
    The cached tile embeddings themselves are compared exactly (``_compare_chunks``)."""
    import numpy as np

    def same(u, v) -> bool:
        if u.dtype.kind == "f" and v.shape == u.shape:
            return bool(np.allclose(u, v, rtol=0, atol=1e-6))
        return np.array_equal(u, v)

    with np.load(a) as x, np.load(b) as y:
        return set(x.files) == set(y.files) and all(same(x[k], y[k]) for k in x.files)


def in_process(argv: list[str]) -> int:
    """``sat2sound ARGV`` in this process, on one torch thread (as the subprocesses run), whatever an earlier test
    set: a matrix product's last bit can depend on the thread count."""
    import torch

    from core.cli import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return main(argv)
    finally:
        torch.set_num_threads(threads)


def consumer_world(out: Path) -> str | None:
    if not out.exists():
        return None
    return None if in_process(["data", "check", str(out)]) != 0 or (out / "world.json").is_file() else \
        f"`data check` accepted {out} without its world.json"


def consumer_checkpoint(out: Path) -> str | None:
    from contracts.errors import Sat2SoundError
    from core.checkpoint import load_checkpoint

    try:
        load_checkpoint(out)  # verifies the weights' fingerprint against the manifest
    except Sat2SoundError:
        return None
    return None


def consumer_folder_absent(out: Path) -> str | None:
    """Stages that publish with one rename (quantize, export): nothing may be there before it."""
    if out.exists() and not (out / "manifest.json").is_file():
        return f"{out} exists without its manifest"
    return None


def consumer_gallery(out: Path) -> str | None:
    from gallery.errors import GalleryError
    from gallery.query import Gallery

    if not (out / "gallery.db").exists():
        return None
    try:
        Gallery.open(out)
    except GalleryError:
        return None
    return None if (out / "index.json").is_file() else "the reader opened an unfinished gallery"


def consumer_map(out: Path) -> str | None:
    import numpy as np

    for f in out.rglob("chunks/*.npz"):
        if f.name.startswith("."):
            continue
        with np.load(f) as z:  # a published chunk must be whole
            z["embeddings"], z["fractions"]
    return None


def consumer_bundle(out: Path) -> str | None:
    from mobile_app.bundle import verify_report

    if not out.exists():
        return None
    ok, _ = verify_report(out)
    return None if not ok or (out / "manifest.json").is_file() else "a bundle without a manifest verified"


def _gallery_rows(root: Path) -> dict[str, Any]:
    con = sqlite3.connect(f"file:{root / 'gallery.db'}?mode=ro", uri=True)
    try:
        items = con.execute("SELECT id, label, caption, sources FROM items ORDER BY label").fetchall()
        # decoded samples: an Ogg stream's serial number is random, so the same sound differs in its bytes
        clips = [(i, _pcm(b)) for i, b in con.execute("SELECT item_id, bytes FROM clips ORDER BY item_id")]
        vecs = con.execute("SELECT item_id, kind, vector FROM embeddings ORDER BY item_id, kind").fetchall()
        meta = {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM meta")}
    finally:
        con.close()
    return {"items": items, "clips": clips, "vectors": vecs, "meta": _strip({k: v for k, v in meta.items()
                                                                              if k not in ("hnsw", "index_sha256")})}


def _pcm(blob: bytes) -> bytes:
    import io

    import soundfile as sf

    return sf.read(io.BytesIO(blob), dtype="int16")[0].tobytes()


def compare_gallery(ref: Path, got: Path) -> list[str]:
    if not (got / "index.json").is_file():
        return [f"{got} has no index.json"]
    a, b = _gallery_rows(ref), _gallery_rows(got)
    return [f"gallery {k} differ" for k in a if a[k] != b[k]]


def compare_checkpoint(ref: Path, got: Path) -> list[str]:
    diffs = compare_folders(ref, got, skip=("train_log.jsonl", "distill_log.jsonl", "last/state.json"))
    if not json.loads((got / "manifest.json").read_text()).get("training", {}).get("finished"):
        diffs.append("the manifest does not say the run finished")
    return diffs


def compare_maps(ref: Path, got: Path) -> list[str]:
    return compare_folders(ref, got, skip=("cache",)) + _compare_chunks(ref, got)


def _compare_chunks(ref: Path, got: Path) -> list[str]:
    import numpy as np

    diffs = []
    for f in sorted(ref.rglob("chunks/[0-9]*.npz")):
        g = got / f.relative_to(ref)
        if not g.is_file():
            diffs.append(f"missing chunk {g.name}")
            continue
        with np.load(f) as x, np.load(g) as y:
            if not all(np.array_equal(x[k], y[k]) for k in ("embeddings", "fractions")):
                diffs.append(f"chunk {g.name} differs")
    return diffs


def compare_bundle(ref: Path, got: Path) -> list[str]:
    a = json.loads((ref / "manifest.json").read_text())["files"]
    b = json.loads((got / "manifest.json").read_text())["files"]
    return [f"bundle file {k} differs" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
