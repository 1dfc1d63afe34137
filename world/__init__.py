"""The embedded world: a deterministic synthetic GeoSound on the real MODIS land cover, with its ground truth.

A data source like GeoSound or SoundingEarth: it writes Parquet shards in their layout, and the one loader in
``core.data`` reads them. The model and its training never import it; maps, grounding and the concept sheet use
its ground truth (land-cover classes, which sources each class sounds like) to score what they draw.

Modules, bottom up: config (WorldConfig), landcover (MODIS IGBP raster), noise (world-coordinate hashing);
tiles: cover_classes (the fine classes, what they sound like, how captions name them), tile_frame (world frame and
lattices), settlements (farmsteads, towns), tile_paint (drawing each cover), tiles (render_tile: the class map);
sounds: sources (source names, caption phrases, keywords), audio_blocks (noise, envelopes, filters), synths (one
synthesiser per source), sounds (synthesize, render_scene), recordings (the real clips of the sources and their
source / held-out split), opensfx (the OpenSFX .cat reader), real_audio (excerpts of real clips as sources);
places (what can be heard where and when, and the
recordings drawn there), captions, caption_reading (captions read back), locations (where samples are and which
split they fall in), shards (the on-disk layout), build (Parquet shards in the GeoSound layout), contact_sheet,
encoding; oracles: ranking (the paper's rank protocol), oracle (set overlap), caption_oracle and audio_oracle
(resampling the caption and recording generators).

Must not import: ``core`` or any room above it (it imports ``contracts`` only).
"""
