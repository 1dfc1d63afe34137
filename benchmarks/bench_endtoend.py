"""End to end on the device path: a tapped place -> view from MBTiles -> preprocess -> int8 image tower -> gallery
search -> clip bytes (mobile_app.engine.Soundscape, the code the app runs), per runtime the bundle ships and
thread count."""

from __future__ import annotations

import random
from typing import Any

import pytest

from benchmarks.latency.end_to_end import bundle_model_files


@pytest.mark.parametrize("runtime", ["onnx", "tflite"])
def test_tap_to_clip_bytes(benchmark: Any, bench_bundle: Any, runtime: str, threads: int) -> None:
    from mobile_app.engine import Soundscape
    from mobile_app.place import When

    if runtime not in bundle_model_files(bench_bundle)["runtime_loads"]:
        pytest.skip(f"the bundle has no model file for {runtime}")
    rng = random.Random(0)
    with Soundscape.open(bench_bundle, runtime=runtime, threads=threads) as s:
        r = s.bundle.region

        def tap() -> bytes:
            a = s.listen(rng.uniform(r.west, r.east), rng.uniform(r.south, r.north), rng.choice(s.zooms),
                         audio_source=rng.choice(["aporee", "yfcc", None]), when=When(6, 8))
            return s.clip(a.top.id)[0]

        benchmark.group = f"end to end, {threads} thread(s)"
        benchmark.extra_info.update(bundle=str(bench_bundle), gallery_items=len(s.gallery))
        data = benchmark(tap)
    assert len(data) > 100
