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
For image<->audio, audio_resampling_oracle does the same with the recording generator: it knows each place's full
tile, latitude and (optionally) the recording's month, hour and platform, draws fresh recordings there and ranks
the sources each recording holds by their likelihood, a much tighter reference than oracle_r10.

Ranks follow the paper's protocol: 1-based, ties take the average rank, R@10% = share of queries with
rank < 0.1 N (strict), median rank.
"""

from __future__ import annotations

from itertools import permutations
from pathlib import Path

import numpy as np

from contracts.errors import ConfigError, DataError
from contracts.schema import AUDIO_SOURCES, ZOOM_CROP_FRACTION
from world.captions import image_caption
from world.places import (
    choose_audio_source,
    plausible_set,
    plausible_sources,
    rain_probability,
    recording_hour,
    recording_month,
    sample_recording,
    season,
)
from world.shards import read_split, read_world_json
from world.sounds import SOURCE_PHRASES, SOURCES
from world.tiles import CLASS_WORDS, render_tile

# every phrase a caption may use for a source, longest first (so "car horns honking" wins over "honking")
_PHRASES = sorted(((p.lower(), s) for s, ps in SOURCE_PHRASES.items() for p in ps), key=lambda ps: -len(ps[0]))
# every scene word an image caption may use for a fine class, longest first ("a sandy beach" before "a beach")
_CLASS_PHRASES = sorted(((w.lower(), c) for c, ws in CLASS_WORDS.items() for w in ws), key=lambda wc: -len(wc[0]))
_ZOOMS = (1, 3, 5)


def _places(items, desc: str, progress: bool):
    """``items`` (a list) behind a tqdm bar when ``progress`` (the generator oracles take minutes on a CPU)."""
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="place", disable=not progress, leave=False)


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
    world.build.make_sample hands to image_caption for the caption at each zoom (same tile, same crops)."""
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


def _likelihood_ratio(scores: np.ndarray) -> np.ndarray:
    """p(item j | query i) / p(item j): each column over its mean across the queries (0 where that mean is 0, i.e.
    no query's draws come near the item)."""
    marginal = scores.mean(axis=0, keepdims=True)
    return np.divide(scores, marginal, out=np.zeros_like(scores), where=marginal > 0)


def _own_draw_stats(counts: np.ndarray) -> dict[str, float]:
    """own_hit (share of queries whose draws hit their own item's signature), own_p (its mean probability) and
    other_p (the same for every other item: the chance level) from a (N, N) matrix of draw shares."""
    own = np.diag(counts)
    n = len(own)
    return {"own_hit": float(np.mean(own > 0)), "own_p": float(own.mean()),
            "other_p": float((counts.sum() - own.sum()) / max(1, n * n - n))}


