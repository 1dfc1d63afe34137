"""ORT format for phones: ONNX towers converted for the ONNX Runtime mobile runtime, plus what a reduced build needs.

``onnxruntime-mobile`` no longer exists; the mobile path is the ORT flatbuffer format:
``python -m onnxruntime.tools.convert_onnx_models_to_ort --target_platform arm`` optimises each graph for ARM
('Fixed' style: the optimisations are baked in, the right choice for the CPU execution provider) and writes
``required_operators.config``, the operator list to build a size-reduced ORT for the app
(``--include_ops_by_config``). The mobile usability checker's verdict (NNAPI / Core ML EP coverage) is kept as text
and as a parsed summary for every model. The .ort files still load in desktop ONNX Runtime, so parity is
measured here like for every other target.
"""

from __future__ import annotations

import io
import logging
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

OPS_CONFIG = "required_operators.config"
CONVERTER = "onnxruntime.tools.convert_onnx_models_to_ort"


def _run(args: list[str], what: str) -> str:
    proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout + proc.stderr


def convert_to_ort(onnx_files: dict[str, Path], out_dir: str | Path) -> dict[str, Path]:
    """Convert {stem: model.onnx} to ``out_dir/<stem>.ort`` (+ required_operators.config) in one converter run."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ort-stage-") as stage:
        stage_dir = Path(stage) / "in"
        stage_dir.mkdir()
        for stem, src in onnx_files.items():
            shutil.copy2(src, stage_dir / f"{stem}.onnx")
        conv_dir = Path(stage) / "out"
        _run([CONVERTER, "--optimization_style", "Fixed", "--target_platform", "arm", "--output_dir", str(conv_dir),
              str(stage_dir)], "ORT format conversion")
        result = {}
        for stem in onnx_files:
            produced = conv_dir / f"{stem}.ort"
            if not produced.is_file():
                raise RuntimeError(f"ORT format conversion wrote no {produced.name}")
            shutil.move(str(produced), out_dir / produced.name)
            result[stem] = out_dir / produced.name
        configs = sorted(conv_dir.glob("required_operators*.config"))
        if not configs:
            raise RuntimeError("ORT format conversion wrote no required_operators*.config")
        for cfg_file in configs:
            text = cfg_file.read_text()
            # the converter lists the temporary paths it read; keep only the file names
            text = re.sub(r"^# - .*/([^/\n]+)$", r"# - \1", text, flags=re.M)
            (out_dir / cfg_file.name).write_text(text)
    return result


_VERDICT = re.compile(r"Model should perform well with (.+?) as is: (YES|NO)")
_FIXED = re.compile(r"Model should perform well with (.+?) if modified to have fixed input shapes: (YES|NO)")
_PARTITION = re.compile(r"Checking (NNAPI|CoreML \w+)\s*$")
_COVER = re.compile(r"(\d+) partitions with a total of (\d+)/(\d+) nodes can be handled by the (.+?) EP")


def check_mobile_usability(onnx_path: str | Path) -> tuple[str, dict]:
    """The ORT mobile usability checker's verdict; returns its full log and a parsed summary.

    Runs what ``python -m onnxruntime.tools.check_onnx_model_mobile_usability`` runs (``analyze_model`` and the
    closing recommendation), in process: one Python start-up per model saved.
    """
    from onnxruntime.tools.mobile_helpers import usability_checker

    onnx_path = Path(onnx_path)
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(levelname)s:  %(message)s"))
    logger = logging.getLogger(f"sat2sound.export.usability.{onnx_path.name}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        try_eps = usability_checker.analyze_model(onnx_path, skip_optimize=False, logger=logger)
        if try_eps:
            logger.info("As NNAPI or CoreML may provide benefits with this model it is recommended to compare the "
                        "performance of the model using the NNAPI EP on Android, and the CoreML EP on iOS, "
                        "against the performance using the CPU EP.")
        else:
            logger.info("For optimal performance the model should be used with the CPU EP. ")
    finally:
        logger.handlers.clear()
    log = buffer.getvalue().replace(str(onnx_path.parent) + "/", "")
    summary: dict[str, dict] = {}
    for line in log.splitlines():
        if m := _VERDICT.search(line):
            summary.setdefault(m.group(1), {})["as_is"] = m.group(2) == "YES"
        elif m := _FIXED.search(line):
            summary.setdefault(m.group(1), {})["with_fixed_shapes"] = m.group(2) == "YES"
        elif m := _COVER.search(line):
            ep = summary.setdefault(m.group(4), {})
            ep.setdefault("nodes_handled", f"{m.group(2)}/{m.group(3)}")
    recommendation = "CPU EP" if "should be used with the CPU EP" in log else "compare NNAPI / Core ML EP with CPU"
    return log, {"execution_providers": summary, "recommendation": recommendation}
