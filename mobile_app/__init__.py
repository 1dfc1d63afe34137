"""The device side: the offline Kivy app and the bundle reader it runs on (a phone, a kiosk, a desktop).

Imports only contracts, the gallery's read path (gallery.query) and what a device has (numpy, Pillow, sqlite3,
Kivy, onnxruntime / ai_edge_litert; usearch (or hnswlib), plyer and pyjnius optional; gpxpy for the desktop's walk);
never torch, core, world, compress, export or bundle (the build side, which writes the bundles this package reads).

- ``mercator``     web-mercator tile geometry
- ``mbtiles``      MBTiles 1.3 reader and the model's view cut from stitched tiles
- ``bundle``       the bundle's layout, manifest and checks (hashes, fingerprints, map)
- ``runtime``      the image tower on ONNX Runtime or LiteRT
- ``place``        a place + clock + recording style -> the tower's named inputs
- ``engine``       ``Soundscape``: bundle -> place -> nearest soundscapes (the app without its screen)
- ``player``       clip playback with Kivy: temp files, crossfades, a state tests can read
- ``errors``       the app's error types; ``closing``: ``with`` support for its readers
- ``kivy_env``     Kivy's environment, set before Kivy is imported (headless: offscreen window, dummy audio)
- ``app``          the Kivy app: the screen all modes share (map beside panel, what a tap does)
- ``widgets``, ``mapwidgets``, ``panel``   its look, the map and its layers, the side panel
- ``field_mode``   ``--field``: AR audio: follow the device's position and heading, mix the places around
- ``spatial``      ear cues (equal-power pan, ITD, distance) and the stereo mixer with gain ramps and crossfades
- ``surround``     ``SpatialScene``: the grid of places around a listener, their hits and clips cached, as a mix
- ``audio_out``    the mix to the speakers (AudioTrack via pyjnius, sounddevice) or to a buffer (headless)
- ``heading``      compass maths (plyer), the heading dial
- ``walk``         ``sat2sound walk``: a GPX walk's spatial soundscape to a stereo file (desktop tool, gpxpy)
- ``kiosk_mode``   ``--kiosk``: the idle timer and the attract tour
- ``__main__``     ``python -m mobile_app`` (and ``sat2sound app``)
- ``autopilot``    drives the real app with synthetic touches (tests, screenshots, latency)
"""