def caption_resampling_oracle(dataset_dir: Path, world_cfg=None, split: str = "test", k: int = 64,
                              backoff: float = 1e-3, zooms: tuple[int, ...] = _ZOOMS, progress: bool = False
                              ) -> dict[int, dict]:
    """Image->caption reference that knows the caption generator's inputs: an estimate of the Bayes-optimal ranker.

    For every place i of ``split`` it re-renders the tile (world seed, tile_px, tile_ground_m from ``world_cfg``, a
    WorldConfig, or else from world.json) and recomputes, per zoom, the crop's cover fractions and image-only
    plausible source weights exactly as world.build.make_sample does: everything the stored caption was drawn
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
    places = list(zip(cols["latitude"], cols["longitude"]))
    inputs = [caption_generator_inputs(lat, lon, tile_px, ground_m, seed)
              for lat, lon in _places(places, "caption oracle: tiles", progress)]
    out: dict[int, dict] = {}
    for z in zooms:
        stored = [_read_back(c) for c in cols[f"llava_caption_bingmap_zl{z}"]]
        drawn = [[_read_back(image_caption(*inp[z], np.random.default_rng([seed, i, z, s]), zoom=z)) for s in range(k)]
                 for i, inp in enumerate(_places(inputs, f"captions, zoom {z}", progress))]
        report: dict[str, object] = {"n": len(stored), "k": int(k)}
        for name, scene in (("", True), ("sources_only", False)):
            counts, scores = signature_likelihoods([[_signature(r, scene) for r in row] for row in drawn],
                                                   [_signature(r, scene) for r in stored], backoff=backoff)
            ratio = _likelihood_ratio(scores)
            if name:
                report[name] = _i2t_report(scores)
                report[f"{name}_ratio"] = _i2t_report(ratio)
            else:
                report.update(_i2t_report(scores))
                report["ratio"] = _i2t_report(ratio)
                report.update(_own_draw_stats(counts))
        out[z] = report
    return out


# --------------------------------------------------------------------------------- image->audio resampling oracle

_SIGNATURES = ("set", "loudest", "order")


def recording_signature(present: list[str], kind: str = "set") -> frozenset[str]:
    """What a recording holds, as a signature: "set" the sources present; "loudest" also which one is loudest
    ("loudest:<source>"); "order" also the rank of every source by level ("#<rank>:<source>"; gt_present is
    loudest first, so this is their full order)."""
    sig = frozenset(present)
    if kind == "set":
        return sig
    if kind == "loudest":
        return sig | {f"loudest:{present[0]}"} if present else sig
    if kind == "order":
        return sig | {f"#{r}:{s}" for r, s in enumerate(present)}
    raise ConfigError(f"unknown recording signature {kind!r}; expected one of {', '.join(_SIGNATURES)}")


def full_tile_fractions(lat: float, lon: float, tile_px: int = 320, ground_m: float = 900.0, seed: int = 0
                        ) -> np.ndarray:
    """Cover fractions of the full tile (zoom 5): what world.build.make_sample hands the recording generator."""
    return render_tile(lat, lon, tile_px, ground_m, seed).fractions(ZOOM_CROP_FRACTION["bingmap"][5])


def draw_recording(full: np.ndarray, lat: float, rng: np.random.Generator, source: str | None = None,
                   month: int | None = None, hour: int | None = None, cache: dict | None = None) -> dict:
    """One recording at a place, drawn exactly as world.build.make_sample draws it (same calls, same order):
    platform, month, hour (each drawn only when not given), rain with its probability, then the sources and levels.
    With none given and rng = default_rng([seed, sample index, 1]) it reproduces the stored recording.
    ``cache`` (one dict per place) keeps the plausible source weights per (hour, season, rain)."""
    source = choose_audio_source(full, rng) if source is None else source
    month = recording_month(source, lat, rng) if month is None else int(month)
    hour = recording_hour(source, rng) if hour is None else int(hour)
    raining = bool(rng.random() < rain_probability(full, month, lat))
    weights = _weights(full, lat, hour, month, raining, cache)
    present, levels = sample_recording(weights, source, rng)
    return {"source": source, "month": month, "hour": hour, "raining": raining, "present": present,
            "levels": levels}


def _weights(full: np.ndarray, lat: float, hour: int, month: int, raining: bool, cache: dict | None
             ) -> dict[str, float]:
    key = (hour, season(month, lat), raining)  # the weights see the month only through the season
    weights = None if cache is None else cache.get(key)
    if weights is None:
        weights = plausible_sources(full, hour, month, lat, raining=raining)
        if cache is not None:
            cache[key] = weights
    return weights


class _ProbeRng:
    """Stands in for a np.random.Generator to read the categorical distributions a generator function draws from:
    it records the p of every choice() call and returns the first outcome(s), so the exact oracle uses the
    generator's own probabilities instead of a copy of its formulas."""

    def __init__(self) -> None:
        self.ps: list[np.ndarray] = []

    def choice(self, a, size=None, replace=True, p=None):
        n = int(a) if np.ndim(a) == 0 else len(a)
        self.ps.append(np.full(n, 1.0 / n) if p is None else np.asarray(p, np.float64) / np.sum(p))
        return 0 if size is None else np.arange(size)

    def uniform(self, low=0.0, high=1.0, size=None):
        return low


def _choice_ps(fn, *args) -> list[np.ndarray]:
    probe = _ProbeRng()
    fn(*args, probe)
    return probe.ps


def recording_distribution(weights: dict[str, float], audio_source: str) -> tuple[np.ndarray, np.ndarray]:
    """(q, size_p) of sample_recording(weights, audio_source, rng): q over SOURCES is the pick distribution of the
    candidate sources (0 elsewhere) and size_p[m] the probability that the clip holds m sources (m = 0..4). The
    picks are drawn without replacement by numpy's choice, whose order is that of successive sampling (a pick is
    source s with probability q[s] / the mass not yet picked): so p(present in this order) = size_p[len] times
    that product, and loudest first is the first pick."""
    candidates = plausible_set(weights) or ["wind"]
    size_p, pick_p = _choice_ps(sample_recording, weights, audio_source)
    if len(pick_p) != len(candidates) or len(size_p) != 4:
        raise DataError("sample_recording no longer draws as the exact audio oracle assumes", field="gt_present")
    q = np.zeros(len(SOURCES))
    q[[SOURCES.index(c) for c in candidates]] = pick_p
    sizes = np.zeros(5)
    n_cand = len(candidates)
    for m in range(1, 5):
        if m < n_cand:
            sizes[m] = size_p[m - 1]
        elif m == n_cand:
            sizes[m] = size_p[m - 1:].sum()  # k is clipped to the number of candidates
    return q, sizes


