"""How much of the grounding heat lands on the land cover that makes the named sound (embedded world only).

Per tile: patch relevance = share of the patch covered by classes whose sources include a source the text names.
Pointing game: the hottest patch is relevant (share >= 0.5). Patch AUC: heat separates relevant patches from the
rest. Chance for the pointing game is the share of relevant patches; both are reported.
"""

from __future__ import annotations

import numpy as np

from core.maps.scoring import roc_auc


def relevant_classes(sources: list[str]) -> list[int]:
    from world.cover_classes import CLASS_SOURCES, FINE_CLASSES

    return [i for i, c in enumerate(FINE_CLASSES) if set(CLASS_SOURCES[c]) & set(sources)]


def score_tile(heat: np.ndarray, relevance: np.ndarray) -> dict:
    positive = relevance >= 0.5
    hot = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return {
        "pointing_hit": bool(positive[hot]),
        "chance": float(positive.mean()),
        "auc": roc_auc(heat, positive),
    }
