"""Bundle building (build side): gather an exported model, a gallery and an offline map into a verified bundle.

- ``build``           ``build_bundle``: the bundle folder, written atomically, verified before it is kept
- ``map_tiles``       the region's MBTiles pyramid drawn by the world renderer at the model's zoom levels
- ``mbtiles_writer``  MBTiles 1.3 writer
- ``demo``            a complete demo bundle from an untrained checkpoint (tests, benchmarks, first steps)
- ``android_stage``   copies only the device-side sources (+ a bundle) for buildozer, checking their imports
- ``cli``             ``sat2sound bundle``

May import every other room. The device side (``mobile_app``, the gallery's read path) never imports this.
"""
