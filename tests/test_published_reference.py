"""The independent reference of the authors' Sat2Sound model and the stand-in checkpoint writer (published/)."""

from __future__ import annotations

import math

import pytest
import torch

from contracts.errors import ConfigError, DataError
from published.reference import (
    AuthorsSat2Sound,
    AuthorsSizes,
    encode_metadata,
    gsd_sincos,
    padded_outputs_zeroed,
    sparsemax,
)
from published.reference_htsat import slaney_mel_filters
from published.standin import RELEASED, authors_checkpoint, randomize_, write_standin

FULL, SE, NONE = "latlong_month_time_asource_tsource", "latlong_month_time_tsource", "none"
HT = "audio_encoder.model.audio_enc."
FUSE = "sat_encoder.meta_fuser."

# Read off the authors' code (engine.py, satmae.py, meta_encoder.py, fdt_model.py, MGACLAP/htsat.py, torchlibrosa).
PAPER_SHAPES = {
    "logit_scale_ia": (), "logit_scale_i_at": (), "logit_scale_it_a": (),
    "satmae_backbone.backbone.patch_embed.proj.weight": (768, 3, 16, 16),
    "satmae_backbone.backbone.blocks.11.attn.qkv.weight": (2304, 768),
    "satmae_backbone.backbone.blocks.11.mlp.fc1.weight": (3072, 768),
    "satmae_backbone.backbone.blocks.0.norm1.weight": (768,),
    "satmae_backbone.projector.linear1.weight": (1024, 768),
    "satmae_backbone.projector.linear2.weight": (1024, 1024),
    f"{FUSE}transformer_encoder.layers.2.self_attn.in_proj_weight": (3072, 1024),
    f"{FUSE}transformer_encoder.layers.2.self_attn.out_proj.weight": (1024, 1024),
    f"{FUSE}transformer_encoder.layers.0.linear1.weight": (2048, 1024),
    f"{FUSE}transformer_encoder.layers.0.linear2.weight": (1024, 2048),
    f"{FUSE}transformer_encoder.layers.1.norm2.bias": (1024,),
    f"{FUSE}meta_embed.audio_source_fc.source_embed.weight": (4, 1024),
    f"{FUSE}meta_embed.caption_source_fc.source_embed.weight": (3, 1024),
    f"{FUSE}meta_embed.location_fc.fc1.weight": (64, 4),
    f"{FUSE}meta_embed.month_fc.fc1.weight": (64, 2),
    f"{FUSE}meta_embed.time_fc.fc2.weight": (1024, 64),
    f"{HT}audio_feats_extractor.mel_trans.stft.conv_real.weight": (513, 1, 1024),
    f"{HT}audio_feats_extractor.log_trans.melW": (513, 64),
    f"{HT}bn0.running_var": (64,), f"{HT}bn0.num_batches_tracked": (),
    f"{HT}patch_embed.proj.weight": (96, 1, 4, 4),
    f"{HT}layers.0.blocks.0.attn.relative_position_bias_table": (225, 4),
    f"{HT}layers.0.blocks.0.attn.relative_position_index": (64, 64),
    f"{HT}layers.0.blocks.1.attn_mask": (64, 64, 64),
    f"{HT}layers.1.blocks.1.attn_mask": (16, 64, 64),
    f"{HT}layers.2.blocks.5.attn_mask": (4, 64, 64),
    f"{HT}layers.0.downsample.reduction.weight": (192, 384),
    f"{HT}layers.2.downsample.norm.weight": (1536,),
    f"{HT}layers.3.blocks.1.attn.qkv.weight": (2304, 768),
    f"{HT}layers.3.blocks.1.attn.relative_position_bias_table": (225, 32),
    f"{HT}norm.weight": (768,),
    f"{HT}tscam_conv.weight": (527, 768, 2, 3),
    f"{HT}head.weight": (527, 527),
    "fdt.space_dict": (16000, 1024),
    "fdt.img_query_model.q_map.1.weight": (1024, 1024),
    "fdt.audio_query_model.q_map.0.weight": (768,),
    "fdt.audio_query_model.q_map.1.weight": (1024, 768),
    "fdt.txt_query_model.q_map.1.weight": (1024, 1024),
    "fdt.txt_query_model.q_map.4.bias": (1024,),
}


