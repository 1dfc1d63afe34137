"""The pipeline's final report: gathers what the stages wrote, says what is missing, never dies on one part."""

from __future__ import annotations

import json

from core.report import write_report


def _export_manifest() -> dict:
    files = [{"path": "onnx/image.int8.onnx", "bytes": 958_032}, {"path": "coreml/image.int8.mlpackage",
                                                                  "bytes": 1_280_306}]
    parity = {"files": [
        {"file": "onnx/image.int8.onnx", "ran": True, "min_cosine": 0.99988, "mean_cosine": 0.9999,
         "gate": "mean_cosine", "threshold": 0.99, "passed": True},
        {"file": "coreml/image.int8.mlpackage", "ran": False, "note": "Core ML predicts on macOS only"}],
        "retrieval": {"split": "test", "n": 600, "zoom": 1, "pytorch_i2a_r10": 0.545,
                      "files": {"onnx.int8": {"i2a_r10": 0.547}}}}
    return {"files": files, "parity": parity}


def test_report_of_an_empty_run_lists_every_stage_as_missing(tmp_path):
    path = write_report(tmp_path)
    text = path.read_text()
    assert path == tmp_path / "report.md" and text.startswith("# Sat2Sound Edge run report")
    for title in ("Compression", "Export", "Gallery", "Bundle", "Latency"):
        assert f"## {title}\n\n_Not available" in text
    assert "The paper's figures" in text and "0.534 / 872" in text  # the paper's row is always there
    assert json.loads((tmp_path / "report.json").read_text())["run"] == str(tmp_path)


def test_report_tables_what_the_stages_wrote(tmp_path):
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "manifest.json").write_text(json.dumps(_export_manifest()))
    (tmp_path / "maps").mkdir()
    summary = {"bbox": "-95,40,-93,41", "tiles": 8, "queries": [
        {"query": "sounds of farm machinery", "sources": ["tractor"], "auc": 0.998, "spearman": 0.673,
         "query_ms": 0.5}]}
    (tmp_path / "maps" / "summary-z1-95-40-93-41.json").write_text(json.dumps(summary))
    (tmp_path / "pipeline.json").write_text(json.dumps({"stages": {"teacher": {"exit": 0, "seconds": 12.5}}}))
    (tmp_path / "gallery").mkdir()
    index = {"count": 1774, "dim": 192, "fingerprint": "5600" * 16,
             "params": {"M": 32, "ef_construction": 400, "mode": {"caption": "hnsw"}, "target_recall": 0.99},
             "measured": {"caption": {"chosen": {"ef": 96, "recall": 0.996, "top1": 1.0, "p50_ms": 0.048}}}}
    (tmp_path / "gallery" / "index.json").write_text(json.dumps(index))
    text = write_report(tmp_path).read_text()
    assert "1774 items, 192-d, model `560056005600`" in text
    assert "| caption | hnsw | 96 | 0.996 | 1.000 | 0.048 |" in text
    assert "| onnx/image.int8.onnx | 0.96 | 0.99988 | 0.99990 | mean_cosine >= 0.99 | yes |" in text
    assert "| coreml/image.int8.mlpackage | 1.28 | - | - | not run here (Core ML predicts on macOS only) | - |" in text
    assert "PyTorch 0.545; onnx.int8 0.547" in text
    assert "| -95,40,-93,41 | 8 | sounds of farm machinery | tractor | 0.998 | 0.673 | 0.50 |" in text
    assert "teacher 12.5" in text
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["export"]["files"] == 2 and data["maps"][0]["auc"] == 0.998


def test_a_broken_stage_file_does_not_stop_the_report(tmp_path):
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "manifest.json").write_text("{ not json")
    text = write_report(tmp_path).read_text()
    assert "## Export\n\n_Not available" in text
