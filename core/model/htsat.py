"""The published audio tower: HTSAT as MGA-CLAP modified it, from the log-mel to 32 frame-level tokens x 768.

Inference maths of the authors' ``HTSAT_Swin_Transformer`` (Sat2Sound, ``src/models/MGACLAP/htsat.py``) from the
point where it receives the log-mel, written for export (ONNX, Core ML, TFLite): at most 5-D tensors, the cyclic
shift as slices + ``torch.cat``, masks and relative-position indices precomputed as buffers, no data-dependent
Python control flow. Steps, for a log-mel (B, frames, mels):

1. ``bn0``: batch norm over the mel bins (their BatchNorm2d sees the mel axis as channels).
2. Stretch time to ``spec_size * freq_ratio`` frames (``freq_ratio = spec_size // mels``) with bicubic,
   ``align_corners=True`` (and mels to ``spec_size // freq_ratio`` the same way when fewer), then fold: the time
   axis is cut into ``freq_ratio`` chunks stacked along frequency, giving a ``spec_size`` x ``spec_size`` image
   (rows: chunk * mels + mel bin, columns: time within the chunk).
3. ``patch_embed``: a patch x patch conv, then LayerNorm.
4. Swin stages: blocks alternate plain and shifted windows (shift = window // 2; a stage whose resolution is at most
   the window uses one window of the whole map and never shifts), PatchMerging between stages.
5. MGA-CLAP's "locality-aware" output. Each block also returns a value path ``v = x + proj(V)`` (V: the value
   projection of ``norm1(x)``, no attention mixing), then ``v = v + norm2(v)`` (no MLP). Every block passes ``x``
   on, so only the value path of the LAST block of the LAST stage reaches the output. It gets the final ``norm``,
   the map is unfolded back into time (rows grouped per chunk) and averaged over frequency: (B, freq_ratio * R, C)
   for a final R x R map, in chronological order. Sat2Sound reads exactly this ("hidden_states" of
   ``MGACLAP_audiomodel``); the pooled ``embedding`` (max over the x path) and the classifier are never used.

Windows, shifts and the per-token projections cancel on the value path (it is per token), so the last block is a
``ValueBlock``: norm1, the value rows of ``attn.qkv``, ``attn.proj``, norm2 - its q/k rows, relative-position table
and MLP have no effect on the output and are not created (``unused_authors_keys``).

State-dict keys equal the authors' keys below their HTSAT prefix (``audio_encoder.model.audio_enc.`` in a Sat2Sound
checkpoint), so importing is a prefix rewrite minus ``UNUSED_AUTHORS_KEYS`` and ``DERIVED_BUFFERS``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from contracts.errors import ConfigError, DataError
from core.config import AudioConfig, AudioEncoderConfig, HTSATConfig

AUTHORS_PREFIX = "audio_encoder.model.audio_enc."  # where the tensors below live in the authors' Sat2Sound checkpoint

# The authors' persistent buffers that are a function of the config alone: recomputed here (non-persistent).
DERIVED_BUFFERS: tuple[str, ...] = (
    "layers.*.blocks.*.attn.relative_position_index",  # pairwise offsets inside a window
    "layers.*.blocks.*.attn_mask",  # -100 between tokens that a cyclic shift brought together (shifted blocks)
    "bn0.num_batches_tracked",  # a training-step counter; with momentum 0.1 it never enters the maths
)

_MASK_VALUE = -100.0  # the authors' additive mask (not -inf): exp(-100) underflows to 0 in float32 softmax


def unused_authors_keys(cfg: HTSATConfig) -> tuple[str, ...]:
    """Glob patterns (relative to the HTSAT prefix) of the authors' tensors the frame-level output never uses."""
    last = f"layers.{len(cfg.depths) - 1}.blocks.{cfg.depths[-1] - 1}"
    return (
        "audio_feats_extractor.*",  # torchlibrosa STFT / mel weights: the log-mel is computed before the tower
        "tscam_conv.*",  # the AudioSet classifier head (token-semantic conv) and ...
        "head.*",  # ... its linear: only the logits use them
        f"{last}.mlp.*",  # the last block's x path (attention + MLP) feeds only the unused pooled embedding
        f"{last}.attn.relative_position_bias_table",
        f"{last}.attn.relative_position_index",  # (its index into that table)
        f"{last}.attn_mask",  # (and its shift mask, where it has one)
    )


UNUSED_AUTHORS_KEYS: tuple[str, ...] = unused_authors_keys(HTSATConfig())  # the published sizes


# ------------------------------------------------------------------------------------------------ geometry
@dataclass(frozen=True)
class Geometry:
    """Derived sizes: ``freq_ratio`` time chunks folded onto frequency, the stretched (target_t, target_f) log-mel,
    the patch grid side, per stage (resolution, window, shift of its odd blocks), the final map side."""

    freq_ratio: int
    target_t: int
    target_f: int
    grid: int
    stages: tuple[tuple[int, int, int], ...]
    final: int