def _paper_state(metadata_type: str) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return AuthorsSat2Sound(AuthorsSizes.paper(metadata_type)).state_dict()


@pytest.fixture(scope="module")
def paper_full():
    return _paper_state(FULL)


def test_paper_keys_and_shapes(paper_full):
    sd = paper_full
    assert {k: tuple(sd[k].shape) for k in PAPER_SHAPES if k in sd} == PAPER_SHAPES
    assert list(sd)[:6] == [f"logit_scale_{n}" for n in ("at", "it", "ia", "fdt", "i_at", "it_a")]
    parts = ("satmae_backbone.backbone.", "satmae_backbone.projector.", FUSE + "meta_embed.",
             FUSE + "transformer_encoder.", HT, "fdt.", "logit_scale_")
    assert all(k.startswith(parts) for k in sd)
    assert not [k for k in sd if k.startswith("text_encoder.") or "cls_token" in k or "pos_embed" in k]
    assert f"{HT}layers.3.blocks.1.attn_mask" not in sd  # 8x8 grid = window: no shift in the last stage
    assert sd[f"{HT}bn0.num_batches_tracked"].dtype == torch.int64
    counts = {p: sum(k.startswith(p) for k in sd) for p in parts}
    assert counts == {"satmae_backbone.backbone.": 146, "satmae_backbone.projector.": 4, FUSE + "meta_embed.": 14,
                      FUSE + "transformer_encoder.": 36, HT: 200, "fdt.": 25, "logit_scale_": 6}
    with torch.device("meta"):
        model = AuthorsSat2Sound(AuthorsSizes.paper(FULL))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"\npaper {FULL}: {len(sd)} keys, {n_params:,} parameters, "
          f"{sum(v.numel() for v in sd.values()):,} state-dict elements")


def test_metadata_variants_at_paper_size(paper_full):
    se, none = _paper_state(SE), _paper_state(NONE)
    assert not [k for k in none if k.startswith("sat_encoder.")]
    assert set(paper_full) - set(none) == {k for k in paper_full if k.startswith("sat_encoder.")}
    assert set(paper_full) - set(se) == {f"{FUSE}meta_embed.audio_source_fc.source_embed.weight"}
    assert not (set(se) - set(paper_full))
    with torch.device("meta"):
        no_comb = AuthorsSat2Sound(AuthorsSizes(metadata_type=NONE, combined_modality_loss=False)).state_dict()
    assert set(none) - set(no_comb) == {"logit_scale_i_at", "logit_scale_it_a"}


def test_released_files_and_sizes_checks():
    assert RELEASED["SoundingEarth_withmeta"] == ("googleEarth", SE)
    assert sorted(RELEASED) == sorted(f"{d}_{m}" for d in ("bingmap", "sentinel", "SoundingEarth")
                                      for m in ("nometa", "withmeta"))
    for bad in ({"metadata_type": "latlong_weather"}, {"n_mels": 48}, {"spec_size": 128},
                {"htsat_heads": (4, 8, 16)}, {"fc_dim": 1020}):
        with pytest.raises(ConfigError):
            AuthorsSizes(**bad)


@pytest.fixture(scope="module")
def tiny():
    return {mt: randomize_(AuthorsSat2Sound(AuthorsSizes.tiny(mt)), seed=3) for mt in (FULL, SE, NONE)}


def _meta(n: int = 3) -> dict:
    return {"lat": [40.0, -33.9, 64.1][:n], "lon": [-74.0, 151.2, -21.9][:n], "month": [1, 7, 12][:n],
            "hour": [0, 13, 23][:n], "audio_source": [0, 2, 3][:n], "caption_source": [1, 0, 2][:n],
            "hour_valid": [True, True, False][:n]}


