"""The pytest-benchmark suites in benchmarks/ still run: every bench_*.py collected and each case called once with
benchmarking disabled, on the tiny preset (towers image+audio on PyTorch and ONNX Runtime; LiteRT and the text
tower are left to the full suite: converting them costs a minute, and test_export_tflite covers those files)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest
import test_bundle_build
from test_benchmarks_latency import bench_work_dir

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def demo(request, tmp_path_factory) -> dict[str, Path]:
    return test_bundle_build.demo_folders(request, tmp_path_factory)


def test_suites_run_with_benchmarking_disabled(request, tmp_path_factory, tmp_path, demo):
    work = bench_work_dir(request, tmp_path_factory)
    cmd = [sys.executable, "-m", "pytest", "benchmarks/", "-q", "-p", "no:cacheprovider", "--benchmark-disable",
           "--bench-preset", "tiny", "--bench-run", str(tmp_path / "no-run"), "--bench-work", str(work),
           "--bench-towers", "image,audio", "--bench-runtimes", "torch,torch-int8,ort,ort-int8",
           "--bench-threads", "1", "--bench-gallery-sizes", "400", "--bench-bundle", str(demo["bundle"])]
    report = tmp_path / "suites.xml"
    p = subprocess.run(cmd + [f"--junitxml={report}"], cwd=REPO, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    tail = p.stdout[-3000:] + p.stderr[-2000:]
    assert p.returncode == 0, tail
    passed: dict[str, int] = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        outcome = {child.tag for child in case}
        assert not outcome & {"failure", "error"}, (case.get("name"), tail)
        if not outcome & {"skipped"}:
            suite = case.get("classname").rsplit(".", 1)[-1]
            passed[suite] = passed.get(suite, 0) + 1
    # every suite file ran; the towers: 2 towers x 2 models x 4 runtimes at 1 thread
    assert set(passed) == {p.stem for p in (REPO / "benchmarks").glob("bench_*.py")}, passed
    assert passed["bench_towers"] == 16 and passed["bench_gallery"] == 2 and passed["bench_endtoend"] == 1, passed
    assert passed["bench_audio"] == 5 and passed["bench_tiles"] == 4, passed


def test_normal_test_run_does_not_collect_benchmarks():
    import tomllib

    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert cfg["testpaths"] == ["tests"] and "--benchmark-disable" in cfg["addopts"]
    assert not list((REPO / "benchmarks").glob("test_*.py"))  # suites are bench_*.py, collected by its conftest
