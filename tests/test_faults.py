"""Fault injection, stage by stage: SIGKILL a stage's command at a seeded write point, check that no consumer
accepts what is on disk in between, rerun the same command and check the result equals an uninterrupted run's.
A few points per stage here; ``python -m benchmarks.faults`` sweeps them all."""

from __future__ import annotations

import pytest

from benchmarks.fault_stages import STAGES, run_fault

# (stage, label, n): the window each point opens
POINTS = [
    ("world", "world.shard", 1),  # one shard of the staging folder written
    ("train", "state.swap", 1),  # OUT/last/ moved aside, the new state not yet in place
    ("train", "checkpoint.file", 2),  # new weights in place, the old manifest still there
    ("distill", "train.step", 3),  # in the middle of an epoch
    ("quantize", "artifact.publish", 1),  # everything staged, not renamed into place
    ("export", "export.file", 1),  # one tower's ONNX file written
    ("gallery", "gallery.batch", 1),  # one batch committed, no index yet
    ("gallery", "gallery.publish", 1),  # indexes written, index.json not yet
    ("map", "map.chunk", 2),  # one chunk published, the next one's temp file written
    ("bundle", "bundle.publish", 1),  # the bundle staged and checked, not renamed into place
]


@pytest.mark.parametrize("stage, label, n", POINTS, ids=[f"{s}-{lb}-{n}" for s, lb, n in POINTS])
def test_a_killed_stage_resumes_to_the_uninterrupted_result(stage, label, n, fault_chain, tmp_path):
    r = run_fault(STAGES[stage], fault_chain, tmp_path, label, n)
    assert r.killed, f"{stage} never reached {label}:{n} (exit {r.stderr})"
    assert r.accepted is None, r.accepted
    assert r.rerun_exit == 0
    assert r.diffs == []
    assert r.litter_bytes == 0, "a killed writer's staging or temp files were left behind"
