"""The Sat2Sound model: sort-free sparsemax, towers, metadata fusion, presets, baseline head."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from core.config import CodebookConfig, get_preset
from core.model import build_model, count_parameters
from core.model.posenc import gsd_grid_encoding
from core.model.sparsemax import sparsemax, sparsemax_reference


def _batch(cfg, b=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = cfg.image.image_size
    return dict(
        image=torch.randn(b, 3, s, s, generator=g),
        zoom=torch.tensor([1, 3, 5, 1][:b]),
        gsd=torch.full((b,), 0.6),
        mel=torch.randn(b, cfg.audio.n_frames, cfg.audio.n_mels, generator=g),
        lat=torch.tensor([42.0, -33.0, 10.0, 60.0][:b]),
        lon=torch.tensor([-93.5, 151.0, 0.0, 25.0][:b]),
        month=torch.tensor([6.0, 1.0, 12.0, 3.0][:b]),
        hour=torch.tensor([5.0, 12.0, 23.0, 0.0][:b]),
        audio_source=torch.tensor([0, 1, 2, 3][:b]),
        caption_source=torch.tensor([0, 1, 2, 0][:b]),
        meta_mask=torch.ones(b, 5),
        audio_caption=["birds chirping", "a car passes by", "waves crashing on a beach", "church bells"][:b],
        image_caption=["one could hear birds in the forest"] * b,
    )


@pytest.mark.parametrize("scale, m", [(0.01, 300), (1.0, 300), (30.0, 300), (0.1, 16000), (0.001, 1024)])
def test_sparsemax_matches_sort_based_reference(scale, m):
    z = torch.randn(8, m, dtype=torch.float64) * scale
    got, ref = sparsemax(z), sparsemax_reference(z)
    assert torch.allclose(got, ref, atol=1e-9)
    assert torch.allclose(got.sum(-1), torch.ones(8, dtype=torch.float64))
    assert (got >= 0).all()


def test_sparsemax_gradient_is_the_true_jacobian():
    z = torch.randn(5, 40, dtype=torch.float64) * 3
    w = torch.randn(5, 40, dtype=torch.float64)
    z1 = z.clone().requires_grad_(True)
    (sparsemax(z1) * w).sum().backward()
    z2 = z.clone().requires_grad_(True)
    (sparsemax_reference(z2) * w).sum().backward()
    assert torch.allclose(z1.grad, z2.grad, atol=1e-9)


def test_sparsemax_graph_has_no_sort_or_topk():
    class M(torch.nn.Module):
        def forward(self, z):
            return sparsemax(z)

    ep = torch.export.export(M(), (torch.randn(2, 64),))
    targets = " ".join(str(n.target) for n in ep.graph.nodes)
    assert "sort" not in targets and "topk" not in targets


def test_gsd_encoding_depends_on_zoom_times_gsd():
    enc = gsd_grid_encoding(4, 32, torch.tensor([0.6, 1.8, 0.6]))
    assert enc.shape == (3, 16, 32)
    assert torch.allclose(enc[0], enc[2])
    assert not torch.allclose(enc[0], enc[1])


def test_tiny_model_forward_shapes_and_grounding_scores():
    cfg = get_preset("tiny")
    model = build_model(cfg).eval()
    batch = _batch(cfg)
    out = model(batch)
    d = cfg.model.codebook.dim
    for key in ("image", "audio", "audio_caption", "image_caption"):
        assert out[key].shape == (4, d)
        assert torch.allclose(out[key].norm(dim=-1), torch.ones(4), atol=1e-5)
    enc = model.encode_image(batch["image"], batch["zoom"], batch["gsd"], {k: batch[k] for k in
                             ("lat", "lon", "month", "hour", "audio_source", "caption_source", "meta_mask")})
    assert enc.scores.shape == (4, cfg.image.n_patches + 5, cfg.model.codebook.size)
    assert torch.allclose(enc.weights.sum(-1), torch.ones(4), atol=1e-5)
    assert (enc.weights == 0).any(), "sparsemax should leave codes at exactly zero"


def test_missing_metadata_fields_are_masked_and_any_subset_works():
    cfg = get_preset("tiny")
    model = build_model(cfg).eval()
    b = _batch(cfg)
    meta = {k: b[k] for k in ("lat", "lon", "month", "hour", "audio_source", "caption_source", "meta_mask")}
    base = model.encode_image(b["image"], b["zoom"], b["gsd"], meta).embedding
    # a masked field's value must not matter
    meta2 = dict(meta, meta_mask=torch.tensor([[1.0, 0, 1, 1, 1]] * 4), month=torch.full((4,), 7.0))
    meta3 = dict(meta2, month=torch.full((4,), 2.0))
    e2 = model.encode_image(b["image"], b["zoom"], b["gsd"], meta2).embedding
    e3 = model.encode_image(b["image"], b["zoom"], b["gsd"], meta3).embedding
    assert torch.allclose(e2, e3, atol=1e-6)
    assert not torch.allclose(base, e2, atol=1e-4)
    none = dict(meta, meta_mask=torch.zeros(4, 5))
    assert torch.isfinite(model.encode_image(b["image"], b["zoom"], b["gsd"], none).embedding).all()


def test_training_mode_drops_each_field_for_half_the_batch():
    cfg = get_preset("tiny")
    model = build_model(cfg).train()
    keep = model.metadata._drop_half(torch.ones(16, 5))
    assert keep.sum(0).tolist() == [8.0] * 5


def test_global_pooling_baseline_has_no_codebook():
    cfg = get_preset("tiny")
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, codebook=CodebookConfig(size=64, dim=32,
                                                                                                 head="global")))
    model = build_model(cfg).eval()
    assert not hasattr(model.head, "codebook")
    enc = model.encode_audio(_batch(cfg)["mel"])
    assert enc.scores is None and enc.embedding.shape == (4, 32)


def test_text_encoder_is_frozen_minilm_with_cache():
    cfg = get_preset("tiny")
    model = build_model(cfg)
    bb = model.text_backbone
    assert bb.width == 384
    assert all(not p.requires_grad for p in bb.model.parameters())
    assert not any(k.startswith("_text_backbone") for k in model.state_dict())
    states, pad = bb.encode(["sounds of farm machinery", "birds"])
    assert states.shape[0] == 2 and states.shape[2] == 384
    assert pad[1].sum() > 0 and not pad[0].any()
    assert "sounds of farm machinery" in bb._cache


def test_paper_preset_has_the_published_sizes():
    cfg = get_preset("paper")
    assert (cfg.image.image_size, cfg.image.patch_size, cfg.image.n_patches) == (224, 16, 196)
    assert (cfg.model.codebook.size, cfg.model.codebook.dim) == (16000, 1024)
    assert cfg.audio.n_frames == 1001 and cfg.audio.n_mels == 64
    model = build_model(cfg).eval()
    vit = sum(p.numel() for p in model.image_encoder.encoder.parameters())
    assert 84e6 < vit < 86e6  # ViT-B/16 blocks (12 x 7.1M)
    assert model.head.codebook.shape == (16000, 1024)
    assert 170e6 < count_parameters(model) < 190e6
    with torch.no_grad():
        img = torch.randn(1, 3, 224, 224)
        tokens, pad = model.image_tokens(img, torch.tensor([1]), torch.tensor([0.6]))
        assert tokens.shape == (1, 196, 1024) and pad is None
        audio_tokens = model.audio_encoder(torch.randn(1, 1001, 64))
        assert audio_tokens.shape[0] == 1 and audio_tokens.shape[2] == 768


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(ValueError, match="known presets"):
        get_preset("huge")


def test_text_states_disk_cache_is_shared_between_processes(tmp_path):
    from core.model.text_backbone import MiniLMBackbone

    first = MiniLMBackbone(max_tokens=24, cache_dir=tmp_path)
    first.precompute(["the hum of farm machinery", "gulls over the harbour"], progress=False)
    pages = list(tmp_path.rglob("page-*.npz"))
    assert len(pages) == 1
    second = MiniLMBackbone(max_tokens=24, cache_dir=tmp_path)
    second._run = None  # a cache hit must not run the encoder
    states, pad = second.encode(["gulls over the harbour"])
    ref, _ = first.encode(["gulls over the harbour"])
    assert torch.equal(states, ref) and not pad.any()
    pages[0].write_bytes(b"not an npz")  # a damaged page is skipped, not fatal
    third = MiniLMBackbone(max_tokens=24, cache_dir=tmp_path)
    assert third.encode(["gulls over the harbour"])[0].shape == ref.shape
