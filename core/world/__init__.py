"""The embedded world: a deterministic synthetic GeoSound on the real MODIS land cover, with its ground truth.

Modules: landcover (MODIS IGBP raster), noise (world-coordinate hashing), tiles (aerial RGB + class maps),
sounds (source synthesis), places (what can be heard where and when), captions, locations (where samples are and
which split they fall in), build (Parquet shards in the GeoSound layout), oracle, contact_sheet, cli.
"""
