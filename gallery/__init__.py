"""The soundscape gallery: retrieval-based synthesis (render a clip once per caption, return the nearest one).

Module map (import the module you need; this package imports nothing, so the device side stays torch-free):

Device side (numpy, sqlite3, usearch or hnswlib when installed; no torch, no FAISS):
- ``query``      ``Gallery.open(folder)`` -> ``.search(vector, k, kind)`` -> ``Hit``s, ``.clip(id)``, ``.item(id)``
- ``checks``     index.json and index files against the db: library, version, size, header, SHA-256
- ``backends``   the index libraries behind one interface: USearch (memory-mapped view; default) and hnswlib
- ``index``      graph build/load/search, exact numpy twin, ef measurement
- ``ivf``        IVF lists, memory-mapped numpy: the fallback where no graph reaches the recall target
- ``clips``      clip bytes: encode, sniff the format, decode
- ``layout``     file names, schema and index format versions, index defaults
- ``errors``     ``GalleryError``

Build side (may use torch):
- ``captions``   caption sources: dataset folder, text file, CSV, clip folder -> ``CaptionRecord``s
- ``renderers``  ``procedural`` (the world's sound synthesis) and ``import`` (clips made elsewhere)
- ``embedder``   ``TeacherEmbedder``: captions, clips and places -> vectors with the teacher checkpoint
- ``store``      ``GalleryWriter``: SQLite via sqlite-utils, a transaction per batch, then the search indexes
- ``tuning``     real-use tuning queries (text fragments, places), FAISS exact search as the ground truth, FAISS
                 k-means for the IVF lists
- ``build``      ``build_gallery``: the resumable pipeline
- ``cli``        ``sat2sound gallery build|reindex|query|info``

The read path must not import torch, FAISS or any build-side room (core, world, export, compress, bundle); the build
side may import contracts, core and world (the procedural renderer and place tiles).
"""
