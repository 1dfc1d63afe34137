"""ONNX export of the towers: single file, named I/O, dynamic batch, parity with PyTorch, int8 with a float head."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

from core.data.logmel_numpy import log_mel_numpy
from export.int8 import quantize_tower
from export.manifest import copy_tokenizer
from export.onnx_export import export_onnx, run_onnx
from export.onnx_graph import head_nodes
from export.ort_session import onnx_session
from export.parity import cosine_rows
from export.towers import IMAGE_INPUTS, build_tower, example_inputs


@pytest.fixture(scope="module")
def image_onnx(tiny, tmp_path_factory):
    model, cfg = tiny
    return export_onnx(model, cfg, "image", tmp_path_factory.mktemp("onnx") / "image.fp32.onnx")


def _torch(model, tower, inputs):
    with torch.no_grad():
        out = build_tower(model, tower)(*inputs.values())
    return (out[0] if isinstance(out, tuple) else out).numpy()


def test_image_tower_is_one_file_with_named_io_and_a_dynamic_batch(tiny, image_onnx):
    model, cfg = tiny
    assert sorted(p.name for p in image_onnx.parent.iterdir()) == ["image.fp32.onnx"]  # no external data file
    sess = onnx_session(image_onnx)
    assert [i.name for i in sess.get_inputs()] == list(IMAGE_INPUTS)
    assert [o.name for o in sess.get_outputs()] == ["embedding"]
    assert sess.get_inputs()[0].shape[0] == "batch" and sess.get_inputs()[0].shape[1:] == [3, 32, 32]
    for batch in (1, 5):
        held = example_inputs(cfg, "image", batch, seed=7)
        got = run_onnx(image_onnx, held, session=sess)
        assert got.shape == (batch, cfg.model.codebook.dim)
        assert cosine_rows(got, _torch(model, "image", held)).min() >= 0.9999
        assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_metadata_changes_the_onnx_embedding_like_pytorch(tiny, image_onnx):
    model, cfg = tiny
    held = example_inputs(cfg, "image", 2, seed=3)
    held["meta_mask"] = torch.ones(2, 5)
    none = dict(held, meta_mask=torch.zeros(2, 5))
    with_meta, without = run_onnx(image_onnx, held), run_onnx(image_onnx, none)
    assert cosine_rows(with_meta, without).max() < 0.9999  # the metadata inputs are live in the graph
    assert cosine_rows(without, _torch(model, "image", none)).min() >= 0.9999


def test_int8_quantizes_the_backbone_and_keeps_the_codebook_head_float(tiny, image_onnx):
    model, cfg = tiny
    dst = image_onnx.with_name("image.int8.onnx")
    info = quantize_tower(image_onnx, dst, "dynamic", tower="image")
    src_model = onnx.load(str(image_onnx))
    head = set(head_nodes(src_model))
    head_matmuls = {n.name for n in src_model.graph.node if n.name in head and n.op_type == "MatMul"}
    assert len(head_matmuls) == 2  # token-code scores and the weighted sum of codes
    q = onnx.load(str(dst))
    still_float = {n.name for n in q.graph.node if n.op_type == "MatMul"}
    assert head_matmuls <= still_float
    assert info["quantized_matmuls"] >= 10 and info["excluded_head_matmuls"] == 2
    assert dst.stat().st_size < image_onnx.stat().st_size
    held = example_inputs(cfg, "image", 16, seed=11)
    cos = cosine_rows(run_onnx(dst, held), _torch(model, "image", held))
    assert cos.mean() >= 0.99


def test_audio_wave_tower_matches_the_numpy_log_mel_path(tiny, tmp_path):
    """The front end inside the graph computes what a device computes with core/data/logmel_numpy.py."""
    model, cfg = tiny
    path = export_onnx(model, cfg, "audio_wave", tmp_path / "audio_wave.onnx")
    rng = np.random.default_rng(0)
    t = np.arange(cfg.audio.n_samples) / cfg.audio.sample_rate
    wave = np.stack([0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size),
                     0.1 * rng.standard_normal(t.size)]).astype(np.float32)
    got = run_onnx(path, {"wave": wave})
    mel = torch.from_numpy(log_mel_numpy(wave, cfg.audio))
    with torch.no_grad():
        ref = model.encode_audio(mel).embedding.numpy()
    assert cosine_rows(got, ref).min() >= 0.9999


def test_text_tower_runs_minilm_and_the_head_in_one_graph(tiny, tmp_path):
    model, cfg = tiny
    path = export_onnx(model, cfg, "text", tmp_path / "text.fp32.onnx")
    sess = onnx_session(path)
    assert [i.name for i in sess.get_inputs()] == ["input_ids", "attention_mask"]
    texts = ["birds singing at dawn", "heavy traffic on a motorway with horns", "rain"]
    from export.towers import tokenize

    feed = tokenize(cfg, texts)
    assert feed["input_ids"].shape == (3, cfg.model.text.max_tokens)
    got = run_onnx(path, feed, session=sess)
    # reference: the frozen backbone as transformers runs it, then the model's text query map and head
    with torch.no_grad():
        states = model.text_backbone.model(**feed).last_hidden_state
        ref = model.encode_text_states(states, feed["attention_mask"] == 0).embedding.numpy()
        cached = model.encode_text(texts).embedding.numpy()  # the training path: fp16-cached states
    assert cosine_rows(got, ref).min() >= 0.9999
    assert cosine_rows(got, cached).min() >= 0.99
    # int8: the embedding tables (most of the bytes) as int8, matmuls float (MiniLM outliers; see export/int8.py)
    dst = tmp_path / "text.int8.onnx"
    info = quantize_tower(path, dst, "dynamic", tower="text")
    assert info["quantized_embedding_tables"] >= 1
    assert dst.stat().st_size < 0.75 * path.stat().st_size
    assert cosine_rows(run_onnx(dst, feed), ref).mean() >= 0.99
    # the device path: shipped tokenizer.json + onnxruntime + numpy, no torch anywhere in the process
    copy_tokenizer(model, tmp_path, cfg.model.text.max_tokens)
    script = (
        "import json, sys, numpy as np, onnxruntime as ort\n"
        "from tokenizers import Tokenizer\n"
        "tok = Tokenizer.from_file(sys.argv[1])\n"
        "enc = tok.encode_batch(json.loads(sys.argv[3]))\n"
        "feed = {'input_ids': np.array([e.ids for e in enc], np.int64),\n"
        "        'attention_mask': np.array([e.attention_mask for e in enc], np.int64)}\n"
        "out = ort.InferenceSession(sys.argv[2], providers=['CPUExecutionProvider']).run(['embedding'], feed)[0]\n"
        "assert 'torch' not in sys.modules\n"
        "print(json.dumps(out.tolist()))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "tokenizer" / "tokenizer.json"), str(path),
                           json.dumps(texts)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    device = np.array(json.loads(proc.stdout.strip().splitlines()[-1]), dtype=np.float32)
    assert cosine_rows(device, ref).min() >= 0.9999
