"""The HTSAT audio tower (MGA-CLAP variant): shapes, key names, the authors' maths re-stated plainly here (torch.roll,
6-D window partition, strided patch merging, the value path through full windows), batch independence, ONNX
parity and config errors."""

from __future__ import annotations

import dataclasses
import fnmatch
import warnings

import pytest
import torch
import torch.nn.functional as F

from contracts.errors import ConfigError, DataError
from core.config import AudioConfig, AudioEncoderConfig, HTSATConfig
from core.model.audio_encoder import AudioEncoder, build_audio_encoder
from core.model.htsat import DERIVED_BUFFERS, UNUSED_AUTHORS_KEYS, HTSATEncoder, ValueBlock, unused_authors_keys

# 101 frames (< 128 = spec_size * freq_ratio: the bicubic stretch runs), 8 mels -> freq_ratio 4
TINY_AUDIO = AudioConfig(sample_rate=1600, clip_seconds=2.0, hop_length=32, n_mels=8)
PAPER_AUDIO = AudioConfig(sample_rate=32000, clip_seconds=10.0, n_fft=1024, hop_length=320, n_mels=64,
                          f_max=14000.0)


def _enc(**htsat) -> AudioEncoderConfig:
    cfg = HTSATConfig(**{"embed_dim": 8, "depths": (2, 2), "heads": (1, 2), "window": 4, "patch": 4,
                         "spec_size": 32, "mlp_ratio": 2.0, **htsat})
    return AudioEncoderConfig(width=cfg.width, kind="htsat", htsat=cfg)


