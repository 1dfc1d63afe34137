"""The latency pass as markdown: the machine and models, then one section per part that was measured."""

from __future__ import annotations

from typing import Any

from benchmarks.latency.plan import ROLES, RUNTIME_LABELS


def _fmt(x: float | None, nd: int = 2) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def _trained_label(trained: bool | None) -> str:
    if trained is None:
        return "training state unknown"
    return "trained" if trained else "UNTRAINED: latency does not depend on training"


def _header(result: dict[str, Any]) -> list[str]:
    """Title, machine, load, timing budget and where each model came from."""
    m = result["machine"]
    lines = [f"# Sat2Sound latency ({result['preset']} preset{', quick pass' if result['quick'] else ''})", "",
             f"Machine: {m['cpu']}, {m['cores']} cores ({m['arch']}; AVX2 {'yes' if m['avx2'] else 'no'}, VNNI "
             f"{', '.join(m['vnni']) or 'no'}); Python {m['python']}, "
             + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v) + ".",
             f"Load average (1/5/15 min) at start {m['load_avg_start']}, at end {m.get('load_avg_end')}. "
             f"Batch 1; per item a warm-up, then timed calls for {result['budget']['run_s']} s (at least "
             f"{result['budget']['min_runs']}); p50 = median.", ""]
    for role, info in (result.get("models") or {}).items():
        state = _trained_label(info["trained"])
        prm = {k: v / 1e6 for k, v in info["params"].items()}
        lines.append(f"- {role}: {info['source']} - {state}; fingerprint {info['fingerprint'][:12]}; params: image "
                     f"tower {prm['image']:.2f}M, audio {prm['audio']:.2f}M, text {prm['text']:.2f}M (MiniLM "
                     f"{prm['text_backbone']:.1f}M)")
    lines.append("")
    return lines


def _towers_section(result: dict[str, Any], threads: tuple[int, ...]) -> list[str]:
    """The tower table, what was not measured, and the named speed-ups."""
    rows = result.get("towers")
    if not rows:
        return []
    head = "| tower | model | runtime | file MB | cos vs fp32 | " + " | ".join(
        f"p50 {t}t ms | p90 {t}t ms | x vs teacher PT {t}t" for t in threads) + " |"
    lines = ["## Towers", "", head, "|" + "---|" * (5 + 3 * len(threads))]
    for r in rows:
        mb = "-" if not r.get("bytes") else f"{r['bytes'] / 1e6:.2f}"
        if "error" in r:
            lines.append(f"| {r['tower']} | {r['role']} | {RUNTIME_LABELS[r['runtime']]} | {mb} | - | "
                         + " | ".join("-" for _ in range(3 * len(threads))) + f" |  <!-- {r['error']} -->")
            continue
        cells = []
        for t in threads:
            s = r["threads"].get(str(t), {})
            cells += [_fmt(s.get("p50_ms")) + ("*" if s.get("time_boxed") else ""), _fmt(s.get("p90_ms")),
                      _fmt(r.get("speedup_vs_teacher_torch_fp32", {}).get(str(t)), 1)]
        lines.append(f"| {r['tower']} | {r['role']} | {RUNTIME_LABELS[r['runtime']]} | {mb} | "
                     f"{_fmt(r.get('cosine_to_torch_fp32'), 4)} | " + " | ".join(cells) + " |")
    errors = [r for r in rows if "error" in r]
    if errors:
        lines += ["", "Not measured:"] + [f"- {r['tower']} {r['role']} {RUNTIME_LABELS[r['runtime']]}: "
                                           f"{r['error']}" for r in errors]
    lines += ["", "The student's text tower is the teacher's (MiniLM, text query map and codebook are copied and "
              "frozen), so text is timed once. `cos vs fp32`: the runtime's embedding against PyTorch fp32 of the "
              "same model on the same input. `*`: calls so slow that the item was cut at its time box with fewer "
              "than the minimum runs.", ""]
    if result.get("headline_speedups"):
        lines += ["### Speed-ups (ratios of p50s measured in this run)", "", "| comparison | tower | threads | "
                  "p50 ms | base p50 ms | speed-up |", "|---|---|---:|---:|---:|---:|"]
        for h in result["headline_speedups"]:
            lines.append(f"| {h['name']} | {h['tower']} | {h['threads']} | {h['p50_ms']:.2f} | "
                         f"{h['base_p50_ms']:.2f} | {h['speedup']:.2f}x |")
        lines.append("")
    return lines


