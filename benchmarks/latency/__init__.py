"""CPU latency of every hot path at batch 1 (``python -m benchmarks.latency``), one room per step of a pass:

- ``plan``        what a pass covers (towers, models, runtimes, sections), the time budgets and the targets;
- ``machine``     the CPU, cores, library versions and load the figures were taken on;
- ``models``      teacher and student (trained from a run where they check out, else untrained) and the exported
                  file each runtime runs;
- ``towers``      each tower per model, runtime and thread count, with its cosine to PyTorch fp32;
- ``gallery``     exact vs HNSW (and the IVF fallback) search over synthetic or the run's own embeddings;
- ``end_to_end``  taps on a bundle through the app's own code path;
- ``verdicts``    speed-ups, targets, the comparison with the paper, projections onto larger galleries;
- ``markdown``    the report; ``cli`` parses the options, runs the pass and writes OUT.json and OUT.md.

The timer itself (``measure`` and its ``Budget``) is compress.latency's.
"""
