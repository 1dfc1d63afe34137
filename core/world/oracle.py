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

For image->caption there are two references: caption_oracle_r10 (the sources a caption names against the place's
plausible set; scene words ignored, weak) and caption_resampling_oracle, which re-derives each image's caption
generator inputs and draws fresh captions from them, estimating the Bayes-optimal ranking of caption signatures.

Ranks follow the paper's protocol: 1-based, ties take the average rank, R@10% = share of queries with
rank < 0.1 N (strict), median rank.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.errors import ConfigError, DataError
from core.schema import ZOOM_CROP_FRACTION
from core.world.captions import image_caption
from core.world.places import plausible_sources
from core.world.shards import read_split, read_world_json
from core.world.sounds import SOURCE_PHRASES, SOURCES
from core.world.tiles import CLASS_WORDS, render_tile

# every phrase a caption may use for a source, longest first (so "car horns honking" wins over "honking")
_PHRASES = sorted(((p.lower(), s) for s, ps in SOURCE_PHRASES.items() for p in ps), key=lambda ps: -len(ps[0]))
# every scene word an image caption may use for a fine class, longest first ("a sandy beach" before "a beach")
_CLASS_PHRASES = sorted(((w.lower(), c) for c, ws in CLASS_WORDS.items() for w in ws), key=lambda wc: -len(wc[0]))
_ZOOMS = (1, 3, 5)


def _multi_hot(lists: list[list[str]]) -> np.ndarray:
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


def _ranks_of_diagonal(rows: np.ndarray, offset: int) -> np.ndarray:
    """1-based rank, ties averaged, of item offset + r in row r (the paper's protocol)."""
    diag = rows[np.arange(len(rows)), np.arange(offset, offset + len(rows))][:, None]
    return 1.0 + (rows > diag).sum(axis=1) + ((rows == diag).sum(axis=1) - 1) / 2.0


def ranks_report(ranks: np.ndarray, n: int) -> dict[str, float]:
    return {"r10": float(np.mean(ranks < 0.1 * n)), "median_rank": float(np.median(ranks)),
            "r1": float(np.mean(ranks < 1.5)), "r5": float(np.mean(ranks < 5.5))}


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
        i2a[s:e] = _ranks_of_diagonal(oracle_similarity(P[s:e], A), s)  # queries: places, gallery: recordings
        a2i[s:e] = _ranks_of_diagonal(oracle_similarity(P, A[s:e]).T, s)  # queries: recordings, gallery: places
    return {"n": n, "i2a": ranks_report(i2a, n), "a2i": ranks_report(a2i, n), "chance_r10": 0.1}


def _read_back(caption: str) -> tuple[list[str], list[str]]:
    """(sources, scene classes) a world caption names. Source phrases are read (and blanked) first, so "running
    water" is the stream and never the class "water"; then the scene words of the classes, longest first."""
    text, sources, classes = (caption or "").lower(), [], []
    for phrases, found in ((_PHRASES, sources), (_CLASS_PHRASES, classes)):
        for phrase, name in phrases:
            if phrase in text:
                found.append(name)
                text = text.replace(phrase, " ")
    return sorted(set(sources)), sorted(set(classes))


def caption_sources(caption: str) -> list[str]:
    """The sources a world caption names, read back from the phrases the caption generator uses for them."""
    return _read_back(caption)[0]


def caption_scene(caption: str) -> list[str]:
    """The land-cover classes (FINE_CLASSES names) an image caption's scene phrase names ("farmland with a road"
    -> ["crop", "road"]); [] when the caption describes no scene."""
    return _read_back(caption)[1]


def caption_signature(caption: str, scene: bool = True) -> frozenset[str]:
    """What a caption says, up to wording and order: the sources it names plus (``scene``) "scene:<class>" for each
    class its scene phrase names."""
    return _signature(_read_back(caption), scene)


def _signature(read: tuple[list[str], list[str]], scene: bool) -> frozenset[str]:
    sources, classes = read
    return frozenset(sources) | (frozenset(f"scene:{c}" for c in classes) if scene else frozenset())


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


# ------------------------------------------------------------------------------- image->caption resampling oracle


def caption_generator_inputs(lat: float, lon: float, tile_px: int = 320, ground_m: float = 900.0, seed: int = 0
                             ) -> dict[int, tuple[dict[str, float], np.ndarray]]:
    """{zoom: (image-only plausible source weights, cover fractions of the crop)}: exactly the inputs
    core.world.build.make_sample hands to image_caption for the caption at each zoom (same tile, same crops)."""
    tile = render_tile(lat, lon, tile_px, ground_m, seed)
    out = {}
    for zoom, fraction in ZOOM_CROP_FRACTION["bingmap"].items():
        fracs = tile.fractions(fraction)
        out[zoom] = (plausible_sources(fracs), fracs)
    return out


def _world_params(dataset_dir: Path, world_cfg) -> tuple[int, int, float]:
    """(seed, tile_px, tile_ground_m) from ``world_cfg`` (a WorldConfig) or else from the folder's world.json."""
    if world_cfg is not None:
        return int(world_cfg.seed), int(world_cfg.tile_px), float(world_cfg.tile_ground_m)
    key = read_world_json(Path(dataset_dir)).get("build_key", {})
    try:
        return int(key["seed"]), int(key["tile_px"]), float(key["tile_ground_m"])
    except KeyError as exc:
        raise DataError(f"world.json's build_key lacks {exc}; pass the WorldConfig the world was built with",
                        field="build_key") from None


