"""Data: the one loader for GeoSound / SoundingEarth / the embedded world, and the preprocessing both sides share.

Module map (import the module you need; this package imports nothing so device-side code stays torch-free):

- ``logmel_numpy``  Slaney mel filterbank and the numpy log-mel twin (device side, no torch).
- ``audio_io``      decode any audio cell/file to mono float32 at the config rate, crop / zero-pad (no torch).
- ``audio_frontend`` ``LogMel``: the exportable torch log-mel (conv1d DFT), plus re-exports of the above.
- ``image_prep``    tile decode, centre crop by zoom, bicubic resize, normalise, colour jitter (no torch).
- ``metadata``      dates, coordinates and sources -> the five metadata fields and their mask (no torch).
- ``layouts``       find a split in Parquet shards or a ``save_to_disk`` folder and read its rows with pyarrow.
- ``rows``          one raw row -> decoded fields (shared by the dataset and the feature table).
- ``dataset``       ``open_dataset`` -> ``SoundscapeDataset`` (torch Dataset) and ``collate``.
- ``features``      ``FeatureTable``: every row decoded once into arrays, cached on disk, fast batches.
"""