def place_mixture(full: np.ndarray, lat: float, source: str | None = None, month: int | None = None,
                  hour: int | None = None) -> list[tuple[float, dict[str, float], str]]:
    """[(probability, weights, platform)]: the generator's recording distribution at a place as a mixture of
    sample_recording(weights, platform) draws. With platform, month and hour given: dry and raining. Without:
    platform, season (the weights and the rain see the month only through it), hour and rain, each with the
    probability its own generator function gives it at this place. Equal (weights, platform) pairs are merged."""
    if (source is None) != (month is None) or (source is None) != (hour is None):
        raise ConfigError("give the platform, month and hour all together or none of them")
    mix: dict[tuple, list] = {}
    cache: dict = {}

    def add(prob: float, src: str, m: int, h: int) -> None:
        r = rain_probability(full, m, lat)
        for raining, pr in ((False, 1.0 - r), (True, r)):
            if prob * pr > 0:
                w = _weights(full, lat, h, m, raining, cache)
                entry = mix.setdefault((src, tuple(w.items())), [0.0, w, src])
                entry[0] += prob * pr

    if source is not None:
        add(1.0, source, int(month), int(hour))
    else:
        for src, p_src in zip(AUDIO_SOURCES, _choice_ps(choose_audio_source, full)[0]):
            seasons: dict[str, list] = {}
            for m, p_m in zip(range(1, 13), _choice_ps(recording_month, src, lat)[0]):
                seasons.setdefault(season(m, lat), [0.0, m])[0] += p_m
            p_hours = _choice_ps(recording_hour, src)[0]
            for p_season, m in seasons.values():
                for h, p_h in enumerate(p_hours):
                    add(p_src * p_season * p_h, src, m, h)
    return [(p, w, src) for p, w, src in mix.values()]


class _OrderedPicks:
    """Every order of every distinct source set among some recordings, and, per signature kind, which orders make
    up each recording's signature: a set is any of its orders, "loudest" those starting with its loudest source,
    "order" the one order."""

    def __init__(self, presents: list[list[str]]) -> None:
        index = {s: k for k, s in enumerate(SOURCES)}
        pad = len(SOURCES)
        if any(not p or len(p) > 4 or len(set(p)) < len(p) or not set(p) <= set(index) for p in presents):
            raise DataError("a recording must hold 1-4 distinct known sources", field="gt_present")
        sets = list(dict.fromkeys(frozenset(p) for p in presents))
        rows, row_set = [], []
        for u, sig in enumerate(sets):
            for perm in permutations(sorted(index[s] for s in sig)):
                rows.append(list(perm) + [pad] * (4 - len(perm)))
                row_set.append(u)
        self.rows = np.array(rows, np.int64).reshape(-1, 4)
        self.length = (self.rows < pad).sum(axis=1)
        self.row_set = np.array(row_set, np.int64)
        set_id = {sig: u for u, sig in enumerate(sets)}
        row_of = {(int(u), tuple(int(x) for x in r[:n])): t
                  for t, (u, r, n) in enumerate(zip(self.row_set, self.rows, self.length))}
        self.groups: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}
        ids = [set_id[frozenset(p)] for p in presents]
        self.groups["set"] = (self.row_set, np.array(ids), len(sets))
        first = {(u, f): g for g, (u, f) in enumerate(dict.fromkeys(zip(self.row_set.tolist(),
                                                                         self.rows[:, 0].tolist())))}
        self.groups["loudest"] = (np.array([first[(u, f)] for u, f in zip(self.row_set.tolist(),
                                                                           self.rows[:, 0].tolist())]),
                                  np.array([first[(u, index[p[0]])] for u, p in zip(ids, presents)]), len(first))
        self.groups["order"] = (np.arange(len(self.rows)),
                                np.array([row_of[(u, tuple(index[s] for s in p))] for u, p in zip(ids, presents)]),
                                len(self.rows))

    def probabilities(self, mixture: list[tuple[float, dict[str, float], str]]) -> np.ndarray:
        """p(this order is drawn) for every row under a place_mixture."""
        q = np.zeros((len(mixture), len(SOURCES) + 1))
        sizes = np.zeros((len(mixture), 5))
        for m, (_, weights, src) in enumerate(mixture):
            q[m, :-1], sizes[m] = recording_distribution(weights, src)
        coef = np.array([p for p, _, _ in mixture])
        live = np.arange(4)[None, :] < self.length[:, None]  # (R, 4) positions that hold a pick
        alive = ((q[:, self.rows] > 0).any(axis=0) | ~live).all(axis=1)  # every pick allowed by some component
        out = np.zeros(len(self.rows))
        if alive.any():
            picks = q[:, self.rows[alive]]  # (M, R, 4)
            taken = np.cumsum(picks, axis=2) - picks  # mass picked before each position
            live = live[alive][None]
            left = 1.0 - taken
            factor = np.where(live, np.divide(picks, left, out=np.zeros_like(picks), where=left > 1e-12), 1.0)
            out[alive] = coef @ (factor.prod(axis=2) * sizes[:, self.length[alive]])
        return out

    def likelihoods(self, row_p: np.ndarray, kind: str) -> np.ndarray:
        """p(signature of every recording) from probabilities(): sums over the orders that make up each one."""
        row_group, rec_group, n_groups = self.groups[kind]
        return np.bincount(row_group, weights=row_p, minlength=n_groups)[rec_group]


