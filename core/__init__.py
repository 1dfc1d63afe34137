"""Sat2Sound core: the full-precision model, its data (incl. the embedded world), training, evaluation, maps."""

import logging

__version__ = "0.1.0"

# transformers imports torchao whenever it is installed (for its quantizers, which this project does not use): torchao
# then warns that its CUDA kernels do not load on this CPU machine and torch warns about torchao's pytree enums, four
# lines of noise before every command's own output. Only these two loggers are quieted, and only below ERROR.
for _name in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_name).setLevel(logging.ERROR)