def _randomised(model: HTSATEncoder, seed: int = 0) -> HTSATEncoder:
    """Every parameter and bn0 statistic random, so no term of the maths hides behind a zero or a one."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 if "norm" in name or "bn0" in name else 0.2))
        model.bn0.running_mean.copy_(torch.randn(model.n_mels, generator=g))
        model.bn0.running_var.copy_(torch.rand(model.n_mels, generator=g) + 0.5)
    return model.eval()


# ------------------------------------------------------------------ the authors' maths, written the plain way
def _windows6(x, w):
    b, h, wd, c = x.shape
    return x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, c)


def _unwindows6(x, w, h, wd):
    c = x.shape[-1]
    return x.view(-1, h // w, wd // w, w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, h, wd, c)


def _roll_mask(res, w, s):
    img = torch.zeros(1, res, res, 1)
    n = 0
    for hs in (slice(0, -w), slice(-w, -s), slice(-s, None)):
        for ws in (slice(0, -w), slice(-w, -s), slice(-s, None)):
            img[:, hs, ws, :] = n
            n += 1
    m = _windows6(img, w).squeeze(-1)
    d = m.unsqueeze(1) - m.unsqueeze(2)
    return d.masked_fill(d != 0, -100.0).masked_fill(d == 0, 0.0)


def _block(blk, x, res, window, shift, heads):
    """One authors' block on (B, L, C) -> (x, v); v through the windows and the roll like theirs."""
    b, n_tok, c = x.shape
    h = blk.norm1(x).view(b, res, res, c)
    if shift:
        h = torch.roll(h, shifts=(-shift, -shift), dims=(1, 2))
    win = _windows6(h, window)
    bw, n, _ = win.shape
    qkv = blk.attn.qkv(win).reshape(bw, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    v_tok = blk.attn.proj(v.transpose(1, 2).reshape(bw, n, c))
    xs = None
    if not isinstance(blk, ValueBlock):
        a = (q * (c // heads) ** -0.5) @ k.transpose(-2, -1)
        idx = torch.arange(window)
        ys, xs_ = torch.meshgrid(idx, idx, indexing="ij")
        coords = torch.stack([ys.flatten(), xs_.flatten()])
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + window - 1
        table_idx = rel[:, :, 0] * (2 * window - 1) + rel[:, :, 1]
        bias = blk.attn.relative_position_bias_table[table_idx.view(-1)].view(n, n, -1).permute(2, 0, 1)
        a = a + bias.unsqueeze(0)
        if shift:
            mask = _roll_mask(res, window, shift)
            a = a.view(bw // mask.shape[0], mask.shape[0], heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            a = a.view(-1, heads, n, n)
        xs = blk.attn.proj((a.softmax(-1) @ v).transpose(1, 2).reshape(bw, n, c))
    outs = []
    for t in (xs, v_tok):
        if t is None:
            outs.append(None)
            continue
        t = _unwindows6(t.view(-1, window, window, c), window, res, res)
        if shift:
            t = torch.roll(t, shifts=(shift, shift), dims=(1, 2))
        outs.append(t.reshape(b, n_tok, c))
    xo, vo = outs
    v_out = x + vo
    v_out = v_out + blk.norm2(v_out)
    if xo is not None:
        xo = x + xo
        xo = xo + blk.mlp.fc2(F.gelu(blk.mlp.fc1(blk.norm2(xo))))
    return xo, v_out


def _merge(ds, x, res):
    b, _, c = x.shape
    x = x.view(b, res, res, c)
    x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1).view(b, -1, 4 * c)
    return ds.reduction(ds.norm(x))


def reference(model: HTSATEncoder, mel: torch.Tensor) -> torch.Tensor:
    """The authors' eval forward from (B, frames, mels), on ``model``'s weights."""
    cfg, r = model.cfg, model.freq_ratio
    bn = model.bn0
    x = mel.unsqueeze(1).transpose(1, 3)  # (B, mels, T, 1): mel bins as BatchNorm2d channels
    x = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.1, 1e-5).transpose(1, 3)
    tt, tf = cfg.spec_size * r, cfg.spec_size // r
    if x.shape[2] < tt:
        x = F.interpolate(x, (tt, x.shape[3]), mode="bicubic", align_corners=True)
    if x.shape[3] < tf:
        x = F.interpolate(x, (x.shape[2], tf), mode="bicubic", align_corners=True)
    x = x.permute(0, 1, 3, 2)
    x = x.reshape(x.shape[0], 1, x.shape[2], r, x.shape[3] // r).permute(0, 1, 3, 2, 4)
    x = x.reshape(x.shape[0], 1, x.shape[2] * x.shape[3], x.shape[4])
    x = model.patch_embed.norm(model.patch_embed.proj(x).flatten(2).transpose(1, 2))
    v = None
    for i, layer in enumerate(model.layers):
        res, window, shift = model.geometry.stages[i]
        for j, blk in enumerate(layer.blocks):
            x, v = _block(blk, x, res, window, shift if j % 2 else 0, cfg.heads[i])
        if layer.downsample is not None:
            x = _merge(layer.downsample, x, res)
    v = model.norm(v)
    b, _, c = v.shape
    side = model.final
    v = v.permute(0, 2, 1).reshape(b, c, side, side)
    cb = side // r
    v = v.reshape(b, c, side // cb, cb, side).permute(0, 1, 3, 2, 4).reshape(b, c, cb, -1)
    return v.mean(dim=2).permute(0, 2, 1)


# ----------------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("htsat,audio", [
    ({}, TINY_AUDIO),  # stage 0 shifted (res 8 > window 4), stage 1 one whole-map window
    ({"depths": (2,), "heads": (2,)}, TINY_AUDIO),  # the value block itself sits on a shifted position
    ({"depths": (2, 3, 1), "heads": (1, 2, 4), "spec_size": 64, "window": 4},
     dataclasses.replace(TINY_AUDIO, n_mels=16)),  # two shifted stages, odd depth
    ({}, dataclasses.replace(TINY_AUDIO, n_mels=7)),  # fewer mels than spec_size // freq_ratio: stretched too
])
def test_forward_equals_the_authors_maths(htsat, audio):
    model = _randomised(HTSATEncoder(audio, _enc(**htsat)))
    assert any(shift and depth > 1 for (_, _, shift), depth in zip(model.geometry.stages, model.cfg.depths))
    mel = torch.randn(3, audio.n_frames, audio.n_mels) * 4 - 20
    with torch.no_grad():
        got, want = model(mel), reference(model, mel)
    assert got.shape == (3, model.n_tokens, model.width) == want.shape
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_tiny_sizes_and_batch_independence():
    model = _randomised(HTSATEncoder(TINY_AUDIO, _enc()), seed=1)
    assert (model.width, model.n_tokens, model.freq_ratio) == (16, 16, 4)  # final map 4 x 4: 4 chunks x 4 steps
    mel = torch.randn(5, 101, 8)
    with torch.no_grad():
        whole = model(mel)
        parts = torch.cat([model(mel[:2]), model(mel[2:3]), model(mel[3:])])
        swapped = model(mel.flip(0)).flip(0)
    torch.testing.assert_close(whole, parts, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(whole, swapped, atol=1e-6, rtol=1e-5)


def test_train_mode_differs_only_by_bn0_batch_statistics():
    model = _randomised(HTSATEncoder(TINY_AUDIO, _enc()), seed=2).train()
    mel = torch.randn(4, 101, 8)
    before = model.bn0.running_mean.clone()
    out = model(mel)
    assert not torch.equal(before, model.bn0.running_mean) and int(model.bn0.num_batches_tracked) == 1
    normed = (mel - mel.mean((0, 1))) / (mel.var((0, 1), unbiased=False) + 1e-5).sqrt()
    eval_on_batch_stats = _randomised(HTSATEncoder(TINY_AUDIO, _enc()), seed=2)
    with torch.no_grad():
        eval_on_batch_stats.bn0.running_mean.zero_()
        eval_on_batch_stats.bn0.running_var.fill_(1.0 - 1e-5)
        want = eval_on_batch_stats(normed)
    torch.testing.assert_close(out.detach(), want, atol=1e-4, rtol=1e-4)


def _authors_keys(cfg: HTSATConfig, n_mels: int) -> set[str]:
    """The authors' HTSAT state-dict keys (no ape, patch norm on, PatchMerging between stages)."""
    keys = {f"bn0.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    keys |= {f"patch_embed.{m}.{k}" for m in ("proj", "norm") for k in ("weight", "bias")}
    keys |= {f"{m}.{k}" for m in ("norm", "tscam_conv", "head") for k in ("weight", "bias")}
    keys |= {"audio_feats_extractor.mel_trans.stft.conv_real.weight",
             "audio_feats_extractor.mel_trans.stft.conv_imag.weight", "audio_feats_extractor.log_trans.melW"}
    grid = cfg.spec_size // cfg.patch
    for i, depth in enumerate(cfg.depths):
        res = grid // 2**i
        for j in range(depth):
            p = f"layers.{i}.blocks.{j}."
            keys |= {p + f"{m}.{k}" for m in ("norm1", "norm2", "attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
                     for k in ("weight", "bias")}
            keys |= {p + "attn.relative_position_bias_table", p + "attn.relative_position_index"}
            if j % 2 and res > cfg.window:
                keys.add(p + "attn_mask")
        if i < len(cfg.depths) - 1:
            keys |= {f"layers.{i}.downsample.reduction.weight", f"layers.{i}.downsample.norm.weight",
                     f"layers.{i}.downsample.norm.bias"}
    return keys


@pytest.mark.parametrize("cfg,audio", [(HTSATConfig(), PAPER_AUDIO), (_enc().htsat, TINY_AUDIO)])
def test_state_dict_keys_are_the_authors_minus_unused_and_derived(cfg, audio):
    model = HTSATEncoder(audio, AudioEncoderConfig(width=cfg.width, kind="htsat", htsat=cfg))
    dropped = DERIVED_BUFFERS + unused_authors_keys(cfg)
    authors = _authors_keys(cfg, audio.n_mels)
    kept = {k for k in authors if not any(fnmatch.fnmatchcase(k, p) for p in dropped)}
    assert set(model.state_dict()) == kept
    assert {"layers.3.blocks.1.mlp.*", "tscam_conv.*", "head.*"} <= set(UNUSED_AUTHORS_KEYS)
    if cfg == HTSATConfig():
        sd = model.state_dict()
        assert sd["layers.0.blocks.0.attn.relative_position_bias_table"].shape == (225, 4)
        assert sd["layers.2.downsample.reduction.weight"].shape == (768, 1536)
        assert sd["bn0.running_var"].shape == (64,) and sd["patch_embed.proj.weight"].shape == (96, 1, 4, 4)
        assert sd["layers.3.blocks.1.attn.qkv.weight"].shape == (2304, 768)


def test_published_size_output_shape():
    enc = AudioEncoderConfig(width=768, kind="htsat")
    model = build_audio_encoder(PAPER_AUDIO, enc).eval()
    assert isinstance(model, HTSATEncoder) and (model.width, model.n_tokens) == (768, 32)
    with torch.no_grad():
        out = model(torch.randn(1, 1001, 64))
    assert out.shape == (1, 32, 768) and torch.isfinite(out).all()


def test_onnx_export_matches_pytorch(tmp_path):
    from export.ort_session import onnx_session

    model = _randomised(HTSATEncoder(TINY_AUDIO, _enc(depths=(2, 1))), seed=3)  # shifted block, merging, value
    batch = torch.export.Dim("batch", min=1, max=64)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter deprecation notices
        program = torch.onnx.export(model, (torch.randn(2, 101, 8),), None, dynamo=True, opset_version=20,
                                    dynamic_shapes={"mel": {0: batch}}, external_data=False, verbose=False)
    program.save(str(tmp_path / "htsat.onnx"))
    sess = onnx_session(tmp_path / "htsat.onnx")
    for n in (1, 3):
        mel = torch.randn(n, 101, 8) * 3
        with torch.no_grad():
            want = model(mel).numpy()
        got = sess.run(None, {sess.get_inputs()[0].name: mel.numpy()})[0]
        assert got.shape == want.shape
        assert abs(got - want).max() < 1e-4


@pytest.mark.parametrize("htsat,audio,match", [
    ({"heads": (3, 2)}, TINY_AUDIO, "not divisible by 3 heads"),
    ({"heads": (1,)}, TINY_AUDIO, "equal length"),
    ({}, dataclasses.replace(TINY_AUDIO, n_mels=6), "not a multiple of freq_ratio"),
    ({"spec_size": 36}, dataclasses.replace(TINY_AUDIO, n_mels=9), "multiple of patch"),
    ({}, dataclasses.replace(TINY_AUDIO, hop_length=8), "at most spec_size"),
    ({"window": 3}, TINY_AUDIO, "not a multiple of window"),
    ({"depths": (1, 1, 1), "heads": (1, 1, 1)}, TINY_AUDIO, "cannot be unfolded"),
])
def test_bad_configs_raise_config_error(htsat, audio, match):
    with pytest.raises(ConfigError, match=match):
        HTSATEncoder(audio, _enc(**htsat))


def test_factory_picks_the_tower_and_checks_width_and_kind():
    assert isinstance(build_audio_encoder(TINY_AUDIO, AudioEncoderConfig(width=16, depth=1, heads=2,
                                                                         freq_patch=8)), AudioEncoder)
    assert isinstance(build_audio_encoder(TINY_AUDIO, _enc()), HTSATEncoder)
    with pytest.raises(ConfigError, match="width"):
        build_audio_encoder(TINY_AUDIO, dataclasses.replace(_enc(), width=32))
    with pytest.raises(ConfigError, match="width"):
        HTSATEncoder(TINY_AUDIO, dataclasses.replace(_enc(), width=32))
    with pytest.raises(ConfigError, match="unknown audio encoder kind"):
        build_audio_encoder(TINY_AUDIO, dataclasses.replace(_enc(), kind="cnn14"))
    with pytest.raises(DataError, match="shape"):
        HTSATEncoder(TINY_AUDIO, _enc())(torch.randn(1, 100, 8))
