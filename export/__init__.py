"""Export of Sat2Sound towers for devices (build side: torch). See export/README.md.

Module map (import what you need; this package imports nothing at load time):

- ``towers``         export wrappers with fixed input/output names, ``example_inputs``, ``tokenize``.
- ``onnx_export``    ``export_onnx`` (single file, dynamic batch), ``onnx_session``, ``run_onnx``.
- ``onnx_int8``      ORT dynamic int8 with the codebook head (and log-mel front end) kept float.
- ``ort_format``     ORT format for phones, required-operators config, mobile usability verdicts.
- ``coreml_export``  ML programs (iOS 16), fp16 / int8 weights, validation without macOS.
- ``tflite_export``  LiteRT files with named signatures, ai-edge-quantizer int8, runner.
- ``parity``         cosine and retrieval gates against PyTorch.
- ``manifest``       preprocessing constants, file entries, hashes, tokenizer copy.
- ``exporter``       ``export_model``: everything above into one atomically written folder.
- ``cli``            ``sat2sound export`` / ``python -m export``.
"""
