"""Benchmarks: speed, size and search figures written to files (``runs/bench/...``), and pytest-benchmark suites.

- ``latency/``        towers x runtimes x threads, gallery search, end to end (``python -m benchmarks.latency``)
- ``app_latency``     cold start and tap-to-sound in the real Kivy app
- ``gallery_search``, ``gallery_scale``, ``teacher_embeddings``   vector search recall / latency at 10k-1M items
- ``ablations``, ``teacher_diagnostics``, ``dual_encoder_ceiling``   what limits the teacher
- ``real_audio``      real recordings the model never heard, zero-shot: the domain gap on sound
- ``published_model`` (+ ``published_chain``)   the authors' released architecture: key coverage, parity with the
                      references, paper-size towers per runtime, the chain from an imported teacher
- ``ar_audio`` (+ ``ar_pictures``)   AR field mode: spatial cues measured against the expected ones, update latency,
                      mixing cost, the walk picture
- ``bench_*``         pytest-benchmark suites (run disabled in the test suite, so CI proves they still run)

The top of the house: it may import every room, and no room imports it; it must not import the tests.
"""
