"""Grounding a text query inside one tile through the shared codebook (paper section 4.3, Figure 4)."""
