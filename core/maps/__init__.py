"""Soundscape maps: embed every tile of a region once, then score any text or audio query against the cache."""