def htsat_geometry(audio: AudioConfig, cfg: HTSATConfig) -> Geometry:
    """Sizes every step needs, checked; ConfigError names the first setting that does not fit."""
    L = len(cfg.depths)
    if L == 0 or len(cfg.heads) != L or min(cfg.depths) < 1:
        raise ConfigError(f"htsat depths {cfg.depths} and heads {cfg.heads} must be non-empty, of equal length, "
                          "with at least one block per stage")
    if cfg.embed_dim < 1 or cfg.patch < 1 or cfg.window < 1 or cfg.mlp_ratio <= 0:
        raise ConfigError("htsat embed_dim, patch and window must be >= 1 and mlp_ratio > 0")
    for i, h in enumerate(cfg.heads):
        if h < 1 or (cfg.embed_dim * 2**i) % h:
            raise ConfigError(f"htsat stage {i}: width {cfg.embed_dim * 2**i} is not divisible by {h} heads")
    s, mels = cfg.spec_size, audio.n_mels
    if not 1 <= mels <= s:
        raise ConfigError(f"htsat spec_size {s} must be at least n_mels ({mels})")
    ratio = s // mels
    target_f = s // ratio
    if ratio * target_f != s:
        raise ConfigError(f"htsat spec_size {s} is not a multiple of freq_ratio {ratio} (= spec_size // n_mels "
                          f"{mels}): the folded spectrogram would not be square")
    target_t = s * ratio
    if audio.n_frames > target_t:
        raise ConfigError(f"htsat takes at most spec_size * freq_ratio = {target_t} frames; the audio front end "
                          f"gives {audio.n_frames} (shorten the clip or raise spec_size)")
    grid = s // cfg.patch
    if grid * cfg.patch != s or grid % 2 ** (L - 1):
        raise ConfigError(f"htsat spec_size {s} must be a multiple of patch * 2**(stages - 1) = "
                          f"{cfg.patch * 2 ** (L - 1)}")
    stages = []
    for i in range(L):
        res = grid // 2**i
        window, shift = (res, 0) if res <= cfg.window else (cfg.window, cfg.window // 2)
        if res % window:
            raise ConfigError(f"htsat stage {i}: resolution {res} is not a multiple of window {cfg.window}")
        stages.append((res, window, shift))
    final = grid // 2 ** (L - 1)
    if final % ratio:
        raise ConfigError(f"htsat final map of {final} rows cannot be unfolded into freq_ratio {ratio} time chunks")
    return Geometry(ratio, target_t, target_f, grid, tuple(stages), final)


# ------------------------------------------------------------------------------------- window helpers (<= 5-D)
def _cyclic_shift(x: torch.Tensor, s: int) -> torch.Tensor:
    """``torch.roll(x, (-s, -s), dims=(1, 2))`` of (B, H, W, C) as slices + cat (s < 0 rolls the other way)."""
    x = torch.cat([x[:, s:], x[:, :s]], dim=1)
    return torch.cat([x[:, :, s:], x[:, :, :s]], dim=2)


def _to_windows(x: torch.Tensor, w: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nW, w * w, C); windows in row-major order per image, tokens row-major in a window."""
    b, h, wd, c = x.shape
    x = x.reshape(b * (h // w), w, wd // w, w, c).permute(0, 2, 1, 3, 4)
    return x.reshape(-1, w * w, c)


def _from_windows(x: torch.Tensor, w: int, h: int, wd: int) -> torch.Tensor:
    """Inverse of ``_to_windows``: (B * nW, w * w, C) -> (B, H, W, C)."""
    c = x.shape[-1]
    x = x.reshape(-1, wd // w, w, w, c).permute(0, 2, 1, 3, 4)
    return x.reshape(-1, h, wd, c)


def _relative_position_index(w: int) -> torch.Tensor:
    """(w*w * w*w,) row of the bias table for each (query, key) pair of a window: (dy + w-1) * (2w-1) + dx + w-1."""
    ys, xs = torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[:, None] - ys[None, :] + w - 1
    dx = xs[:, None] - xs[None, :] + w - 1
    return (dy * (2 * w - 1) + dx).flatten()


def _shift_mask(res: int, w: int, s: int) -> torch.Tensor:
    """(nW, w*w, w*w) additive mask of a shifted block: tokens of different regions of the rolled map never meet."""
    region = torch.zeros(res, res)
    cuts = (slice(0, res - w), slice(res - w, res - s), slice(res - s, res))
    for i, rows in enumerate(cuts):
        for j, cols in enumerate(cuts):
            region[rows, cols] = 3 * i + j
    ids = _to_windows(region.reshape(1, res, res, 1), w).squeeze(-1)  # (nW, w*w)
    differs = ids[:, None, :] != ids[:, :, None]
    return torch.zeros(differs.shape).masked_fill(differs, _MASK_VALUE)


# ------------------------------------------------------------------------------------------------- modules
class MelBatchNorm(nn.Module):
    """``bn0``: batch norm with one channel per mel bin, over (B, mels, frames). Running statistics are weights;
    the step counter is not saved (it only matters with ``momentum=None``)."""

    def __init__(self, n_mels: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(n_mels))
        self.bias = nn.Parameter(torch.zeros(n_mels))
        self.register_buffer("running_mean", torch.zeros(n_mels))
        self.register_buffer("running_var", torch.ones(n_mels))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.num_batches_tracked.add_(1)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training,
                            self.momentum, self.eps)


class PatchEmbed(nn.Module):
    """(B, 1, S, S) image -> (B, S/p, S/p, E) tokens: a stride-p conv, then LayerNorm."""

    def __init__(self, patch: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(1, embed_dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each w x w window with a learned relative-position bias per head."""

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.heads, self.window = heads, window
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        self.register_buffer("relative_position_index", _relative_position_index(window), persistent=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x (B*nW, N, C), mask (nW, N, N) or None -> (B*nW, N, C)."""
        bw, n, c = x.shape
        q, k, v = (t.reshape(bw, n, self.heads, c // self.heads).transpose(1, 2) for t in self.qkv(x).chunk(3, -1))
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index].reshape(n, n, self.heads)
        attn = attn + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = (attn.reshape(-1, nw, self.heads, n, n) + mask.unsqueeze(1)).reshape(bw, self.heads, n, n)
        out = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj(out)


class SwinBlock(nn.Module):
    """Pre-norm window attention (shifted when ``shift`` > 0) and MLP, both residual, on (B, H, W, C)."""

    def __init__(self, dim: int, heads: int, res: int, window: int, shift: int, mlp_ratio: float):
        super().__init__()
        self.res, self.window, self.shift = res, window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        mask = _shift_mask(res, window, shift) if shift else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        if self.shift:
            h = _cyclic_shift(h, self.shift)
        h = _from_windows(self.attn(_to_windows(h, self.window), self.attn_mask), self.window, self.res, self.res)
        if self.shift:
            h = _cyclic_shift(h, -self.shift)
        x = x + h
        return x + self.mlp(self.norm2(x))


class ValueProjection(nn.Module):
    """The parts of the last block's attention that its value path uses: the value rows of ``qkv``, ``proj``."""

    def __init__(self, dim: int):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)  # full size so the authors' tensor loads as is; q/k rows are unused
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.proj.in_features
        return self.proj(F.linear(x, self.qkv.weight[2 * c:], self.qkv.bias[2 * c:]))


class ValueBlock(nn.Module):
    """MGA-CLAP's locality-aware output of the last block: ``v = x + proj(V)``, then ``v + norm2(v)``. Per token,
    so the window partition and any cyclic shift cancel and are left out."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ValueProjection(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x + self.attn(self.norm1(x))
        return v + self.norm2(v)


class PatchMerging(nn.Module):
    """(B, H, W, C) -> (B, H/2, W/2, 2C): each 2 x 2 block's tokens concatenated in the order (0,0), (1,0), (0,1),
    (1,1) (row, column offsets), LayerNorm, linear without bias."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        x = x.reshape(b * (h // 2), 2, w // 2, 2, c).permute(0, 2, 3, 1, 4)  # (., W/2, column off, row off, C)
        return self.reduction(self.norm(x.reshape(b, h // 2, w // 2, 4 * c)))


class Stage(nn.Module):
    """One Swin stage (``layers.i``): its blocks, then PatchMerging except after the last stage. In the last stage
    the last block is the ``ValueBlock``."""

    def __init__(self, dim: int, depth: int, heads: int, geometry: tuple[int, int, int], mlp_ratio: float,
                 last: bool):
        super().__init__()
        res, window, shift = geometry
        blocks: list[nn.Module] = [SwinBlock(dim, heads, res, window, shift if i % 2 else 0, mlp_ratio)
                                   for i in range(depth - 1 if last else depth)]
        if last:
            blocks.append(ValueBlock(dim))
        self.blocks = nn.ModuleList(blocks)
        self.downsample = None if last else PatchMerging(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class HTSATEncoder(nn.Module):
    """Log-mel (B, frames, mels) -> frame-level tokens (B, n_tokens, width): MGA-CLAP's HTSAT, eval maths.

    ``width`` = embed_dim * 2**(stages-1) (768), ``n_tokens`` = freq_ratio * final map side (32 published).
    Train mode differs from eval only in ``bn0`` (batch statistics); there is no dropout, drop path or
    SpecAugment.
    """

    def __init__(self, audio: AudioConfig, enc: AudioEncoderConfig):
        super().__init__()
        cfg = enc.htsat
        if enc.width != cfg.width:
            raise ConfigError(f"audio encoder width {enc.width} must equal the htsat output width {cfg.width} "
                              "(embed_dim * 2**(stages - 1))")
        g = htsat_geometry(audio, cfg)
        self.cfg, self.geometry = cfg, g
        self.n_frames, self.n_mels = audio.n_frames, audio.n_mels
        self.freq_ratio, self.target_t, self.target_f, self.final = g.freq_ratio, g.target_t, g.target_f, g.final
        self.width = cfg.width
        self.bn0 = MelBatchNorm(audio.n_mels)
        self.patch_embed = PatchEmbed(cfg.patch, cfg.embed_dim)
        last = len(cfg.depths) - 1
        self.layers = nn.ModuleList(
            Stage(cfg.embed_dim * 2**i, d, h, geo, cfg.mlp_ratio, i == last)
            for i, (d, h, geo) in enumerate(zip(cfg.depths, cfg.heads, g.stages))
        )
        self.norm = nn.LayerNorm(cfg.width)
        self.apply(_init_weights)
        # The bicubic stretches are linear in the input: kept as fixed matrices (non-persistent, rebuilt here) and
        # applied as matmuls, which every export target runs (Core ML and TFLite have no bicubic resize).
        # (activations on the left of every matmul: TFLite's int8 batch matmul takes a constant right operand only)
        self.register_buffer("stretch_t", _stretch_matrix(self.n_frames, self.target_t).t().contiguous(),
                             persistent=False)
        self.register_buffer("stretch_f", _stretch_matrix(self.n_mels, self.target_f).t().contiguous(),
                             persistent=False)

    @property
    def n_tokens(self) -> int:
        return self.freq_ratio * self.final

    def to_image(self, mel: torch.Tensor) -> torch.Tensor:
        """Normalised log-mel (B, frames, mels) -> (B, 1, spec_size, spec_size): stretch, then fold time chunks
        onto the frequency axis (row = chunk * mels + mel bin)."""
        x = mel.unsqueeze(1)
        # Bicubic with align_corners=True, time then mels in two calls as the authors do. ONNX maps it to Resize
        # (cubic, a=-0.75, align_corners); Core ML and TFLite have no bicubic resize (there, lower it to a fixed
        # (target, frames) interpolation matrix: the stretch is linear in the input).
        if self.n_frames < self.target_t:
            x = (x.transpose(2, 3) @ self.stretch_t).transpose(2, 3)  # (B, 1, mels, frames) @ (frames, target_t)
        if self.n_mels < self.target_f:
            x = x @ self.stretch_f  # (B, 1, T, mels) @ (mels, target_f)
        r, f = self.freq_ratio, self.target_f
        x = x.reshape(-1, r, self.target_t // r, f).transpose(2, 3)  # (B, chunk, mel, time in chunk)
        return x.reshape(-1, 1, r * f, self.target_t // r)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.dim() != 3 or mel.shape[1] != self.n_frames or mel.shape[2] != self.n_mels:
            raise DataError(f"htsat expects a log-mel of shape (B, {self.n_frames}, {self.n_mels}), "
                            f"got {tuple(mel.shape)}")
        x = self.bn0(mel.transpose(1, 2)).transpose(1, 2)
        x = self.patch_embed(self.to_image(x))  # (B, G, G, E)
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x)  # (B, R, R, C): rows = chunk * (R / freq_ratio) + frequency row, columns = time
        r, c = self.freq_ratio, self.width
        x = x.reshape(-1, self.final // r, self.final, c).mean(dim=1)  # (B * chunk, time, C): frequency averaged
        return x.reshape(-1, r * self.final, c)


def _init_weights(m: nn.Module) -> None:
    """Fresh weights as the authors initialise them: linear weights and bias tables N(0, 0.02) truncated at +-2,
    zero biases, unit LayerNorms (the conv keeps PyTorch's default)."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, WindowAttention):
        nn.init.trunc_normal_(m.relative_position_bias_table, std=0.02)


def _stretch_matrix(n: int, target: int) -> torch.Tensor:
    """(target, n): bicubic (a = -0.75, align_corners) resampling of a length-n axis to ``target``, as a matrix: the
    interpolation of the identity, so ``matrix @ x`` equals ``F.interpolate(x, mode="bicubic")`` along that axis."""
    if target <= n:
        return torch.eye(n)
    eye = torch.eye(n, dtype=torch.float64).reshape(1, 1, n, n)
    return F.interpolate(eye, size=(target, n), mode="bicubic", align_corners=True)[0, 0].float()