def _one(meta: dict, i: int) -> dict:
    return {k: [v[i]] for k, v in meta.items()}


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(3, 3, 32, 32, generator=g)
    mel = 10 * torch.randn(3, 101, 32, generator=g) - 20
    states = torch.randn(3, 6, 24, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]])
    return image, mel, states, mask


@pytest.mark.parametrize("mt", [FULL, SE, NONE])
def test_tiny_embeddings_are_unit_and_batch_independent(tiny, mt):
    model = tiny[mt]
    image, mel, states, mask = _inputs()
    zoom, meta = [1, 3, 5], _meta()
    emb = model.encode_image(image, zoom, "bingmap", meta)
    assert emb.shape == (3, 32) and torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
    for i in range(3):
        alone = model.encode_image(image[i:i + 1], zoom[i:i + 1], "bingmap", _one(meta, i))
        assert torch.allclose(alone[0], emb[i], atol=1e-5)
    assert not torch.allclose(emb[0], emb[1], atol=1e-4)
    audio = model.encode_audio(mel)
    assert model.audio_tokens(mel).shape == (3, 4, 64)
    assert torch.allclose(audio.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(model.encode_audio(mel[1:2])[0], audio[1], atol=1e-5)
    text = model.encode_text(states, mask)
    assert torch.allclose(text.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(model.encode_text(states[:1], mask[:1])[0], text[0], atol=1e-5)


def test_image_conditions_on_zoom_sat_type_and_metadata(tiny):
    model = tiny[FULL]
    image = _inputs()[0][:1]
    base = model.encode_image(image, [1], "bingmap", _one(_meta(), 0))
    for other in (model.encode_image(image, [3], "bingmap", _one(_meta(), 0)),
                  model.encode_image(image, [1], "sentinel", _one(_meta(), 0)),
                  model.encode_image(image, [1], "bingmap", _one(_meta(), 1))):
        assert (other - base).abs().max() > 1e-5
    assert model.image_tokens(image, [1], "bingmap", _one(_meta(), 0)).shape == (1, 16 + 5, 32)
    assert tiny[SE].image_tokens(image, [1], "bingmap", _one(_meta(), 0)).shape == (1, 16 + 4, 32)
    with pytest.raises(DataError):
        model.encode_image(image, [1], "bingmap", None)
    with pytest.raises(ConfigError):
        model.encode_image(image, [1], "landsat", _one(_meta(), 0))
    with pytest.raises(DataError):
        model.encode_image(image, [1], "bingmap", {**_one(_meta(), 0), "audio_source": [4]})


def test_fusion_fast_path_zeroes_padded_tokens_only_for_left_aligned_batches(tiny):
    model = tiny[FULL]
    image = _inputs()[0][:2]
    meta = {**_meta(2), "month_valid": [True, True], "hour_valid": [False, True]}
    tokens = model.image_tokens(image, [1, 1], "bingmap", meta)
    assert torch.count_nonzero(tokens[0, -1]) == 0 and torch.count_nonzero(tokens[1, -1]) > 0
    assert padded_outputs_zeroed(torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]))
    # a row with month invalid but time valid breaks left alignment for the whole batch: no zeroing anywhere
    coupled = {**meta, "month_valid": [True, False], "hour_valid": [False, True]}
    assert not padded_outputs_zeroed(torch.tensor([[1, 1, 1, 0], [1, 1, 0, 1]]))
    tokens = model.image_tokens(image, [1, 1], "bingmap", coupled)
    assert torch.count_nonzero(tokens[0, -1]) > 0 and torch.count_nonzero(tokens[1, -2]) > 0


