"""Stage the device-side sources (and optionally a bundle) into one folder for buildozer / python-for-android.

    python -m bundle.android_stage [--bundle bundle/] [--kiosk] [--out build/android-src]
    buildozer android debug          # buildozer.spec points source.dir at build/android-src

A phone gets only what the app runs: the app itself, the gallery's read path, and the torch-free contracts it
shares with the build side (errors, schema, tile preprocessing), plus a ``main.py`` entry point. Every staged
module's imports are checked against that set and the device's third-party packages, so a build-side import
(torch, the exporter, the world renderer) can never slip into the APK.
"""

from __future__ import annotations

import argparse
import ast
import shutil
import sys
from pathlib import Path

from contracts.errors import run_guarded
from gallery.layout import READ_PATH_MODULES

REPO = Path(__file__).resolve().parents[1]


# Desktop tools that live beside the app's code but never run on the phone (the app does not import them):
# ``sat2sound walk`` renders a GPX walk to a file with gpxpy, which the APK therefore does not need.
DESKTOP_ONLY: frozenset[str] = frozenset({"mobile_app/walk.py"})


def _device_modules() -> tuple[str, ...]:
    """Every file of the device rooms (contracts, mobile_app) and the gallery's read path, repository-relative."""
    rooms = [rel for room in ("contracts", "mobile_app") for p in sorted((REPO / room).glob("*.py"))
             if (rel := p.relative_to(REPO).as_posix()) not in DESKTOP_ONLY]
    return (*rooms, *(f"gallery/{name}.py" for name in READ_PATH_MODULES))


DEVICE_MODULES: tuple[str, ...] = _device_modules()
# Third-party packages the device may have (recipes or pure Python); optional ones are imported in try blocks.
# usearch is the gallery's index library on the device (gallery/backends.py memory-maps its file); hnswlib is read
# only for galleries built with --index hnswlib (no mobile build: such a gallery is searched exactly on a phone).
# jnius (pyjnius, part of python-for-android's Kivy) streams field mode's AR mix to an AudioTrack; sounddevice is
# the same stream on a desktop that has it (mobile_app/audio_out.py tries each).
DEVICE_PACKAGES: frozenset[str] = frozenset({
    "numpy", "PIL", "kivy", "kivy_garden", "onnxruntime", "ai_edge_litert", "usearch", "hnswlib", "soundfile", "plyer",
    "jnius", "sounddevice",
})

# The project's build-side packages: a device module that imports one of these would drag torch onto the phone.
BUILD_PACKAGES: frozenset[str] = frozenset({"core", "world", "compress", "export", "bundle", "benchmarks"})

MAIN_PY = '''"""Android / packaged entry point: run the Sat2Sound app on the bundle shipped beside this file."""
import os
import sys

from mobile_app.__main__ import main

HERE = os.path.dirname(os.path.abspath(__file__))
args = ["--bundle", os.environ.get("SAT2SOUND_BUNDLE", os.path.join(HERE, "bundle"))]
if os.path.exists(os.path.join(HERE, "KIOSK")):
    args.append("--kiosk")
sys.exit(main(args))
'''


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def check_imports(root: Path = REPO, modules: tuple[str, ...] = DEVICE_MODULES) -> list[str]:
    """Imports of the device modules that reach outside the device set (empty when the set is closed)."""
    staged = {m[:-3].replace("/", ".").removesuffix(".__init__") for m in modules}
    stdlib = set(sys.stdlib_module_names)
    problems = []
    for rel in modules:
        for name in sorted(_imports(root / rel)):
            top = name.split(".")[0]
            if name in staged or top in stdlib or top in DEVICE_PACKAGES or top == "__future__":
                continue
            if top in ("contracts", "gallery", "mobile_app") or top in BUILD_PACKAGES:
                problems.append(f"{rel} imports {name}, which is not a device module")
            else:
                problems.append(f"{rel} imports {name}, which the device does not have")
    return problems


def stage(out: Path, *, bundle: Path | None = None, kiosk: bool = False) -> Path:
    problems = check_imports()
    if problems:
        raise SystemExit("refusing to stage:\n  " + "\n  ".join(problems))
    if out.exists():
        shutil.rmtree(out)
    for rel in DEVICE_MODULES:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, out / rel)
    (out / "main.py").write_text(MAIN_PY)
    if kiosk:
        (out / "KIOSK").write_text("run in exhibit mode\n")
    if bundle is not None:
        from mobile_app.bundle import verify_report

        ok, lines = verify_report(bundle)
        if not ok:
            raise SystemExit("refusing to stage a broken bundle:\n" + "\n".join(lines))
        shutil.copytree(bundle, out / "bundle")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bundle.android_stage", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / "build" / "android-src"))
    parser.add_argument("--bundle", default=None, help="bundle to ship inside the APK (else copy one to the device)")
    parser.add_argument("--kiosk", action="store_true", help="start in exhibit mode")
    args = parser.parse_args(argv)

    def go() -> int:
        out = stage(Path(args.out), bundle=Path(args.bundle) if args.bundle else None, kiosk=args.kiosk)
        n = sum(1 for p in out.rglob("*") if p.is_file())
        print(f"staged {n} files in {out}; now run: buildozer android debug")
        return 0

    return run_guarded(parser.prog, go)


if __name__ == "__main__":
    sys.exit(main())
