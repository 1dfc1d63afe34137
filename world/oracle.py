"""How well could anything match images to recordings in this world? An oracle that knows the truth.

The oracle knows, for every test place i, the sources plausible there (gt_plausible, P_i), and for every recording j
the sources it holds (gt_present, A_j). It scores a pair by the share of the recording it can explain,
|P_i & A_j| / |A_j|, plus a tiny deterministic tie-break 1e-3 * |P_i & A_j| / |P_i| (a recording that covers more
of the place ranks higher among equally explained ones). The true recording always scores a full 1, but so does
every other recording made of sources that are plausible at i: a bird recording fits most green places. That is
the one-to-many ambiguity of real soundscapes, and the oracle's R@10% must be well below 1 for the benchmark to be
honest. It is a reference, not a strict upper bound: it sees only which sources are plausible and present, not how
loud each one is nor the hour, month and recorder that shift the odds, which a model given the metadata can use
(the trained default teacher beats it at zooms 3 and 5).

For image->caption, caption_oracle_r10 here scores the sources a caption names against the place's plausible set
(scene words ignored, weak); world.caption_oracle re-derives each image's caption generator inputs and draws fresh
captions from them, estimating the Bayes-optimal ranking of caption signatures. For image<->audio,
world.audio_oracle does the same with the recording generator: it knows each place's full tile, latitude and
(optionally) the recording's month, hour and platform, draws fresh recordings there and ranks the sources each
recording holds by their likelihood, a much tighter reference than oracle_r10. Ranks follow the paper's protocol
(world.ranking).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from contracts.errors import DataError
from world.caption_reading import caption_sources
from world.ranking import ranks_of_diagonal, ranks_report
from world.shards import read_split
from world.sources import SOURCES


def _multi_hot(lists: list[list[str]]) -> np.ndarray:
    """(N, len(SOURCES)) 0/1 matrix of the known sources in each list."""
    index = {s: k for k, s in enumerate(SOURCES)}
    out = np.zeros((len(lists), len(SOURCES)), np.float64)
    for i, items in enumerate(lists):
        for s in items or []:
            if s in index:
                out[i, index[s]] = 1.0
    return out


def oracle_similarity(plausible: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(N_places, N_recordings) oracle scores from multi-hot matrices."""
    inter = plausible @ present.T
    size_a = np.maximum(present.sum(axis=1), 1.0)[None, :]
    size_p = np.maximum(plausible.sum(axis=1), 1.0)[:, None]
    return inter / size_a + 1e-3 * inter / size_p


def oracle_scores(plausible_lists: list[list[str]], present_lists: list[list[str]], chunk: int = 2048
                  ) -> dict[str, object]:
    """Image->audio and audio->image oracle metrics for aligned lists of plausible and present sources."""
    if len(plausible_lists) != len(present_lists) or not plausible_lists:
        raise DataError("the oracle needs the same, non-zero number of places and recordings", field="gt_present")
    P, A = _multi_hot(plausible_lists), _multi_hot(present_lists)
    n = len(P)
    i2a = np.empty(n)
    a2i = np.empty(n)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        i2a[s:e] = ranks_of_diagonal(oracle_similarity(P[s:e], A), s)  # queries: places, gallery: recordings
        a2i[s:e] = ranks_of_diagonal(oracle_similarity(P, A[s:e]).T, s)  # queries: recordings, gallery: places
    return {"n": n, "i2a": ranks_report(i2a, n), "a2i": ranks_report(a2i, n), "chance_r10": 0.1}


def caption_oracle_r10(dataset_dir: Path, split: str = "test") -> dict[int, dict[str, float]]:
    """Image->caption oracle per zoom: a place knows its image-only plausible sources at that zoom, a caption the
    sources it names; scored like the audio oracle (share of the caption's sources plausible at the place). Scene
    words ("farmland with a road") and the order of the sources are ignored, so it is a reference, not a bound."""
    zooms = (1, 3, 5)
    table = read_split(Path(dataset_dir), split, columns=[f"gt_plausible_zl{z}" for z in zooms]
                       + [f"llava_caption_bingmap_zl{z}" for z in zooms])
    cols = table.to_pydict()
    return {z: oracle_scores(cols[f"gt_plausible_zl{z}"],
                             [caption_sources(c) for c in cols[f"llava_caption_bingmap_zl{z}"]])["i2a"]
            for z in zooms}


def oracle_r10(dataset_dir: Path, split: str = "test") -> dict[str, object]:
    """Oracle retrieval on one split of a world folder: {"split", "n", "r10" (image->audio), "median_rank",
    "i2a": {...}, "a2i": {...}, "zoom": {1: ..., 3: ..., 5: ...} (image-only plausible sets per zoom),
    "chance_r10": 0.1}."""
    table = read_split(Path(dataset_dir), split, columns=["gt_plausible", "gt_present", "gt_plausible_zl1",
                                                           "gt_plausible_zl3", "gt_plausible_zl5"])
    cols = table.to_pydict()
    report = oracle_scores(cols["gt_plausible"], cols["gt_present"])
    zooms = {z: oracle_scores(cols[f"gt_plausible_zl{z}"], cols["gt_present"])["i2a"]["r10"] for z in (1, 3, 5)}
    return {"split": split, "n": report["n"], "r10": report["i2a"]["r10"],
            "median_rank": report["i2a"]["median_rank"], "i2a": report["i2a"], "a2i": report["a2i"],
            "zoom_image_only_r10": zooms, "chance_r10": 0.1}