def month_hour(date: str) -> tuple[int, int]:
    """(month, hour) of a world date "YYYY-MM-DD HH:MM:SS"."""
    try:
        month, hour = int(date[5:7]), int(date[11:13])
    except (TypeError, ValueError):
        raise DataError(f"date must read YYYY-MM-DD HH:MM:SS, got {date!r}", field="date") from None
    if not (1 <= month <= 12 and 0 <= hour <= 23):
        raise DataError(f"date must read YYYY-MM-DD HH:MM:SS, got {date!r}", field="date")
    return month, hour


def _retrieval_report(scores: np.ndarray, counts: np.ndarray) -> dict[str, object]:
    """Both directions from one (N_places, N_recordings) likelihood matrix; see audio_resampling_oracle."""
    return {"i2a": _i2t_report(scores), "i2a_ratio": _i2t_report(_likelihood_ratio(scores)),
            "a2i": _i2t_report(scores.T), **_own_draw_stats(counts)}


def audio_resampling_oracle(dataset_dir: Path, world_cfg=None, split: str = "test", k: int = 256,
                            backoff: float = 1e-3, signatures: tuple[str, ...] = ("set", "loudest"),
                            metadata: tuple[bool, ...] = (True, False), exact: bool = True, progress: bool = False
                            ) -> dict[str, object]:
    """Image<->audio reference that knows the recording generator: an estimate of the Bayes-optimal ranker.

    For every place i of ``split`` it re-renders the full tile (world seed, tile_px, tile_ground_m from
    ``world_cfg``, a WorldConfig, or else world.json): with the latitude, what the recording generator of
    world.build.make_sample starts from. With metadata the stored platform (column "source"), month and hour
    are known too and only rain, the sources and their levels are random (what a model given the full tile and
    all metadata could know, minus the random numbers); without, platform, month and hour are random as well,
    from the generator's own distributions for that place. Every recording is reduced to a signature
    (recording_signature: "set" the sources present, "loudest" also the loudest one, "order" their full order).

    "sampled" (``k`` >= 1): draws ``k`` recordings per place with draw_recording and
    np.random.default_rng([seed, i, 2, 0 with metadata or 1 without]); the score of recording j for place i is the
    share of i's draws with j's signature plus ``backoff`` * their mean Jaccard similarity to it
    (signature_likelihoods). "exact" (``exact``): the same likelihood p(signature of a_j | x_i) computed exactly
    (place_mixture, recording_distribution), the limit of the sampled one for k -> infinity.

    Bayes-optimal normalisation differs by direction (the other gallery items being those of other places):
    image->audio ranks recordings for a place, and the posterior that gallery recording j is place i's is
    proportional to p(a_j | x_i) / p(a_j), so "i2a_ratio" divides each column by its mean over all places (the
    estimate of p(a_j); the pointwise mutual information a contrastive critic learns) while "i2a" is the plain
    likelihood, which over-ranks commonplace recordings. audio->image ranks places for a recording, and there the
    posterior is proportional to p(x_i | a_j) / p(x_i) = p(a_j | x_i) / p(a_j): the likelihood itself, as p(a_j)
    is one number per query; dividing by it changes no rank, so "a2i" is both the likelihood and the ratio ranking.
    Ranks follow the paper's protocol over all N items of the split.

    Returns {"n", "k", "split", "sampled": {"meta"|"no_meta": {signature: report}}, "exact": {...}} (keys for the
    ``metadata`` and ``signatures`` asked for; "sampled" only when k >= 1, "exact" only when ``exact``); each
    report {"i2a", "i2a_ratio", "a2i"} (r10, median_rank, r1, r5) plus own_hit, own_p, other_p as in
    caption_resampling_oracle.

    How close to the Bayes bound: a recording depends on its place only through the full tile's cover fractions,
    the latitude, platform, month and hour (rain is drawn from them), and given the order of its sources its
    levels and waveform are drawn independently of the place; so the exact "order" ranking (the ratio for
    image->audio) is the best any ranker that knows those place facts can do in expectation, and one that reads
    less from the audio (the set, the loudest source) or from the image can only do worse. It is not a strict bound
    on one split: p(a_j) is estimated on the same N places and R@10% on N queries fluctuates (about +-0.02 at
    N=600). The sampled R@10% approach the exact ones from below as k grows (rare signatures are under-counted at
    small k). Without metadata the latitude still
    enters, but only as tropics or not (|lat| < 23.5: the season a month maps to; with the month unknown the
    hemisphere cancels), which the land cover largely shows. A zoom-1 (centre crop) variant is not offered: the
    recording depends on the full tile, and a place's latitude and longitude determine it, so with them it is
    this oracle, and without them it needs p(full tile | crop), which the generator does not define.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0 or (k == 0 and not exact):
        raise ConfigError(f"the audio resampling oracle needs k >= 1 draws per place (or k = 0 with exact), got {k!r}")
    bad = [s for s in signatures if s not in _SIGNATURES]
    if bad or not signatures:
        raise ConfigError(f"signatures must be among {list(_SIGNATURES)}, got {list(signatures)}")
    if not metadata:
        raise ConfigError("metadata must list at least one of True (known) and False (drawn)")
    seed, tile_px, ground_m = _world_params(dataset_dir, world_cfg)
    cols = read_split(Path(dataset_dir), split, columns=["latitude", "longitude", "source", "date", "gt_present"]
                      ).to_pydict()
    presents = cols["gt_present"]
    if not presents or any(not p for p in presents):
        raise DataError(f"split {split!r} has no recordings, or one with no sources", field="gt_present")
    fulls = [full_tile_fractions(lat, lon, tile_px, ground_m, seed)
             for lat, lon in _places(list(zip(cols["latitude"], cols["longitude"])), "audio oracle: tiles", progress)]
    known = [(src, *month_hour(date)) for src, date in zip(cols["source"], cols["date"])]
    out: dict[str, object] = {"n": len(fulls), "k": int(k), "split": split}
    for meta in dict.fromkeys(bool(m) for m in metadata):
        name = "meta" if meta else "no_meta"
        if k:
            drawn = []
            for i, (full, lat) in enumerate(_places(list(zip(fulls, cols["latitude"])), f"recordings drawn ({name})",
                                                    progress)):
                rng, cache = np.random.default_rng([seed, i, 2, int(not meta)]), {}
                src, month, hour = known[i] if meta else (None, None, None)
                drawn.append([draw_recording(full, lat, rng, src, month, hour, cache)["present"] for _ in range(k)])
            reports = {}
            for kind in signatures:
                counts, scores = signature_likelihoods([[recording_signature(p, kind) for p in row] for row in drawn],
                                                       [recording_signature(p, kind) for p in presents],
                                                       backoff=backoff)
                reports[kind] = _retrieval_report(scores, counts)
            out.setdefault("sampled", {})[name] = reports
        if exact:
            picks = _OrderedPicks(presents)
            rows = np.stack([picks.probabilities(place_mixture(full, lat, *(known[i] if meta else ())))
                             for i, (full, lat) in enumerate(_places(list(zip(fulls, cols["latitude"])),
                                                                     f"exact likelihoods ({name})", progress))])
            reports = {}
            for kind in signatures:
                lik = np.stack([picks.likelihoods(r, kind) for r in rows])
                reports[kind] = _retrieval_report(lik, lik)
            out.setdefault("exact", {})[name] = reports
    return out
