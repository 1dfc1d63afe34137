"""A run's JSON-lines log (``OUT/train_log.jsonl``, ``OUT/distill_log.jsonl``): one record per logged step, per
validation and per epoch. On resume, lines past the resumed step are dropped so the log matches the state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class JsonlLog:
    """Appends one JSON line per record; ``enabled=False`` (a torchrun rank other than 0) writes nothing."""

    def __init__(self, path: Path, keep_until_step: int | None, enabled: bool):
        """Start a fresh log (``keep_until_step`` None) or keep the lines up to ``keep_until_step`` (a resume)."""
        self.path, self.enabled = path, enabled
        if not enabled:
            return
        if keep_until_step is None:
            path.write_text("")
        elif path.exists():
            kept = []
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if int(rec.get("step", 0)) <= keep_until_step:
                    kept.append(line)
            path.write_text("".join(x + "\n" for x in kept))

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a") as fh:
                fh.write(json.dumps(record) + "\n")
