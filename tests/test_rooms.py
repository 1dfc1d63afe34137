"""The house: each room imports only the rooms below it, the device side imports neither torch nor a build-side
room, and the model and its training do not depend on the embedded world."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gallery.layout import READ_PATH_MODULES

ROOT = Path(__file__).resolve().parents[1]

# room -> the rooms it may import. Arrows only run down: contracts <- engine <- world <- core <- export <- compress
# <- gallery (build side) <- bundle; the device side (mobile_app, the gallery's read path) stands on contracts alone.
ALLOWED: dict[str, set[str]] = {
    "contracts": set(),
    # engine: the Ray engine's scheduler, below every stage that can run on it (world, core's maps, gallery)
    "engine": {"contracts"},
    # imagery: reading real scenes with rasterio (build side; the app reads the bundle's MBTiles, never this)
    "imagery": {"contracts"},
    "world": {"contracts", "engine"},
    "core": {"contracts", "world", "engine", "imagery"},
    "published": {"contracts", "core"},
    "export": {"contracts", "core"},
    "compress": {"contracts", "core", "export"},
    "gallery": {"contracts", "core", "world", "engine", "imagery"},
    "bundle": {"contracts", "core", "world", "export", "compress", "gallery", "mobile_app", "imagery"},
    "mobile_app": {"contracts", "gallery"},
    "benchmarks": {"contracts", "core", "world", "published", "export", "compress", "gallery", "bundle",
                   "mobile_app", "engine", "imagery"},
}
ROOMS = tuple(ALLOWED)
BUILD_ROOMS = {"engine", "imagery", "world", "core", "published", "export", "compress", "bundle", "benchmarks"}
# The gallery's read path: what a phone runs to search a gallery and play its clips.
GALLERY_DEVICE = tuple(f"gallery/{name}.py" for name in READ_PATH_MODULES)
# Third-party packages the build side may use and a phone has not.
BUILD_ONLY_PACKAGES = {"torch", "torchao", "transformers", "onnx", "onnxscript", "coremltools", "litert_torch",
                       "ai_edge_quantizer", "safetensors", "pyarrow", "sqlite_utils", "tqdm", "matplotlib", "faiss",
                       "ray", "rasterio"}


def _imports(path: Path) -> set[str]:
    """Every absolute import in a file, at module level or inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _files(room: str) -> list[Path]:
    return sorted((ROOT / room).rglob("*.py"))


@pytest.mark.parametrize("room", ROOMS)
def test_each_room_imports_only_the_rooms_below_it(room):
    bad = sorted(f"{f.relative_to(ROOT)} imports {name}" for f in _files(room) for name in _imports(f)
                 if name.split(".")[0] in ROOMS and name.split(".")[0] not in ALLOWED[room] | {room})
    assert bad == []


def test_the_allowed_arrows_have_no_circle():
    seen: dict[str, int] = {}

    def visit(room: str, path: tuple[str, ...]) -> None:
        assert room not in path, f"import circle {' -> '.join((*path, room))}"
        for below in ALLOWED[room]:
            visit(below, (*path, room))
        seen[room] = 1

    for room in ROOMS:
        visit(room, ())
    assert set(seen) == set(ROOMS)


@pytest.mark.parametrize("files", [
    [p.relative_to(ROOT).as_posix() for p in _files("mobile_app")],
    list(GALLERY_DEVICE),
    [p.relative_to(ROOT).as_posix() for p in _files("contracts")],
], ids=["mobile_app", "gallery-read-path", "contracts"])
def test_device_folders_import_neither_torch_nor_a_build_side_room(files):
    bad = []
    for rel in files:
        for name in _imports(ROOT / rel):
            top = name.split(".")[0]
            if top in BUILD_ROOMS or top in BUILD_ONLY_PACKAGES:
                bad.append(f"{rel} imports {name}")
            elif top == "gallery" and f"{name.replace('.', '/')}.py" not in GALLERY_DEVICE and name != "gallery":
                bad.append(f"{rel} imports {name}, the gallery's build side")
    assert bad == []


def _loaded_after(modules: list[str]) -> set[str]:
    code = f"import sys\nfor m in {modules!r}:\n    __import__(m)\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         check=True)
    return set(out.stdout.split())


def test_device_modules_load_without_torch_or_build_rooms():
    device = ["contracts.errors", "contracts.schema", "contracts.artifacts", "contracts.image_prep",
              *(p[:-3].replace("/", ".") for p in GALLERY_DEVICE if not p.endswith("__init__.py")),
              "mobile_app.bundle", "mobile_app.engine", "mobile_app.place", "mobile_app.runtime",
              "mobile_app.mbtiles", "mobile_app.mercator"]
    loaded = _loaded_after(device)
    assert not {m for m in loaded if m.split(".")[0] in BUILD_ROOMS | BUILD_ONLY_PACKAGES}


def test_the_model_and_its_training_do_not_load_the_world():
    """The world's settings are a field of every preset (core.config composes world.config); nothing else of
    the world is loaded by the model, the loader, training, evaluation or distillation."""
    loaded = _loaded_after(["core.model", "core.data.dataset", "core.data.features", "core.train", "core.evaluate",
                            "core.checkpoint", "compress.distill"])
    assert {m for m in loaded if m.split(".")[0] == "world"} <= {"world", "world.config"}


@pytest.mark.parametrize("room", [*ROOMS, "tests"])
def test_no_file_is_over_400_lines(room):
    long = {str(f.relative_to(ROOT)): n for f in _files(room) if (n := len(f.read_text().splitlines())) > 420}
    assert long == {}


@pytest.mark.parametrize("room", [r for r in ROOMS if r != "benchmarks"] + ["benchmarks"])
def test_each_room_says_what_it_holds_and_what_it_must_not_import(room):
    doc = ast.get_docstring(ast.parse((ROOT / room / "__init__.py").read_text())) or ""
    assert doc and re.search(r"must not import|never (import|torch)", doc, re.IGNORECASE), room
