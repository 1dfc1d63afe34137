"""Sat2Sound core: the full-precision model, the one data loader, training, evaluation, maps, grounding, concepts,
the typed presets and the ``sat2sound`` CLI.

- ``config``      typed presets (``tiny``, ``default``, ``paper`` and their students), the teacher->student mapping
- ``model/``      the towers, metadata fusion, codebook head (build side: torch)
- ``data/``       the one loader for GeoSound / SoundingEarth / world folders, feature tables, the log-mel twins
- ``train`` (the command), ``trainer`` (the teacher's run), ``training_run`` (what training and distillation share:
  resume, validation, best checkpoint), ``epoch_loop``, ``optim``, ``distributed``, ``config_overrides``, ``run_log``,
  ``run_state``, ``checkpoint``, ``artifacts`` (atomic folders), ``evaluate``, ``metrics``, ``losses``
- ``maps/``, ``grounding/``, ``concepts``   soundscape maps, grounding heat maps, the concept sheet
- ``cli``, ``cli_args``, ``pipeline``, ``report``   the CLI, its shared vocabulary, the whole chain, its report

May import ``contracts`` and ``world`` (maps, grounding and the concept sheet score against the world's ground
truth; the model and training never load it). Must not import compress, export, gallery, bundle, mobile_app.
"""

import logging

__version__ = "0.1.0"

# transformers imports torchao whenever it is installed (for its quantizers, which this project does not use): torchao
# then warns that its CUDA kernels do not load on this CPU machine and torch warns about torchao's pytree enums, four
# lines of noise before every command's own output. Only these two loggers are quieted, and only below ERROR.
for _name in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_name).setLevel(logging.ERROR)