def signature_likelihoods(sampled: list[list[frozenset[str]]], captions: list[frozenset[str]],
                          backoff: float = 1e-3, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(counts, scores), both (N_images, N_captions): counts[i, j] = share of image i's sampled signatures equal to
    caption j's; scores = counts + ``backoff`` * mean Jaccard similarity of image i's samples to caption j's
    signature (a smooth tie-break and a floor for signatures the samples never hit)."""
    if not sampled or not captions or any(not s for s in sampled):
        raise DataError("the resampling oracle needs images with at least one sampled caption, and captions",
                        field="llava_caption")
    vocab: dict[frozenset[str], int] = {}
    for sig in [*(s for row in sampled for s in row), *captions]:
        vocab.setdefault(sig, len(vocab))
    names = {n: k for k, n in enumerate(sorted({n for sig in vocab for n in sig}))}
    hot = np.zeros((len(vocab), max(1, len(names))), np.float64)
    for sig, u in vocab.items():
        hot[u, [names[n] for n in sig]] = 1.0
    weights = np.zeros((len(sampled), len(vocab)), np.float64)  # image i's share of samples with signature u
    for i, row in enumerate(sampled):
        np.add.at(weights[i], [vocab[s] for s in row], 1.0 / len(row))
    cap_ids = np.array([vocab[s] for s in captions])
    counts = weights[:, cap_ids]
    sizes = hot.sum(axis=1)
    scores = counts.copy()
    for s in range(0, len(captions), chunk):
        ids = cap_ids[s:s + chunk]
        inter = hot @ hot[ids].T  # (U, chunk)
        union = np.maximum(sizes[:, None] + sizes[ids][None, :] - inter, 1.0)
        scores[:, s:s + chunk] += backoff * (weights @ (inter / union))
    return counts, scores


def _i2t_report(scores: np.ndarray) -> dict[str, float]:
    n = scores.shape[1]
    return ranks_report(_ranks_of_diagonal(scores, 0), n)


def caption_resampling_oracle(dataset_dir: Path, world_cfg=None, split: str = "test", k: int = 64,
                              backoff: float = 1e-3, zooms: tuple[int, ...] = _ZOOMS) -> dict[int, dict]:
    """Image->caption reference that knows the caption generator's inputs: an estimate of the Bayes-optimal ranker.

    For every place i of ``split`` it re-renders the tile (world seed, tile_px, tile_ground_m from ``world_cfg``, a
    WorldConfig, or else from world.json) and recomputes, per zoom, the crop's cover fractions and image-only
    plausible source weights exactly as core.world.build.make_sample does: everything the stored caption was drawn
    from except the random numbers. It then draws ``k`` fresh captions per place from image_caption with
    np.random.default_rng([seed, i, zoom, s]) and reduces every caption, stored or drawn, to its signature (the
    sources it names plus the land-cover classes its scene phrase names). The score of caption j for image i is
    the share of i's k draws whose signature equals j's, plus ``backoff`` * their mean Jaccard similarity to it.
    Each image's true caption is ranked among all N captions of that zoom with the paper's protocol.

    Reported per zoom: the likelihood ranking above (r10, median_rank, r1, r5) and three variants -
    "ratio": the score divided by its mean over all images (likelihood ratio p(c|x)/p(c), the Bayes-optimal pairwise
    score when the other gallery captions come from other places; the quantity a contrastive critic learns),
    "sources_only" and "sources_only_ratio": the same with scene words ignored (what scene words add) - and
    diagnostics: own_hit (share of places whose k draws hit the stored caption's signature at least once), own_p
    (mean probability of the stored caption's signature under its own place) and other_p (the same for the other
    places' captions, the chance level).

    This is near the Bayes bound for signature-level matching (up to the sampling noise of k draws), not a strict
    bound: the signature drops the order of the sources (strongest first, so informative), which source came in
    the "possibly ..." sentence, and the wording, and the ratio's marginal is estimated on the same N places.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"the resampling oracle needs k >= 1 draws per image, got {k!r}")
    bad = [z for z in zooms if z not in ZOOM_CROP_FRACTION["bingmap"]]
    if bad or not zooms:
        raise ConfigError(f"zooms must be among {sorted(ZOOM_CROP_FRACTION['bingmap'])}, got {list(zooms)}")
    seed, tile_px, ground_m = _world_params(dataset_dir, world_cfg)
    cols = read_split(Path(dataset_dir), split, columns=["latitude", "longitude"]
                      + [f"llava_caption_bingmap_zl{z}" for z in zooms]).to_pydict()
    inputs = [caption_generator_inputs(lat, lon, tile_px, ground_m, seed)
              for lat, lon in zip(cols["latitude"], cols["longitude"])]
    out: dict[int, dict] = {}
    for z in zooms:
        stored = [_read_back(c) for c in cols[f"llava_caption_bingmap_zl{z}"]]
        drawn = [[_read_back(image_caption(weights, fracs, np.random.default_rng([seed, i, z, s]), zoom=z))
                  for s in range(k)] for i, (weights, fracs) in ((i, inp[z]) for i, inp in enumerate(inputs))]
        report: dict[str, object] = {"n": len(stored), "k": int(k)}
        for name, scene in (("", True), ("sources_only", False)):
            counts, scores = signature_likelihoods([[_signature(r, scene) for r in row] for row in drawn],
                                                   [_signature(r, scene) for r in stored], backoff=backoff)
            ratio = scores / scores.mean(axis=0, keepdims=True)
            if name:
                report[name] = _i2t_report(scores)
                report[f"{name}_ratio"] = _i2t_report(ratio)
            else:
                report.update(_i2t_report(scores))
                report["ratio"] = _i2t_report(ratio)
                own = np.diag(counts)
                n = len(own)
                report["own_hit"] = float(np.mean(own > 0))
                report["own_p"] = float(own.mean())
                report["other_p"] = float((counts.sum() - own.sum()) / max(1, n * n - n))
        out[z] = report
    return out