def _gallery_section(result: dict[str, Any], threads: tuple[int, ...]) -> list[str]:
    """Exact vs HNSW per gallery size, and the IVF fallback where HNSW missed the target."""
    g = result.get("gallery")
    if not g:
        return []
    data = {"teacher": "real (the trained teacher's embeddings of world tiles; caption-text and place queries)",
            "codebook": "synthetic codebook-mixture", "clustered": "synthetic clustered"}.get(g["data"], g["data"])
    lines = [f"## Gallery search (top-10, {g['dim']}-d {data} vectors, {g['queries']} queries; HNSW M "
             f"{g['M']}, ef_construction {g['ef_construction']}, ef = cheapest with recall@10 >= "
             f"{g['target_recall']})", "",
             "| items | exact p50 ms (" + ", ".join(f"{t}t" for t in threads) + ") | exact p90 ms 1t | HNSW ef | "
             "recall@10 | top-1 | HNSW p50 ms | HNSW p90 ms | HNSW x vs exact 1t | gallery mode | index MB | "
             "build s |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for s in g["sizes"]:
        ex = ", ".join(_fmt(s["exact"][str(t)]["p50_ms"], 3) for t in threads if str(t) in s["exact"])
        h = s["hnsw"]
        build = "cached" if s.get("index_cached") else _fmt(s.get("build_s"), 1)
        lines.append(f"| {s['n']} | {ex} | {_fmt(s['exact'].get('1', {}).get('p90_ms'), 3)} | {h['ef']} | "
                     f"{h['recall_at_10']:.3f} | {h['top1']:.3f} | {h['p50_ms']:.3f} | {h['p90_ms']:.3f} | "
                     f"{s['hnsw_speedup_vs_exact_1t']:.1f} | {s['gallery_mode']} | {s['index_bytes'] / 1e6:.1f} | "
                     f"{build} |")
    ivfs = [s for s in g["sizes"] if s.get("ivf")]
    if ivfs:
        lines += ["", "Where HNSW misses the target, the gallery builder tries IVF lists (gallery/ivf.py) and "
                  "searches by them when they reach it and beat exact search:", "",
                  "| items | IVF lists | nprobe | recall@10 | top-1 | p50 ms | p90 ms | build s |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for s in ivfs:
            v = s["ivf"]
            lines.append(f"| {s['n']} | {v['n_lists']} | {v['nprobe']} | {v['recall_at_10']:.3f} | "
                         f"{v['top1']:.3f} | {v['p50_ms']:.3f} | {v['p90_ms']:.3f} | {v['build_s']:.1f} |")
    lines.append("")
    return lines


def _end_to_end_section(result: dict[str, Any]) -> list[str]:
    """The taps on the bundle, split into their steps, and the projection onto larger galleries."""
    e = result.get("end_to_end")
    if not e:
        return []
    lines = ["## End to end: location -> tile (MBTiles) -> preprocess -> model -> search -> clip bytes", "",
             f"Bundle: {e['source']} ({_trained_label(e['trained'])}); model {e['model_kind']} "
             f"{e['variant']}, {e['image_size']} px; gallery {e['gallery_items']} clips. Random places, zooms and "
             "recording styles in the bundle's region (mobile_app.engine.Soundscape, the app's code path).", "",
             "| runtime | threads | total p50 ms | total p90 ms | view | model | search | clip | taps |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in e["runs"]:
        lines.append(f"| {r['runtime']} ({r['file']}) | {r['threads']} | {r['total']['p50_ms']:.2f} | "
                     f"{r['total']['p90_ms']:.2f} | {r['view']['p50_ms']:.2f} | {r['model']['p50_ms']:.2f} | "
                     f"{r['search']['p50_ms']:.3f} | {r['clip']['p50_ms']:.3f} | {r['total']['n']} |")
    if result.get("projected"):
        lines += ["", "Projected with a larger gallery (measured tap - its search + that size's search; derived): "
                  + "; ".join(f"{p['runtime']} {p['threads']}t, {p['gallery_n']} items ({p['mode']}): "
                              f"{p['p50_ms']:.2f} ms" for p in result["projected"]) + "."]
    lines.append("")
    return lines


def _paper_section(result: dict[str, Any]) -> list[str]:
    """Latency and parameter ratios against the paper's retrieval-based synthesis."""
    p = result.get("paper") or {}
    if not p:
        return []
    lines = ["## Against the paper's retrieval-based synthesis (0.5 s on CPU, 130M parameters)", ""]
    if "latency_ratio" in p:
        lines.append(f"- end to end p50 {p['end_to_end_p50_ms']:.2f} ms ({p['end_to_end_setting']}): "
                     f"{p['latency_ratio']:.1f}x faster than 500 ms")
    for role in ROLES:
        if f"{role}_image_tower_params" in p:
            lines.append(f"- {role} image tower {p[f'{role}_image_tower_params'] / 1e6:.2f}M parameters: "
                         f"{p[f'{role}_image_tower_param_ratio']:.1f}x fewer than 130M; all towers incl. MiniLM "
                         f"{p[f'{role}_all_towers_params'] / 1e6:.1f}M "
                         f"({p[f'{role}_all_towers_param_ratio']:.2f}x)")
    lines.append("")
    return lines


def _targets_section(result: dict[str, Any]) -> list[str]:
    """Each target as measured, met or not."""
    if not result.get("targets"):
        return []
    lines = ["## Targets (each as measured; a miss is a finding)", "", "| target | goal | measured | met |",
             "|---|---|---:|---|"]
    for t in result["targets"]:
        met = "n/a" if t["met"] is None else ("yes" if t["met"] else "**no**")
        measured = "not measured" if t["measured"] is None else f"{t['measured']:.2f} {t['unit']}"
        lines.append(f"| {t['name']} | {t['target']} | {measured} | {met} |")
    lines.append("")
    return lines


def _notes_section(result: dict[str, Any]) -> list[str]:
    """What the pass noted on the way (fallbacks, missing tools, a busy machine)."""
    if not result.get("notes"):
        return []
    return ["## Notes", ""] + [f"- {n}" for n in result["notes"]] + [""]


def markdown(result: dict[str, Any]) -> str:
    """The whole report: the header, then each section the result holds."""
    threads = tuple(result["machine"]["threads_tested"])
    lines = _header(result) + _towers_section(result, threads) + _gallery_section(result, threads)
    lines += _end_to_end_section(result) + _paper_section(result) + _targets_section(result)
    lines += _notes_section(result)
    return "\n".join(lines)
