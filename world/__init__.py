"""The embedded world: a deterministic synthetic GeoSound on the real MODIS land cover, with its ground truth.

A data source like GeoSound or SoundingEarth: it writes Parquet shards in their layout, and the one loader in
``core.data`` reads them. The model and its training never import it; maps, grounding and the concept sheet use
its ground truth (land-cover classes, which sources each class sounds like) to score what they draw.

Modules: config (WorldConfig), landcover (MODIS IGBP raster), noise (world-coordinate hashing), tiles (aerial RGB
+ class maps), sounds (source synthesis), places (what can be heard where and when), captions, locations (where
samples are and which split they fall in), build (Parquet shards in the GeoSound layout), shards, oracle,
contact_sheet, encoding.

Must not import: ``core`` or any room above it (it imports ``contracts`` only).
"""
