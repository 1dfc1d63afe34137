"""Compression: distil the teacher into a mobile student, quantize it to int8 with a quality gate, and measure what
it cost.

    sat2sound distill --ckpt TEACHER [--preset student-default] --data DIR --out STUDENT
    sat2sound quantize --ckpt STUDENT --calib DIR --out INT8 [--method auto|pt2e|native] [--qat EPOCHS]
                       [--scheme dynamic|static|weight-only] [--max-drop 0.02]
    sat2sound compress-report --teacher CKPT --student STUDENT --int8 INT8 --data DIR --out report.md

Modules (build side; torch is imported only where a model runs):
- ``student``          student = a Sat2Sound of a smaller preset holding the teacher's codebook and text query map
                       (frozen), so it embeds into the teacher's space; the teacher-fits-student check.
- ``teacher_targets``  the teacher's embeddings of every training sample, zoom and metadata setting, cached.
- ``distill_loss``     cosine + in-batch affinity KL (TinyCLIP/MobileCLIP) + the Sat2Sound contrastive loss.
- ``distill``          the `distill` command on ``core.training_run.TrainingRun``: the student checkpoint.
- ``calibration``      calibration batches from a dataset folder or an .npz, checked against the graph's inputs.
- ``onnx_feeds``       tower inputs from feature-table batches; ``onnx_eval``: ORT retrieval figures and parity.
- ``quantize``         the `quantize` command: export, int8 (``export.int8``), quality gate, atomic output folder.
- ``pt2e``, ``pt2e_lower``, ``qat``, ``pt2e_stage``  int8 once in PyTorch with torchao (PT2E), lowered to ONNX,
                       TFLite and Core ML; QAT when it misses the gate; the per-target method (docs/int8_methods.md).
- ``gate``             the quality gate, for whichever method runs.
- ``latency``          the one latency timer (``measure``: warm-up, rounds, p50/p90); ``report``: `compress-report`.

May import contracts, core and export (the ONNX lowering and its int8 are export's); must not import gallery,
bundle, mobile_app or benchmarks.
"""
