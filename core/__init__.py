"""Sat2Sound core: the full-precision model, its data (incl. the embedded world), training, evaluation, maps."""

__version__ = "0.1.0"
