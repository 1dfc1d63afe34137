"""Contracts: what the build side and the device side agree on. Torch-free (stdlib, numpy, Pillow).

- ``errors``      the user-facing error classes (one clear line, non-zero exit, no traceback)
- ``schema``      the dataset schema: fields, vocabularies, zooms, GSDs, splits
- ``artifacts``   artifact kinds, their file names, tower names, the fingerprint of a file
- ``image_prep``  tile decode, centre crop by zoom, bicubic resize, normalise (the device prepares tiles as training)
- ``durability``  atomic files, staging folders, the exclusive folder lock, room checks before a job starts
- ``faults``      the fault-injection hook (``SAT2SOUND_FAULT_AT``) that the write paths call

Must not import: torch, or any other package of this project. Everything else may import it.
"""
