"""The offline device app and the bundle it runs on.

Device side (numpy, onnxruntime / ai_edge_litert, hnswlib optional, sqlite3, Pillow, Kivy; never torch):
- ``mercator``    web-mercator tile geometry
- ``mbtiles``     MBTiles 1.3 reader (and writer) and the model's view cut from stitched tiles
- ``bundle``      the bundle's layout, manifest and checks (hashes, fingerprints, map)
- ``runtime``     the image tower on ONNX Runtime or LiteRT
- ``place``       a place + clock + recording style -> the tower's named inputs
- ``engine``      ``Soundscape``: bundle -> place -> nearest soundscapes (the app without its screen)
- ``player``      clip playback with Kivy: temp files, crossfades, a state tests can read
- ``mapwidgets``, ``app``, ``kivy_env``, ``__main__``   the Kivy app (plain, --field, --kiosk)
- ``autopilot``   drives the real app with synthetic touches (tests, screenshots, latency)

Build side (may use torch and the world renderer; never imported by the app):
- ``map_build``, ``bundle_build``, ``bundle_cli``   ``sat2sound bundle``
- ``demo_bundle``   a complete bundle from an untrained checkpoint (tests, benchmark, first steps)
- ``android_stage`` device-only sources for buildozer
"""
