"""The bad-input table runs whole (about 100 inputs in process, seconds): every one is a clear one-line error (or,
for the few that used to crash and should work, a success), never a traceback, never a half-written artifact
accepted."""

from __future__ import annotations

from benchmarks.bad_inputs import run_all, summarise, write_table


def test_every_bad_input_gets_a_clear_line_and_none_a_traceback(fault_chain, tmp_path):
    rows = run_all(tmp_path / "work", progress=False, chain=fault_chain)
    s = summarise(rows)
    bad = [f"[{r.stage}] {r.input}: {r.verdict}: {r.message}" for r in rows if r.verdict in ("traceback", "accepted")]
    assert bad == []
    assert s["tried"] >= 60 and len(s["stages"]) >= 12 and "app bundle loading" in s["stages"]
    for r in rows:
        if r.verdict == "clear":
            assert r.exit and r.message and "\n" not in r.message, r
    table = write_table(rows, tmp_path / "bad_inputs.md").read_text()
    assert table.count("\n| ") == len(rows) + 1  # a row per input under the header
