"""The image->caption resampling oracle: it re-derives each image's caption generator inputs and draws fresh
captions from them, an estimate of the Bayes-optimal ranking of caption signatures."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from contracts.errors import ConfigError
from contracts.schema import ZOOM_CROP_FRACTION
from world.caption_reading import read_back, read_signature
from world.captions import image_caption
from world.places import plausible_sources
from world.ranking import diagonal_report, likelihood_ratio, own_draw_stats, signature_likelihoods, with_progress
from world.shards import read_split, world_params
from world.tiles import render_tile

if TYPE_CHECKING:
    from world.config import WorldConfig

_ZOOMS = (1, 3, 5)


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


def caption_resampling_oracle(dataset_dir: Path, world_cfg: WorldConfig | None = None, split: str = "test", k: int = 64,
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
    seed, tile_px, ground_m = world_params(dataset_dir, world_cfg)
    cols = read_split(Path(dataset_dir), split, columns=["latitude", "longitude"]
                      + [f"llava_caption_bingmap_zl{z}" for z in zooms]).to_pydict()
    places = list(zip(cols["latitude"], cols["longitude"]))
    inputs = [caption_generator_inputs(lat, lon, tile_px, ground_m, seed)
              for lat, lon in with_progress(places, "caption oracle: tiles", progress)]
    out: dict[int, dict] = {}
    for z in zooms:
        stored = [read_back(c) for c in cols[f"llava_caption_bingmap_zl{z}"]]
        drawn = [[read_back(image_caption(*inp[z], np.random.default_rng([seed, i, z, s]), zoom=z)) for s in range(k)]
                 for i, inp in enumerate(with_progress(inputs, f"captions, zoom {z}", progress))]
        report: dict[str, object] = {"n": len(stored), "k": int(k)}
        for name, scene in (("", True), ("sources_only", False)):
            counts, scores = signature_likelihoods([[read_signature(r, scene) for r in row] for row in drawn],
                                                   [read_signature(r, scene) for r in stored], backoff=backoff)
            ratio = likelihood_ratio(scores)
            if name:
                report[name] = diagonal_report(scores)
                report[f"{name}_ratio"] = diagonal_report(ratio)
            else:
                report.update(diagonal_report(scores))
                report["ratio"] = diagonal_report(ratio)
                report.update(own_draw_stats(counts))
        out[z] = report
    return out