def test_metadata_encoding_follows_the_authors_loader():
    enc = encode_metadata({"lat": [45.0], "lon": [90.0], "month": [3], "hour": [23], "audio_source": [2],
                           "caption_source": [1]}, ("asource", "tsource", "latlong", "month", "time"), 1)
    assert torch.allclose(enc["latlong"], torch.tensor([[1.0, 0.0, 1.0, 0.0]]), atol=1e-6)  # pi*45/90, pi*90/180
    assert torch.allclose(enc["month"], torch.tensor([[1.0, 0.0]]), atol=1e-6)  # 2 pi 3 / 12
    assert torch.allclose(enc["time"], torch.tensor([[0.0, 1.0]]), atol=1e-6)  # 2 pi 23 / 23
    assert enc["audio_source"].tolist() == [2] and enc["time_valid"].tolist() == [1]
    off = encode_metadata({"month": [float("nan")], "month_valid": [False]}, ("month",), 1)
    assert off["month"].tolist() == [[0.0, 0.0]] and off["month_valid"].tolist() == [0]
    with pytest.raises(DataError):
        encode_metadata({"lat": [1.0]}, ("latlong",), 1)


def test_text_padding_scores_zero_and_pad_states_do_not_matter(tiny):
    model = tiny[NONE]
    _, _, states, mask = _inputs()
    changed = states.clone()
    changed[mask == 0] = 50.0
    assert torch.allclose(model.encode_text(changed, mask), model.encode_text(states, mask), atol=1e-6)
    # a padded caption = the same caption with an extra token whose every score is 0
    q = model.fdt.txt_query_model
    with torch.no_grad():
        scores = q.q_map(states[1:2, :3]) @ model.fdt.space_dict.t() / math.sqrt(q.dim)
        pooled = torch.clamp(scores.max(dim=1).values, min=0) / q.temperature
        expect = sparsemax(pooled) @ model.fdt.space_dict
    assert torch.allclose(model.encode_text(states[1:2], mask[1:2])[0], expect[0] / expect.norm(), atol=1e-5)


def test_randomize_is_deterministic_and_keeps_computed_tensors():
    sizes = AuthorsSizes.tiny(FULL)
    fresh = AuthorsSat2Sound(sizes).state_dict()
    a = randomize_(AuthorsSat2Sound(sizes), seed=7).state_dict()
    b = randomize_(AuthorsSat2Sound(sizes), seed=7).state_dict()
    c = randomize_(AuthorsSat2Sound(sizes), seed=8).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    computed = [k for k in a if k.endswith(("relative_position_index", "attn_mask")) or "audio_feats_extractor" in k]
    assert computed and all(torch.equal(a[k], fresh[k]) for k in computed)
    assert all(not torch.equal(a[k], c[k]) for k in a if k not in computed)
    assert a[f"{HT}bn0.running_var"].min() > 0


def test_every_key_but_the_inert_ones_moves_the_embeddings(tiny):
    model = tiny[FULL]
    image, mel, states, mask = _inputs(1)
    meta = {**_meta(), "hour_valid": [True, True, True]}

    def embed() -> torch.Tensor:
        return torch.cat([model.encode_image(image, [1, 3, 5], "sentinel", meta), model.encode_audio(mel),
                          model.encode_text(states, mask)])

    base = embed()
    inert = set(model.inert_keys())
    assert f"{HT}head.weight" in inert and f"{HT}layers.3.blocks.1.mlp.fc1.weight" in inert
    dead = []
    with torch.no_grad():
        for name, t in model.state_dict(keep_vars=True).items():
            if name in inert or not t.is_floating_point() or name.endswith("attn_mask"):
                continue
            keep = t.clone()
            t.copy_(keep.flatten().roll(1).reshape(t.shape))  # same values, other places: like a swapped key
            if (embed() - base).abs().max() < 2e-5:
                dead.append(name)
            t.copy_(keep)
    assert dead == []
    assert torch.equal(embed(), base)


