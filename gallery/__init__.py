"""The soundscape gallery: retrieval-based synthesis (render a clip once per caption, return the nearest one).

Module map (import the module you need; this package imports nothing, so the device side stays torch-free):

Device side (numpy, sqlite3, hnswlib; no torch):
- ``query``      ``Gallery.open(folder)`` -> ``.search(vector, k, kind)`` -> ``Hit``s, ``.clip(id)``, ``.item(id)``
- ``index``      HNSW build/load/search, exact numpy twin, ef measurement
- ``ivf``        IVF lists in numpy (the search mode where HNSW misses the recall target)
- ``clips``      clip bytes: encode, sniff the format, decode
- ``layout``     file names, schema version, HNSW defaults
- ``errors``     ``GalleryError``

Build side (may use torch):
- ``captions``   caption sources: dataset folder, text file, CSV, clip folder -> ``CaptionRecord``s
- ``renderers``  ``procedural`` (the world's sound synthesis) and ``import`` (clips made elsewhere)
- ``embedder``   ``TeacherEmbedder``: captions, clips and places -> vectors with the teacher checkpoint
- ``store``      ``GalleryWriter``: SQLite via sqlite-utils, a transaction per batch, then the HNSW indexes
- ``build``      ``build_gallery``: the resumable pipeline
- ``cli``        ``sat2sound gallery build|query|info``

The read path must not import torch or any build-side room (core, world, export, compress, bundle); the build
side may import contracts, core and world (the procedural renderer and place tiles).
"""
