"""Compression: distil the teacher into a mobile student, quantize it to int8, and measure what it cost.

    sat2sound distill --teacher CKPT [--preset student-default] --data DIR --out STUDENT
    sat2sound quantize --model STUDENT --calib DIR --out INT8 [--scheme dynamic|static|weight-only] [--max-drop 0.02]
    sat2sound compress-report --teacher CKPT --student STUDENT --int8 INT8 --data DIR --out report.md

Modules (build side; torch is imported only where a model runs):
- ``student``          student = a Sat2Sound of a smaller preset holding the teacher's codebook and text query map
                       (frozen), so it embeds into the teacher's space; the teacher-fits-student check.
- ``teacher_targets``  the teacher's embeddings of every training sample, zoom and metadata setting, cached.
- ``distill_loss``     cosine + in-batch affinity KL (TinyCLIP/MobileCLIP) + the Sat2Sound contrastive loss.
- ``distill``          the `distill` command: resumable training loop, validation, the student checkpoint.
- ``int8``             ORT dynamic / static (QDQ, calibrated) / weight-only int8 of one ONNX tower, head kept float,
                       reduce_range on CPUs without VNNI.
- ``calibration``      calibration batches from a dataset folder or an .npz, checked against the graph's inputs.
- ``onnx_feeds``       tower inputs from feature-table batches; ``onnx_eval``: ORT retrieval figures and parity.
- ``quantize``         the `quantize` command: export, quantize, quality gate, atomic output folder.
- ``latency``          batch-1 CPU latency with ORT and PyTorch; ``report``: the `compress-report` command.
"""
