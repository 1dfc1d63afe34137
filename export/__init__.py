"""Export of Sat2Sound towers for devices (build side: torch): lowering to ONNX / ORT / Core ML / TFLite, int8 of
the lowered graphs, parity checks and the manifest a device reads. See export/README.md.

May import contracts and core; must not import compress (which builds on export), gallery, bundle, mobile_app.
Module map (import what you need; this package imports nothing at load time):

- ``towers``         export wrappers with fixed input/output names, ``example_inputs``, ``tokenize``.
- ``onnx_export``    ``export_onnx`` (single file, dynamic batch), ``run_onnx``; int8 ONNX is export.int8's.
- ``int8``           ORT dynamic / static (QDQ) / weight-only int8 of one ONNX tower, head and log-mel kept float,
                     one op list per tower, reduce_range on CPUs without VNNI; ``onnx_graph`` finds the head and
                     front-end nodes, ``int8_parity`` measures cosine to fp32, ``ort_session`` runs a graph.
- ``ort_format``     ORT format for phones, required-operators config, mobile usability verdicts.
- ``coreml_export``  ML programs (iOS 16), fp16 / int8 weights, validation without macOS.
- ``tflite_export``  LiteRT files with named signatures, ai-edge-quantizer int8, runner.
- ``parity``         cosine and retrieval gates against PyTorch.
- ``manifest``       ``build_manifest``: preprocessing constants, file entries, hashes, tokenizer copy.
- ``export_run``     the state of one export (stage folder, PyTorch references, parity records).
- ``targets``        the files of each target, parity-checked as they are written.
- ``retrieval``      I2A retrieval of the exported image+audio pairs against PyTorch, the text-cache note.
- ``exporter``       ``export_model`` -> ``ExportResult``: everything above into one atomically written folder.
- ``cli``            ``sat2sound export`` / ``python -m export``.
"""
