"""Packaging for Android: only device-side modules are staged, and none of them may import what a phone lacks."""

from __future__ import annotations

import ast

import pytest

from bundle.android_stage import DEVICE_MODULES, REPO, check_imports, stage


def test_device_modules_import_only_device_modules():
    assert check_imports() == []


def test_a_build_side_import_is_caught(tmp_path):
    (tmp_path / "mobile_app").mkdir()
    (tmp_path / "mobile_app" / "sneaky.py").write_text(
        "import numpy\nfrom core.model import build_model\n\ndef f():\n    import torch\n")
    problems = check_imports(tmp_path, ("mobile_app/sneaky.py",))
    assert len(problems) == 2
    assert any("core.model, which is not a device module" in p for p in problems)
    assert any("torch, which the device does not have" in p for p in problems)


def test_stage_copies_the_device_set_and_an_entry_point(tmp_path):
    out = stage(tmp_path / "src")
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert files == set(DEVICE_MODULES) | {"main.py"}
    assert not any(f.startswith(("export/", "compress/", "core/", "world/", "bundle/")) for f in files)
    ast.parse((out / "main.py").read_text())
    assert (out / "mobile_app" / "app.py").read_bytes() == (REPO / "mobile_app" / "app.py").read_bytes()
    with pytest.raises(SystemExit, match="broken bundle"):
        stage(tmp_path / "src2", bundle=tmp_path / "no-bundle")


def test_buildozer_spec_points_at_the_staged_sources():
    import configparser

    spec = configparser.ConfigParser()
    spec.read(REPO / "buildozer.spec")
    assert spec["app"]["source.dir"] == "build/android-src"
    reqs = spec["app"]["requirements"].split(",")
    assert {"kivy==2.3.1", "numpy", "pillow", "sqlite3", "onnxruntime", "plyer"} <= set(reqs)
    assert "torch" not in reqs
