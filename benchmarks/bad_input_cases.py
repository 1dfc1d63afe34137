"""The bad inputs ``benchmarks.bad_inputs`` tries: one :class:`Case` per input, grouped by stage.

A case's ``make(fix)`` returns the ``sat2sound`` arguments to run (or, for the app's bundle loading, a callable),
setting up whatever damaged file it needs under ``fix.scratch``. ``fix`` holds a tiny chain of real artifacts
(``benchmarks.fault_stages.build_chain``) and, where the machine allows (root may mount), a read-only file system
(``fix.ro``) and a 64 KiB file system (``fix.small``: a full disk).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.fault_stages import BUNDLE_REGION, MAP_BBOX, Chain, build_chain

NOT_UTF8 = b"waves \xff\xfe".decode("utf-8", "surrogateescape")  # what Python makes of such bytes in argv
OCEAN = "-150,-10,-140,-5"  # the middle of the Pacific


@dataclass
class Fixtures:
    chain: Chain
    scratch: Path
    ro: Path | None  # a read-only mount (None: cannot mount here)
    small: Path | None  # a 64 KiB file system: a full disk
    mounts: list[Path]

    @classmethod
    def make(cls, work: Path, chain: Chain | None = None) -> Fixtures:
        work = Path(work)
        chain = chain or build_chain(work / "chain")
        scratch = work / "scratch"
        _unmount_under(scratch)
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        ro = _mount(scratch / "ro", "ro,size=1m")
        small = _mount(scratch / "small", "size=64k")
        return cls(chain, scratch, ro, small, [m for m in (ro, small) if m])

    def close(self) -> None:
        for m in self.mounts:
            subprocess.run(["umount", str(m)], capture_output=True)

    def file(self, name: str, data: bytes | str = b"not what it should be") -> Path:
        p = self.scratch / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        return p

    def copy(self, src: Path, name: str) -> Path:
        dst = self.scratch / name
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst)
        return dst

    def full_disk(self, name: str) -> Path:
        from benchmarks.bad_inputs import SkipCaseError

        if self.small is None:
            raise SkipCaseError("no small file system here (mounting needs root)")
        return self.small / name

    def read_only(self, name: str) -> Path:
        from benchmarks.bad_inputs import SkipCaseError

        if self.ro is None:
            raise SkipCaseError("no read-only file system here (mounting needs root)")
        return self.ro / name


def _mount(path: Path, options: str) -> Path | None:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return None
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return path if done.returncode == 0 else None


def _unmount_under(folder: Path) -> None:
    if not folder.exists():
        return
    for line in Path("/proc/mounts").read_text().splitlines():
        point = line.split()[1]
        if point.startswith(str(folder.absolute())):
            subprocess.run(["umount", point], capture_output=True)


@dataclass
class Case:
    stage: str
    what: str
    make: Callable[[Fixtures], Any]  # -> argv list, or a callable (API)
    succeeds: bool = False  # an input that used to crash and is now meant to work


def _truncated_copy(fix: Fixtures, src: Path, name: str, file: str, keep: int = 100) -> Path:
    d = fix.copy(src, name)
    data = (d / file).read_bytes()
    (d / file).write_bytes(data[:keep])
    return d


def _edited_json(fix: Fixtures, src: Path, name: str, file: str, text: str) -> Path:
    d = fix.copy(src, name)
    (d / file).write_text(text)
    return d


def _flip_byte(fix: Fixtures, src: Path, name: str, file: str) -> Path:
    d = fix.copy(src, name)
    data = bytearray((d / file).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (d / file).write_bytes(bytes(data))
    return d


def null_split(folder: Path, rows: int, *, groups: int = 10) -> Path:
    """A dataset folder whose training split counts ``rows`` rows in its Parquet footer, every value null: a stand-in
    for a split too big to build here, for checks that must refuse before reading a row (``--batch-size``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from contracts.schema import REQUIRED_FIELDS

    shard = Path(folder) / "data" / "train-00000-of-00001.parquet"
    if shard.exists():
        return Path(folder)
    shard.parent.mkdir(parents=True, exist_ok=True)
    per = -(-rows // groups)
    names = [*REQUIRED_FIELDS, "bingmap_image"]
    with pq.ParquetWriter(shard, pa.schema([(n, pa.null()) for n in names])) as writer:
        for start in range(0, rows, per):
            n = min(per, rows - start)
            writer.write_table(pa.table({k: pa.nulls(n) for k in names}))
    return Path(folder)


def _batch_cases() -> list[Case]:
    def huge(fix: Fixtures) -> list[str]:
        return ["train", "--preset", "tiny", "--data", str(null_split(fix.scratch / "big-split", 10_000_000)),
                "--out", str(fix.scratch / "t-big"), "--no-progress", "--max-steps", "1", "--batch-size", "10000000"]

    def huge_distill(fix: Fixtures) -> list[str]:
        return ["distill", "--ckpt", str(fix.chain.teacher), "--preset", "student-tiny", "--data",
                str(null_split(fix.scratch / "big-split", 10_000_000)), "--out", str(fix.scratch / "s-big"),
                "--no-progress", "--max-steps", "1", "--batch-size", "10000000"]

    what = "--batch-size 10000000 on a 10-million-row split (one step: TiBs of activations)"
    return [Case("train", what, huge), Case("distill", what, huge_distill)]


def _load_bundle(path: Path) -> Callable[[], Any]:
    def go():
        from mobile_app.bundle import load_bundle

        load_bundle(path)

    return go


def _bundle_cases() -> list[Case]:
    b = "app bundle loading"

    def missing_file(fix: Fixtures) -> Callable[[], Any]:
        d = fix.copy(fix.chain.bundle, "b-missing")
        next(p for p in sorted(d.rglob("*.onnx"))).unlink()
        return _load_bundle(d)

    def no_files_section(fix: Fixtures) -> Callable[[], Any]:
        import json

        d = fix.copy(fix.chain.bundle, "b-nofiles")
        m = json.loads((d / "manifest.json").read_text())
        del m["files"]
        (d / "manifest.json").write_text(json.dumps(m))
        return _load_bundle(d)

    def schema(fix: Fixtures) -> Callable[[], Any]:
        import json

        d = fix.copy(fix.chain.bundle, "b-schema")
        m = json.loads((d / "manifest.json").read_text())
        m["schema_version"] = 999
        (d / "manifest.json").write_text(json.dumps(m))
        return _load_bundle(d)

    def latin1(fix: Fixtures) -> Callable[[], Any]:
        d = fix.copy(fix.chain.bundle, "b-latin")
        text = (d / "manifest.json").read_text().replace('"tour"', '"note": "caf\u00e9 \u00e0 Paris", "tour"', 1)
        (d / "manifest.json").write_bytes(text.encode("latin-1"))
        return _load_bundle(d)

    def onnx_flipped(fix: Fixtures) -> Callable[[], Any]:
        d = fix.copy(fix.chain.bundle, "b-flip")
        f = next(p for p in sorted(d.rglob("*.onnx")))
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0xFF
        f.write_bytes(bytes(data))
        return _load_bundle(d)

    return [
        Case(b, "a bundle folder that does not exist", lambda f: _load_bundle(f.scratch / "no-bundle")),
        Case(b, "an empty folder", lambda f: _load_bundle(f.file("b-empty/.keep").parent)),
        Case(b, "manifest.json that is not JSON", lambda f: _load_bundle(
            _edited_json(f, f.chain.bundle, "b-badjson", "manifest.json", "{not json"))),
        Case(b, "manifest.json that is a JSON list", lambda f: _load_bundle(
            _edited_json(f, f.chain.bundle, "b-list", "manifest.json", "[1, 2]"))),
        Case(b, "manifest.json in Latin-1 bytes", latin1),
        Case(b, "manifest without its files section", no_files_section),
        Case(b, "manifest of a future schema version", schema),
        Case(b, "a model file deleted", missing_file),
        Case(b, "a model file with one byte flipped", onnx_flipped),
        Case(b, "gallery.db truncated", lambda f: _load_bundle(
            _truncated_copy(f, f.chain.bundle, "b-trunc", "gallery/gallery.db", 4096))),
        Case(b, "map.mbtiles replaced by text", lambda f: _load_bundle(
            _edited_json(f, f.chain.bundle, "b-map", next(p.relative_to(f.chain.bundle).as_posix() for p in
                                                            f.chain.bundle.rglob("*.mbtiles")), "not sqlite"))),
        Case("bundle --verify", "a bundle with one byte flipped in gallery.db", lambda f: [
            "bundle", "--verify", str(_flip_byte(f, f.chain.bundle, "b-vflip", "gallery/gallery.db"))]),
        Case("bundle --verify", "a folder that does not exist", lambda f: ["bundle", "--verify",
                                                                           str(f.scratch / "nothing")]),
    ]


def _cases() -> list[Case]:
    from benchmarks.bad_input_table import stage_cases

    cases = stage_cases()
    for case in _batch_cases():  # each after the other inputs of its stage
        at = max(i for i, c in enumerate(cases) if c.stage == case.stage) + 1
        cases.insert(at, case)
    return cases + _bundle_cases()


CASES: list[Case] = _cases()
__all__ = ["BUNDLE_REGION", "CASES", "MAP_BBOX", "NOT_UTF8", "OCEAN", "Case", "Fixtures", "null_split"]
