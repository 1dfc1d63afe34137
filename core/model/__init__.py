"""The Sat2Sound model (build side: torch)."""

from core.model.codebook import Encoded
from core.model.sat2sound import LOGIT_PAIRS, META_KEYS, Sat2Sound, build_model, count_parameters

__all__ = ["LOGIT_PAIRS", "META_KEYS", "Encoded", "Sat2Sound", "build_model", "count_parameters"]
