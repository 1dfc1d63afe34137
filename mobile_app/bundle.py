"""The bundle on the device: what it holds, and the checks that refuse a bundle whose parts do not belong together.

A bundle folder (written by ``sat2sound bundle``: bundle.build on the build side)::

    manifest.json              kind, schema version, versions, region, model / gallery / map facts, the views
                               (ground extent + map level per model zoom), tour places, SHA-256 + size of every file
    model/                     the int8 image+metadata tower: .ort (ONNX Runtime, mobile format), .tflite (LiteRT),
                               and the export's manifest.json
    gallery/                   gallery.db + index.json + the search indexes (USearch or hnswlib files, gallery.layout)
    map/region.mbtiles         the region's imagery as an MBTiles 1.3 pyramid (mobile_app.mbtiles)

A device trusts nothing it has not checked: every file's hash (cached by size + mtime after the first full check,
so a phone does not re-hash a few hundred MB at every start), the model's embedding space against the gallery's,
and the map's metadata. Any failure is a BundleError naming the file and what to do.

Device-side: standard library, contracts, the gallery's read path (gallery.query, numpy) and sqlite3 only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.artifacts import MANIFEST_FILE, ArtifactKind, sha256_file
from gallery.errors import GalleryError
from gallery.query import Gallery
from mobile_app import mercator
from mobile_app.errors import BundleError
from mobile_app.mbtiles import MBTiles

MANIFEST = MANIFEST_FILE
KIND = ArtifactKind.BUNDLE
SCHEMA_VERSION = 1
RUNTIMES: tuple[str, ...] = ("onnx", "tflite")
# Which model file each runtime runs, in order of preference (ORT runs the ORT format and plain ONNX alike).
RUNTIME_FILES: dict[str, tuple[str, ...]] = {"onnx": ("ort", "onnx"), "tflite": ("tflite",)}


@dataclass(frozen=True)
class View:
    """What the model sees at one of its zoom levels: a square of ``ground_m`` metres, cut from map ``level``."""

    zoom: int
    ground_m: float
    level: int


@dataclass(frozen=True)
class ModelSpec:
    """The image tower as the app feeds it."""

    fingerprint: str
    space_fingerprint: str  # the embedding space (the teacher's, for a student): what the gallery must match
    kind: str
    variant: str
    files: dict[str, str]  # file kind (ort / onnx / tflite) -> path relative to the bundle
    inputs: tuple[str, ...]
    output: str
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    gsd_m: float
    zooms: tuple[int, ...]
    embedding_dim: int


@dataclass
class Bundle:
    root: Path
    manifest: dict[str, Any]
    region: mercator.Bounds
    model: ModelSpec
    views: dict[int, View]
    gallery_dir: Path
    map_path: Path
    tour: list[dict[str, Any]] = field(default_factory=list)

    def model_file(self, runtime: str) -> Path:
        """The model file ``runtime`` runs; a BundleError when the bundle has none for it."""
        if runtime not in RUNTIME_FILES:
            raise BundleError(f"unknown runtime {runtime!r}; expected one of {', '.join(RUNTIMES)}")
        for kind in RUNTIME_FILES[runtime]:
            if kind in self.model.files:
                return self.root / self.model.files[kind]
        raise BundleError(f"bundle {self.root} has no model file for runtime {runtime!r} "
                          f"(it holds: {', '.join(sorted(self.model.files)) or 'none'}); rebuild it with that target")


# ---------------------------------------------------------------------------------------------------- hashing


class HashCache:
    """Hashes of files already checked, keyed by path, size and modification time (JSON in the app's data dir).

    A copy or a write changes size or mtime, so a file that was modified is hashed again; an unchanged one is not.
    A missing or unreadable cache is simply empty.
    """

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self.entries: dict[str, list] = {}
        if self.path is not None and self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                self.entries = data if isinstance(data, dict) else {}
            except (OSError, ValueError):
                self.entries = {}

    def digest(self, path: Path) -> str:
        st = path.stat()
        key = str(path.resolve())
        entry = self.entries.get(key)
        if isinstance(entry, list) and len(entry) == 3 and entry[0] == st.st_size and entry[1] == st.st_mtime_ns:
            return str(entry[2])
        digest = sha256_file(path)
        self.entries[key] = [st.st_size, st.st_mtime_ns, digest]
        return digest

    def save(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.entries))
            os.replace(tmp, self.path)
        except OSError:
            pass  # a cache that cannot be written only costs time at the next start


# ---------------------------------------------------------------------------------------------------- checks


def read_manifest(root: Path) -> dict[str, Any]:
    if not root.is_dir():
        raise BundleError(f"bundle folder {root} does not exist")
    path = root / MANIFEST
    if not path.is_file():
        raise BundleError(f"{root} is not a bundle: {MANIFEST} is missing (an unfinished copy?)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path} is unreadable ({exc}); re-copy the bundle") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        raise BundleError(f"{path} is not a Sat2Sound bundle manifest (kind {manifest.get('kind')!r})"
                          if isinstance(manifest, dict) else f"{path} is not a bundle manifest")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(f"bundle {root} has schema version {version}; this app reads version {SCHEMA_VERSION}: "
                          "rebuild the bundle with this version of `sat2sound bundle`")
    for key in ("files", "model", "gallery", "map", "region", "views"):
        if not isinstance(manifest.get(key), dict):
            raise BundleError(f"{path} lacks its {key!r} section; rebuild the bundle")
    return manifest


def check_files(root: Path, manifest: dict[str, Any], cache: HashCache | None = None) -> list[str]:
    """Every listed file present, of the recorded size and SHA-256. Returns the problems found (all of them)."""
    cache = cache or HashCache(None)
    problems = []
    for rel, entry in sorted(manifest["files"].items()):
        path = root / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            problems.append(f"manifest lists a file outside the bundle: {rel!r}")
            continue
        if not path.is_file():
            problems.append(f"file {rel} is missing")
            continue
        size = path.stat().st_size
        if size != entry.get("bytes"):
            problems.append(f"file {rel} is {size} bytes, the manifest says {entry.get('bytes')} (truncated or "
                            "replaced)")
            continue
        if cache.digest(path) != entry.get("sha256"):
            problems.append(f"file {rel} does not match its SHA-256 in the manifest (corrupted or modified)")
    return problems


def _spec(manifest: dict[str, Any]) -> ModelSpec:
    m = manifest["model"]
    try:
        return ModelSpec(
            fingerprint=str(m["fingerprint"]), space_fingerprint=str(m.get("space_fingerprint") or m["fingerprint"]),
            kind=str(m.get("kind", "")), variant=str(m.get("variant", "")), files=dict(m["files"]),
            inputs=tuple(m["inputs"]), output=str(m.get("output", "embedding")), image_size=int(m["image_size"]),
            mean=tuple(float(v) for v in m["mean"]), std=tuple(float(v) for v in m["std"]), gsd_m=float(m["gsd_m"]),
            zooms=tuple(int(z) for z in m["zooms"]), embedding_dim=int(m["embedding_dim"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"the bundle manifest's model section is incomplete ({exc}); rebuild the bundle") from None


def _views(manifest: dict[str, Any]) -> dict[int, View]:
    try:
        return {int(z): View(int(z), float(v["ground_m"]), int(v["level"])) for z, v in manifest["views"].items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"the bundle manifest's views section is unusable ({exc}); rebuild the bundle") from None


def check_consistency(root: Path, manifest: dict[str, Any]) -> list[str]:
    """The parts belong together: model vs gallery embedding space, model manifest copy, map metadata and levels."""
    problems = []
    spec = _spec(manifest)
    views = _views(manifest)
    export_manifest = manifest["model"].get("export_manifest")
    if export_manifest:
        try:
            em = json.loads((root / export_manifest).read_text())
            fp = em.get("fingerprint") or em.get("source", {}).get("fingerprint")
            if fp is not None and fp != spec.fingerprint:
                problems.append(f"model files come from model {str(fp)[:12]} but the bundle manifest names "
                                f"{spec.fingerprint[:12]}")
        except (OSError, ValueError, AttributeError) as exc:
            problems.append(f"the model's manifest {export_manifest} is unreadable ({exc})")
    gallery_dir = root / str(manifest["gallery"].get("dir", "gallery"))
    try:
        with Gallery.open(gallery_dir) as g:
            if g.fingerprint != spec.space_fingerprint:
                problems.append(f"model/gallery fingerprint mismatch: the gallery was embedded by model "
                                f"{g.fingerprint[:12]}, the bundle's model maps into {spec.space_fingerprint[:12]}'s "
                                "space; its answers would be meaningless - rebuild the bundle with a matching gallery")
            if g.dim != spec.embedding_dim:
                problems.append(f"the gallery's vectors are {g.dim}-d, the model's {spec.embedding_dim}-d")
            if manifest["gallery"].get("fingerprint") not in (None, g.fingerprint):
                problems.append("the gallery is not the one the bundle manifest records (fingerprint differs)")
    except GalleryError as exc:
        problems.append(f"gallery: {exc}")
    map_path = root / str(manifest["map"].get("file", ""))
    try:
        with MBTiles(map_path) as mb:
            missing = sorted({v.level for v in views.values()} - set(mb.levels))
            if missing:
                problems.append(f"the map has no tiles at level(s) {missing}, which the model's views need")
    except BundleError as exc:
        problems.append(str(exc))
    return problems


def load_bundle(path: str | os.PathLike, *, verify: bool = True, hash_cache: str | Path | None = None) -> Bundle:
    """Open a bundle for the app. With ``verify`` every hash and fingerprint is checked first (BundleError if any
    fails, naming the first problem and how many more there are)."""
    root = Path(path)
    manifest = read_manifest(root)
    if verify:
        cache = HashCache(hash_cache)
        problems = check_files(root, manifest, cache)
        if not problems:
            problems = check_consistency(root, manifest)
        if problems:
            more = f" (and {len(problems) - 1} more problem(s); run `sat2sound bundle --verify {root}`)" \
                if len(problems) > 1 else ""
            raise BundleError(f"bundle {root} is not usable: {problems[0]}{more}")
        cache.save()
    try:
        region = mercator.parse_bounds(manifest["region"]["bounds"])
    except (KeyError, ValueError) as exc:
        raise BundleError(f"the bundle's region is unusable ({exc}); rebuild the bundle") from None
    return Bundle(root=root, manifest=manifest, region=region, model=_spec(manifest), views=_views(manifest),
                  gallery_dir=root / str(manifest["gallery"].get("dir", "gallery")),
                  map_path=root / str(manifest["map"]["file"]), tour=list(manifest.get("tour", [])))


def verify_report(path: str | os.PathLike) -> tuple[bool, list[str]]:
    """Full check for ``sat2sound bundle --verify``: (ok, lines), every problem listed, hashes always recomputed."""
    root = Path(path)
    lines: list[str] = []
    try:
        manifest = read_manifest(root)
    except BundleError as exc:
        return False, [f"FAIL manifest: {exc}", "VERDICT: BROKEN - the bundle has no usable manifest; rebuild or "
                       "re-copy it"]
    lines.append(f"ok   manifest: schema {manifest['schema_version']}, created {manifest.get('created', '?')}, "
                 f"{len(manifest['files'])} files")
    problems = check_files(root, manifest)
    if problems:
        lines += [f"FAIL {p}" for p in problems]
    else:
        total = sum(int(e.get("bytes", 0)) for e in manifest["files"].values())
        lines.append(f"ok   hashes: all {len(manifest['files'])} files match their SHA-256 ({total / 1e6:.1f} MB)")
    try:
        consistency = check_consistency(root, manifest)
    except BundleError as exc:
        consistency = [str(exc)]
    if consistency:
        lines += [f"FAIL {p}" for p in consistency]
    else:
        m, g = manifest["model"], manifest["gallery"]
        lines.append(f"ok   fingerprints: model {str(m.get('fingerprint'))[:12]} ({m.get('kind')}, {m.get('variant')}) "
                     f"maps into {str(m.get('space_fingerprint'))[:12]} = gallery's model ({g.get('count')} items)")
        lines.append(f"ok   map: levels {manifest['map'].get('minzoom')}-{manifest['map'].get('maxzoom')}, views "
                     + ", ".join(f"zoom {z} -> {v['ground_m']:.0f} m at level {v['level']}"
                                 for z, v in sorted(manifest["views"].items(), key=lambda kv: int(kv[0]))))
    n = len(problems) + len(consistency)
    ok = n == 0
    lines.append("VERDICT: OK - the bundle is complete and consistent" if ok
                 else f"VERDICT: BROKEN - {n} problem(s); rebuild or re-copy the bundle")
    return ok, lines