def test_gsd_code_matches_the_authors_meshgrid_layout():
    res = torch.tensor([0.6, 30.0])
    grid, width = 3, 8
    # the authors' steps: meshgrid(w, h, indexing="xy"), first half from grid[0] (the column), second from grid[1]
    g = torch.stack(torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32),
                                   indexing="xy"))
    g = torch.einsum("chw,n->cnhw", g, res)
    omega = 1.0 / 10000 ** (torch.arange(width // 4, dtype=torch.float32) / (width / 4))

    def one(pos):
        out = pos.reshape(-1)[:, None] * omega[None]
        return torch.cat([torch.sin(out), torch.cos(out)], 1)

    expect = torch.cat([one(g[0]), one(g[1])], 1).reshape(2, grid * grid, width)
    assert torch.allclose(gsd_sincos(width, grid, res), expect, atol=1e-6)
    assert torch.allclose(expect[0, 1, :2], torch.sin(torch.tensor([0.6, 0.6 * 10000 ** -0.5])))  # token 1 = col 1


def test_sparsemax_is_the_simplex_projection():
    z = torch.randn(4, 50) * 3
    p = sparsemax(z)
    assert torch.allclose(p.sum(-1), torch.ones(4), atol=1e-5) and (p >= 0).all()
    for zi, pi in zip(z, p):  # on the support p = z - tau with one tau per row; off it z <= tau
        tau = (zi - pi)[pi > 0]
        assert torch.allclose(tau, tau[0].expand_as(tau), atol=1e-5) and (zi[pi == 0] <= tau[0] + 1e-6).all()
    assert torch.allclose(sparsemax(torch.tensor([[0.0, 5.0]])), torch.tensor([[0.0, 1.0]]))


def test_logmel_extractor_matches_torch_stft_and_slaney_mels():
    model = AuthorsSat2Sound(AuthorsSizes.tiny(NONE))
    ext = model.audio_encoder.model.audio_enc.audio_feats_extractor
    wave = torch.randn(2, 1000)
    spec = torch.stft(wave, 128, 32, window=torch.hann_window(128), center=True, pad_mode="reflect",
                      return_complex=True).abs() ** 2
    ref = 10 * torch.log10(torch.clamp(spec.transpose(1, 2) @ ext.log_trans.melW, min=1e-10))
    assert torch.allclose(ext(wave)[:, 0], ref, atol=1e-3)
    mel = slaney_mel_filters(32000, 1024, 64, 50.0, 14000.0)
    assert mel.shape == (64, 513) and (mel >= 0).all() and (mel.sum(1) > 0).all()
    assert 12500 < mel.argmax(1)[-1] * 31.25 < 14000  # the top filter peaks just under f_max


def test_standin_loads_with_weights_only_and_mmap(tmp_path, tiny):
    sizes = AuthorsSizes.tiny(SE)
    path = write_standin(tmp_path / "SoundingEarth_withmeta.ckpt", sizes, "googleEarth", seed=5)
    ckpt = torch.load(path, weights_only=True, mmap=True)
    assert set(ckpt) >= {"state_dict", "hyper_parameters", "epoch", "global_step", "pytorch-lightning_version",
                         "optimizer_states", "lr_schedulers", "callbacks", "loops"}
    hp = ckpt["hyper_parameters"]
    assert (hp["sat_type"], hp["dataset_type"], hp["metadata_type"]) == ("googleEarth", "SoundingEarth", SE)
    assert (hp["fc_dim"], hp["codebook_size"], hp["codebook_dim"], hp["combined_modality_loss"]) == (32, 64, 32, 1)
    model = AuthorsSat2Sound(sizes)
    model.load_state_dict(ckpt["state_dict"], strict=True)
    again = randomize_(AuthorsSat2Sound(sizes), seed=5)
    image = _inputs()[0][:1]
    assert torch.equal(model.encode_image(image, [1], "googleEarth", _one(_meta(), 0)),
                       again.encode_image(image, [1], "googleEarth", _one(_meta(), 0)))
    opt = ckpt["optimizer_states"][0]
    names = [n for n, _ in model.named_parameters()]
    with_state = {names[i] for i in opt["state"]}
    assert "logit_scale_it_a" not in with_state and "logit_scale_i_at" in with_state
    assert not [n for n in with_state if "audio_feats_extractor" in n or "tscam_conv" in n]
    assert opt["param_groups"][0]["params"] == list(range(len(names)))
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(ConfigError):
        authors_checkpoint(tiny[FULL], sizes, "googleEarth")
