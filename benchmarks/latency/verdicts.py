"""What the figures of a latency pass say: named speed-ups, the product's targets met or missed, the comparison
with the paper, and end to end projected onto larger galleries. Each is derived from this run's figures only."""

from __future__ import annotations

from typing import Any

from benchmarks.latency.plan import (
    PAPER_PARAMS,
    PAPER_SYNTHESIS_MS,
    RUNTIME_LABELS,
    TARGET_DEVICE_MB,
    TARGET_E2E_MS,
    TARGET_IMAGE_INT8_MS,
    TOWERS,
)

# Named comparisons of p50s: (name, (role, runtime) timed, (role, runtime) it is compared with).
HEADLINE_PAIRS = (
    ("student int8 ORT vs teacher PyTorch fp32", ("student", "ort-int8"), ("teacher", "torch")),
    ("student int8 LiteRT vs teacher PyTorch fp32", ("student", "litert-int8"), ("teacher", "torch")),
    ("student fp32 vs teacher fp32 (PyTorch): distillation alone", ("student", "torch"), ("teacher", "torch")),
    ("teacher ORT fp32 vs PyTorch fp32: runtime alone", ("teacher", "ort"), ("teacher", "torch")),
    ("teacher ORT int8 vs ORT fp32: int8 alone", ("teacher", "ort-int8"), ("teacher", "ort")),
    ("teacher PyTorch int8 vs PyTorch fp32", ("teacher", "torch-int8"), ("teacher", "torch")),
)


def _row(rows: list[dict[str, Any]], tower: str, role: str, runtime: str) -> dict[str, Any] | None:
    return next((r for r in rows if (r["tower"], r["role"], r["runtime"]) == (tower, role, runtime)
                 and "error" not in r), None)


def _p50(row: dict[str, Any] | None, t: int) -> float | None:
    if row is None or str(t) not in row.get("threads", {}):
        return None
    return row["threads"][str(t)]["p50_ms"]


def headline_speedups(rows: list[dict[str, Any]], threads: tuple[int, ...]) -> list[dict[str, Any]]:
    """Named ratios of p50s from this run (base / other)."""
    out = []
    for name, (role, rt), (brole, brt) in HEADLINE_PAIRS:
        for tower in TOWERS:
            # the student's text tower is the teacher's
            role_t = "teacher" if tower == "text" and role == "student" else role
            for t in threads:
                a, b = _p50(_row(rows, tower, role_t, rt), t), _p50(_row(rows, tower, brole, brt), t)
                if a and b and (role_t, rt) != (brole, brt):
                    out.append({"name": name, "tower": tower, "threads": t, "speedup": round(b / a, 2),
                                "p50_ms": round(a, 3), "base_p50_ms": round(b, 3)})
    return out


def check_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The product's three targets, each as measured (None when the item was not measured)."""
    rows = result.get("towers") or []
    targets = []
    for rt in ("ort-int8", "litert-int8"):
        role = "teacher" if _row(rows, "image", "teacher", rt) and not _row(rows, "image", "student", rt) else "student"
        p50 = _p50(_row(rows, "image", role, rt), 1)
        targets.append({"name": f"int8 {role} image tower, {RUNTIME_LABELS[rt]}, p50 at 1 thread",
                        "target": f"< {TARGET_IMAGE_INT8_MS:g} ms", "measured": None if p50 is None else round(p50, 3),
                        "unit": "ms", "met": None if p50 is None else p50 < TARGET_IMAGE_INT8_MS})
    e2e = result.get("end_to_end") or {}
    for r in e2e.get("runs", []):
        p50 = r["total"]["p50_ms"]
        targets.append({"name": f"end to end location -> clip bytes ({r['runtime']}, {r['threads']} thread"
                                f"{'s' if r['threads'] > 1 else ''}), p50", "target": f"< {TARGET_E2E_MS:g} ms",
                        "measured": round(p50, 3), "unit": "ms", "met": p50 < TARGET_E2E_MS})
    for runtime, load in (e2e.get("runtime_loads") or {}).items():
        mb = load["bytes"] / 1e6
        targets.append({"name": f"device model file ({runtime}: {load['file']})",
                        "target": f"< {TARGET_DEVICE_MB:g} MB", "measured": round(mb, 2), "unit": "MB",
                        "met": mb < TARGET_DEVICE_MB})
    if e2e.get("files"):
        mb = e2e["total_bytes"] / 1e6
        targets.append({"name": "all model files in the bundle", "target": f"< {TARGET_DEVICE_MB:g} MB",
                        "measured": round(mb, 2), "unit": "MB", "met": mb < TARGET_DEVICE_MB})
    return targets


def paper_comparison(result: dict[str, Any]) -> dict[str, Any]:
    """Ratios against the paper's retrieval-based synthesis: 0.5 s on CPU and 130M parameters."""
    out: dict[str, Any] = {"paper_latency_ms": PAPER_SYNTHESIS_MS, "paper_params": PAPER_PARAMS}
    runs = (result.get("end_to_end") or {}).get("runs") or []
    if runs:
        best = min(runs, key=lambda r: r["total"]["p50_ms"])
        out["end_to_end_p50_ms"] = round(best["total"]["p50_ms"], 3)
        out["end_to_end_setting"] = f"{best['runtime']}, {best['threads']} thread(s)"
        out["latency_ratio"] = round(PAPER_SYNTHESIS_MS / best["total"]["p50_ms"], 1)
    models = result.get("models") or {}
    for role, m in models.items():
        p = m["params"]
        out[f"{role}_image_tower_params"] = p["image"]
        out[f"{role}_image_tower_param_ratio"] = round(PAPER_PARAMS / max(p["image"], 1), 1)
        out[f"{role}_all_towers_params"] = p["total"]
        out[f"{role}_all_towers_param_ratio"] = round(PAPER_PARAMS / max(p["total"], 1), 2)
    return out


def projected_search(result: dict[str, Any]) -> list[dict[str, Any]]:
    """End to end with a larger gallery: the measured tap minus its search plus the search measured at that size
    (HNSW at its chosen ef, or exact when HNSW misses the recall target) - derived, not measured."""
    runs = (result.get("end_to_end") or {}).get("runs") or []
    sizes = (result.get("gallery") or {}).get("sizes") or []
    out = []
    for r in runs:
        for s in sizes:
            exact = s["exact"].get(str(r["threads"])) or s["exact"].get("1")
            search = {"hnsw": s["hnsw"]["p50_ms"], "ivf": (s.get("ivf") or {}).get("p50_ms")}.get(
                s["gallery_mode"]) or exact["p50_ms"]
            out.append({"runtime": r["runtime"], "threads": r["threads"], "gallery_n": s["n"],
                        "mode": s["gallery_mode"],
                        "p50_ms": round(r["total"]["p50_ms"] - r["search"]["p50_ms"] + search, 3)})
    return out
