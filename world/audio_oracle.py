"""The image<->audio resampling oracle: it knows the recording generator, draws fresh recordings at each place
and computes their likelihoods exactly, an estimate of the Bayes-optimal ranking of recordings."""

from __future__ import annotations

from itertools import permutations
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from contracts.errors import ConfigError, DataError
from contracts.schema import AUDIO_SOURCES, ZOOM_CROP_FRACTION
from world.places import (
    choose_audio_source,
    draw_recording,
    plausible_set,
    rain_probability,
    recording_hour,
    recording_month,
    recording_weights,
    sample_recording,
    season,
)
from world.ranking import diagonal_report, likelihood_ratio, own_draw_stats, signature_likelihoods, with_progress
from world.shards import read_split, world_params
from world.sources import SOURCES
from world.tiles import render_tile

if TYPE_CHECKING:
    from world.config import WorldConfig

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
                w = recording_weights(full, lat, h, m, raining, cache)
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


class OrderedPicks:
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
    return {"i2a": diagonal_report(scores), "i2a_ratio": diagonal_report(likelihood_ratio(scores)),
            "a2i": diagonal_report(scores.T), **own_draw_stats(counts)}


def audio_resampling_oracle(dataset_dir: Path, world_cfg: WorldConfig | None = None, split: str = "test", k: int = 256,
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
    seed, tile_px, ground_m = world_params(dataset_dir, world_cfg)
    cols = read_split(Path(dataset_dir), split, columns=["latitude", "longitude", "source", "date", "gt_present"]
                      ).to_pydict()
    presents = cols["gt_present"]
    if not presents or any(not p for p in presents):
        raise DataError(f"split {split!r} has no recordings, or one with no sources", field="gt_present")
    places = list(zip(cols["latitude"], cols["longitude"]))
    fulls = [full_tile_fractions(lat, lon, tile_px, ground_m, seed)
             for lat, lon in with_progress(places, "audio oracle: tiles", progress)]
    known = [(src, *month_hour(date)) for src, date in zip(cols["source"], cols["date"])]
    out: dict[str, object] = {"n": len(fulls), "k": int(k), "split": split}
    for meta in dict.fromkeys(bool(m) for m in metadata):
        name = "meta" if meta else "no_meta"
        if k:
            drawn = []
            for i, (full, lat) in enumerate(with_progress(list(zip(fulls, cols["latitude"])),
                                                          f"recordings drawn ({name})", progress)):
                rng, cache = np.random.default_rng([seed, i, 2, int(not meta)]), {}
                src, month, hour = known[i] if meta else (None, None, None)
                drawn.append([draw_recording(full, lat, rng, src, month, hour, cache).present for _ in range(k)])
            reports = {}
            for kind in signatures:
                counts, scores = signature_likelihoods([[recording_signature(p, kind) for p in row] for row in drawn],
                                                       [recording_signature(p, kind) for p in presents],
                                                       backoff=backoff)
                reports[kind] = _retrieval_report(scores, counts)
            out.setdefault("sampled", {})[name] = reports
        if exact:
            picks = OrderedPicks(presents)
            rows = np.stack([picks.probabilities(place_mixture(full, lat, *(known[i] if meta else ())))
                             for i, (full, lat) in enumerate(with_progress(list(zip(fulls, cols["latitude"])),
                                                                           f"exact likelihoods ({name})", progress))])
            reports = {}
            for kind in signatures:
                lik = np.stack([picks.likelihoods(r, kind) for r in rows])
                reports[kind] = _retrieval_report(lik, lik)
            out.setdefault("exact", {})[name] = reports
    return out
