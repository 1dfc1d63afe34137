"""pytest-benchmark suites of the hot paths (benchmarks/bench_*.py); see benchmarks/README.md.

    .venv/bin/pytest benchmarks/ --benchmark-enable --benchmark-autosave            # run, save as a baseline
    .venv/bin/pytest benchmarks/ --benchmark-enable --benchmark-compare             # compare with the last saved

The project's normal test run (``testpaths = ["tests"]``, ``--benchmark-disable``) never collects this folder;
tests/test_benchmarks_suites.py runs these suites once with benchmarking disabled (each case called once), so CI
proves they still work. The models, exported files and the bundle come from the latency benchmark's resolvers
(benchmarks/latency/models.py and end_to_end.py): the trained artifacts of ``--bench-run`` where they exist, else
untrained ones of ``--bench-preset`` exported into ``--bench-work`` (cached by fingerprint).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks.latency.end_to_end import resolve_bundle
from benchmarks.latency.models import load_models
from benchmarks.latency.plan import ROLES, RUNTIMES, TOWERS


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("sat2sound benchmarks")
    g.addoption("--bench-preset", default="default", help="preset of untrained models (default: default)")
    g.addoption("--bench-run", default="runs/demo", help="pipeline run folder whose trained artifacts are used")
    g.addoption("--bench-work", default="runs/bench/cache", help="cache of exports, galleries and the demo bundle")
    g.addoption("--bench-towers", default=",".join(TOWERS), help="towers to time (image,audio,text)")
    g.addoption("--bench-runtimes", default=",".join(RUNTIMES), help="runtimes to time: " + ",".join(RUNTIMES))
    g.addoption("--bench-threads", default="1,2", help="thread counts of the tower and end-to-end cases")
    g.addoption("--bench-gallery-sizes", default="10000", help="synthetic gallery sizes (e.g. 10000,100000)")
    g.addoption("--bench-bundle", default=None, help="bundle of the end-to-end / map-view cases")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    """Collect bench_*.py here (the project's python_files pattern is test_*.py); files named on the command line
    are collected by pytest itself."""
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def _csv(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in str(text).split(",") if x.strip())


@dataclass(frozen=True)
class BenchOptions:
    preset: str
    run: Path | None
    work: Path
    towers: tuple[str, ...]
    runtimes: tuple[str, ...]
    threads: tuple[int, ...]
    gallery_sizes: tuple[int, ...]
    bundle: Path | None


def _options(config: pytest.Config) -> BenchOptions:
    run = Path(config.getoption("--bench-run")) if config.getoption("--bench-run") else None
    bundle = config.getoption("--bench-bundle")
    return BenchOptions(
        preset=config.getoption("--bench-preset"),
        run=run if run is not None and run.is_dir() else None,
        work=Path(config.getoption("--bench-work")),
        towers=_csv(config.getoption("--bench-towers")),
        runtimes=_csv(config.getoption("--bench-runtimes")),
        threads=tuple(int(t) for t in _csv(config.getoption("--bench-threads"))),
        gallery_sizes=tuple(int(n) for n in _csv(config.getoption("--bench-gallery-sizes"))),
        bundle=Path(bundle) if bundle else None,
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize over the selected thread counts and gallery sizes (other axes are fixed and skipped when not
    selected, so a saved baseline always has the same case names)."""
    opts = _options(metafunc.config)
    if "threads" in metafunc.fixturenames:
        metafunc.parametrize("threads", opts.threads, ids=[f"{t}t" for t in opts.threads])
    if "gallery_n" in metafunc.fixturenames:
        metafunc.parametrize("gallery_n", opts.gallery_sizes, ids=[f"n{n}" for n in opts.gallery_sizes],
                             scope="module")


@pytest.fixture(scope="session")
def bench_options(pytestconfig: pytest.Config) -> BenchOptions:
    opts = _options(pytestconfig)
    opts.work.mkdir(parents=True, exist_ok=True)
    return opts


@pytest.fixture(scope="session")
def bench_models(bench_options: BenchOptions) -> dict[str, Any]:
    """Teacher and student (trained from --bench-run, else untrained of --bench-preset)."""
    return load_models(bench_options.preset, bench_options.run, ROLES)


@pytest.fixture(scope="session")
def bench_cfg(bench_models: dict[str, Any]) -> Any:
    """The teacher's config: audio front end, image size and codebook width of everything timed."""
    return bench_models["teacher"].cfg


@pytest.fixture(scope="session")
def bench_bundle(bench_options: BenchOptions) -> Path:
    """The bundle the app would open: --bench-bundle, the run's, or a demo bundle of an untrained student."""
    bundle, _, _ = resolve_bundle(bench_options.bundle, bench_options.run, bench_options.preset, bench_options.work,
                                  quick=True, progress=False)
    return bundle


@pytest.fixture(autouse=True)
def _restore_torch_threads() -> Any:
    """PyTorch's thread count is process-wide: a case that sets it must not change the next case's figures."""
    import sys

    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    yield
    if before is not None:
        torch.set_num_threads(before)
