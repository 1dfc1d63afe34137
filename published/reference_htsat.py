"""Reference of the authors' audio tower: HTSAT as MGA-CLAP changed it, written from ``src/models/MGACLAP/htsat.py``.

What Sat2Sound runs (``MGACLAP_audiomodel`` with ``embed_type="hidden_states"``) is the second output of
``HTSAT_Swin_Transformer.forward`` in eval mode, ``fine_grained_embedding``:

1. input: the log-mel ``(B, 1, n_frames, n_mels)`` as the data loader stores it (``(B, 1, 1001, 64)`` at paper
   size). The module *holds* a log-mel extractor (``audio_feats_extractor``: torchlibrosa ``Spectrogram`` and
   ``LogmelFilterBank``, whose frozen DFT kernels and mel matrix are registered parameters and so sit in the state
   dict) but its call is commented out: features are extracted in the data loader, and the tower starts at the
   log-mel. ``LogMelExtractor.forward`` here re-states that extractor for whoever needs the waveform path.
2. ``bn0``: BatchNorm2d over the mel bins (running statistics in eval).
3. ``reshape_wav2img``: bicubic (``align_corners=True``) stretch of time to ``spec_size * freq_ratio`` frames
   (1001 -> 1024), then the time axis is cut into ``freq_ratio`` chunks stacked along frequency: a
   ``spec_size x spec_size`` image whose row ``r`` is chunk ``r // n_mels``, mel bin ``r % n_mels``.
4. Swin stages (patch 4, window attention with relative-position bias, shifted windows on odd blocks, patch merging).
   A block's shift is turned off and its window shrunk to the resolution when ``min(resolution) <= window``
   (the whole last stage at paper size).
5. The "locality-aware" path: every block also returns ``v = shortcut + proj(V)``, ``v = v + norm2(v)`` where ``V``
   is the value slice of ``qkv`` of the block's own normalised input (token-wise: no attention weights, no MLP).
   Each stage keeps the ``v`` of its LAST block (patch-merged like ``x``); so what comes out is the ``v`` of the
   last block of the last stage, computed from the ``x`` path of everything before it.
6. ``norm(v)``, then ``(B, C, F, T)`` on the final ``F x T`` grid, regrouped as ``(B, C, F / freq_ratio,
   freq_ratio * T)`` (time index = chunk * T + t) and averaged over the frequency rows: ``(B, freq_ratio * T, C)``,
   i.e. ``(B, 32, 768)`` at paper size. ``embedding`` (max-pool of the normalised ``x`` path, ``(B, 768)``) is the
   first output; Sat2Sound does not use it, nor ``tscam_conv`` and ``head``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from contracts.errors import DataError


def slaney_mel_filters(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """``librosa.filters.mel`` defaults (Slaney mel scale, Slaney area norm): ``(n_mels, n_fft // 2 + 1)`` float32.
    Re-stated from the published formulas (librosa is not installed here)."""

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        f = np.asarray(f, dtype=np.float64)
        lin = f / (200.0 / 3)
        log = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
        return np.where(f >= 1000.0, log, lin)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        lin = m * (200.0 / 3)
        log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0))
        return np.where(m >= 15.0, log, lin)

    fft_freqs = np.linspace(0.0, sr / 2.0, 1 + n_fft // 2)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    return weights.astype(np.float32)


def stft_kernels(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """torchlibrosa's STFT conv kernels: periodic Hann times the DFT basis, ``(n_fft // 2 + 1, 1, n_fft)`` each."""
    n = np.arange(n_fft)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / n_fft)
    k = np.arange(n_fft // 2 + 1)
    angle = 2.0 * np.pi * ((n[None, :] * k[:, None]) % n_fft) / n_fft
    real = (np.cos(angle) * window[None, :]).astype(np.float32)[:, None, :]
    imag = (-np.sin(angle) * window[None, :]).astype(np.float32)[:, None, :]
    return real, imag


def _frozen(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class _STFT(nn.Module):
    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.conv_real = nn.Conv1d(1, n_fft // 2 + 1, n_fft, stride=hop, bias=False)
        self.conv_imag = nn.Conv1d(1, n_fft // 2 + 1, n_fft, stride=hop, bias=False)


class _Spectrogram(nn.Module):
    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.stft = _STFT(n_fft, hop)


class _LogMel(nn.Module):
    def __init__(self, n_fft: int, n_mels: int):
        super().__init__()
        self.melW = nn.Parameter(torch.empty(n_fft // 2 + 1, n_mels))


class LogMelExtractor(nn.Module):
    """MGA-CLAP's ``AudioFeature`` (keys ``mel_trans.stft.conv_real/conv_imag.weight``, ``log_trans.melW``): reflect
    padding of ``n_fft // 2``, power spectrogram, mel matrix, ``10 log10(max(., 1e-10))`` (ref 1, no top_db)."""

    def __init__(self, sample_rate: int, n_fft: int, hop: int, n_mels: int, f_min: float, f_max: float):
        super().__init__()
        self.settings = (sample_rate, n_fft, hop, n_mels, f_min, f_max)
        self.mel_trans = _Spectrogram(n_fft, hop)
        self.log_trans = _LogMel(n_fft, n_mels)
        _frozen(self)
        if not self.log_trans.melW.is_meta:
            self.reset_deterministic()

    @torch.no_grad()
    def reset_deterministic(self) -> None:
        """The values these frozen tensors have in every MGA-CLAP model (computed, not learned)."""
        sr, n_fft, _, n_mels, f_min, f_max = self.settings
        real, imag = stft_kernels(n_fft)
        self.mel_trans.stft.conv_real.weight.copy_(torch.from_numpy(real))
        self.mel_trans.stft.conv_imag.weight.copy_(torch.from_numpy(imag))
        self.log_trans.melW.copy_(torch.from_numpy(slaney_mel_filters(sr, n_fft, n_mels, f_min, f_max).T.copy()))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """``(B, samples)`` at the sample rate -> log-mel ``(B, 1, frames, n_mels)``."""
        stft = self.mel_trans.stft
        x = F.pad(wave[:, None, :], (stft.n_fft // 2, stft.n_fft // 2), mode="reflect")
        power = stft.conv_real(x) ** 2 + stft.conv_imag(x) ** 2  # (B, bins, frames)
        mel = power.transpose(1, 2)[:, None] @ self.log_trans.melW
        return 10.0 * torch.log10(torch.clamp(mel, min=1e-10))


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """``(B, H, W, C)`` -> ``(B * nW, ws, ws, C)``, windows in row-major order."""
    B, H, W, C = x.shape
    x = x.view(B, H // ws, ws, W // ws, ws, C)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, ws, ws, C)


def window_reverse(windows: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    """Inverse of ``window_partition`` for an ``h x w`` grid."""
    B = int(windows.shape[0] / (h * w / ws / ws))
    x = windows.view(B, h // ws, w // ws, ws, ws, -1)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(B, h, w, -1)


class WindowAttention(nn.Module):
    """Window self-attention with a learned relative-position bias; also returns the projected values ``v``."""

    def __init__(self, dim: int, ws: int, heads: int):
        super().__init__()
        self.ws, self.heads, self.scale = ws, heads, (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, heads))
        coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
        rel[:, :, 0] += ws - 1
        rel[:, :, 1] += ws - 1
        rel[:, :, 0] *= 2 * ws - 1
        self.register_buffer("relative_position_index", rel.sum(-1))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        B_, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B_, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(N, N, -1)
        attn = attn + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nW = mask.shape[0]
            attn = attn.view(B_ // nW, nW, self.heads, N, N) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.heads, N, N)
        out = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(B_, N, C)
        return self.proj(out), self.proj(v.transpose(1, 2).reshape(B_, N, C))


class Mlp(nn.Module):
    """``fc1``, exact GELU, ``fc2`` (dropout is inactive in eval)."""

    def __init__(self, dim: int, hidden: int, out: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    """One (shifted-)window block; ``attn_mask`` is a persistent buffer only when the block shifts."""

    def __init__(self, dim: int, resolution: tuple[int, int], heads: int, window: int, shift: int):
        super().__init__()
        self.resolution = resolution
        if min(resolution) <= window:
            shift, window = 0, min(resolution)
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 4 * dim)
        self.register_buffer("attn_mask", self._shift_mask() if shift > 0 else None)

    def _shift_mask(self) -> torch.Tensor:
        H, W = self.resolution
        ws, s = self.window, self.shift
        region = torch.zeros((1, H, W, 1))
        cuts = (slice(0, -ws), slice(-ws, -s), slice(-s, None))
        label = 0
        for h in cuts:
            for w in cuts:
                region[:, h, w, :] = label
                label += 1
        windows = window_partition(region, ws).view(-1, ws * ws)
        diff = windows.unsqueeze(1) - windows.unsqueeze(2)
        return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        H, W = self.resolution
        B, _, C = x.shape
        ws, s = self.window, self.shift
        shortcut = x
        h = self.norm1(x).view(B, H, W, C)
        if s:
            h = torch.roll(h, shifts=(-s, -s), dims=(1, 2))
        a, v = self.attn(window_partition(h, ws).view(-1, ws * ws, C), self.attn_mask)
        a = window_reverse(a.view(-1, ws, ws, C), ws, H, W)
        v = window_reverse(v.view(-1, ws, ws, C), ws, H, W)
        if s:
            a = torch.roll(a, shifts=(s, s), dims=(1, 2))
            v = torch.roll(v, shifts=(s, s), dims=(1, 2))
        x = shortcut + a.view(B, H * W, C)
        x = x + self.mlp(self.norm2(x))
        v = shortcut + v.view(B, H * W, C)
        return x, v + self.norm2(v)


class PatchMerging(nn.Module):
    def __init__(self, resolution: tuple[int, int], dim: int):
        super().__init__()
        self.resolution = resolution
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = self.resolution
        B, _, C = x.shape
        x = x.view(B, H, W, C)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(B, -1, 4 * C)))


class BasicLayer(nn.Module):
    def __init__(self, dim: int, resolution: tuple[int, int], depth: int, heads: int, window: int, merge: bool):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, resolution, heads, window, 0 if i % 2 == 0 else window // 2) for i in range(depth))
        self.downsample = PatchMerging(resolution, dim) if merge else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for blk in self.blocks:
            x, v = blk(x)
        if self.downsample is not None:
            x, v = self.downsample(x), self.downsample(v)
        return x, v


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, embed: int):
        super().__init__()
        self.proj = nn.Conv2d(1, embed, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(embed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class ReferenceHTSAT(nn.Module):
    """``HTSAT_Swin_Transformer`` with the key layout of the authors' module (``audio_feats_extractor``, ``bn0``,
    ``patch_embed``, ``layers.i.blocks.j`` / ``layers.i.downsample``, ``norm``, ``tscam_conv``, ``head``)."""

    def __init__(self, *, spec_size: int, patch: int, embed: int, depths: tuple[int, ...], heads: tuple[int, ...],
                 window: int, n_mels: int, num_classes: int, sample_rate: int, n_fft: int, hop: int,
                 f_min: float, f_max: float):
        super().__init__()
        self.spec_size, self.patch, self.depths = spec_size, patch, tuple(depths)
        self.freq_ratio = spec_size // n_mels
        self.num_features = embed * 2 ** (len(depths) - 1)
        self.audio_feats_extractor = LogMelExtractor(sample_rate, n_fft, hop, n_mels, f_min, f_max)
        self.bn0 = nn.BatchNorm2d(n_mels)
        self.patch_embed = PatchEmbed(patch, embed)
        grid = spec_size // patch
        self.layers = nn.ModuleList(
            BasicLayer(embed * 2 ** i, (grid // 2 ** i, grid // 2 ** i), d, heads[i], window, i < len(depths) - 1)
            for i, d in enumerate(depths))
        self.norm = nn.LayerNorm(self.num_features)
        sf = spec_size // 2 ** (len(depths) - 1) // patch // self.freq_ratio
        self.tscam_conv = nn.Conv2d(self.num_features, num_classes, kernel_size=(sf, 3), padding=(0, 1))
        self.head = nn.Linear(num_classes, num_classes)

    def inert_keys(self) -> tuple[str, ...]:
        """Keys (below this module) that cannot change the frame-level output: the unused extractor, classifier
        heads, the x-path MLP and attention bias of the very last block, the BatchNorm counter."""
        last = f"layers.{len(self.depths) - 1}.blocks.{self.depths[-1] - 1}"
        keys = [k for k in self.state_dict() if k.startswith(("audio_feats_extractor.", "tscam_conv.", "head."))]
        keys += [f"{last}.mlp.fc1.weight", f"{last}.mlp.fc1.bias", f"{last}.mlp.fc2.weight", f"{last}.mlp.fc2.bias",
                 f"{last}.attn.relative_position_bias_table", "bn0.num_batches_tracked"]
        return tuple(keys)

    def reshape_wav2img(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, T, n_mels)`` -> ``(B, 1, spec, spec)``: bicubic stretch of time, then time chunks on rows."""
        _, _, frames, bins = x.shape
        target_t, target_f = self.spec_size * self.freq_ratio, self.spec_size // self.freq_ratio
        if frames > target_t or bins > target_f:
            raise DataError(f"log-mel of {frames} frames x {bins} bins is larger than the tower takes "
                            f"({target_t} x {target_f})")
        if frames < target_t:
            x = F.interpolate(x, (target_t, x.shape[3]), mode="bicubic", align_corners=True)
        if bins < target_f:
            x = F.interpolate(x, (x.shape[2], target_f), mode="bicubic", align_corners=True)
        x = x.permute(0, 1, 3, 2).contiguous()
        x = x.reshape(x.shape[0], x.shape[1], x.shape[2], self.freq_ratio, x.shape[3] // self.freq_ratio)
        x = x.permute(0, 1, 3, 2, 4).contiguous()
        return x.reshape(x.shape[0], x.shape[1], x.shape[2] * x.shape[3], x.shape[4])

    def _grouped(self, t: torch.Tensor) -> torch.Tensor:
        """Normalised tokens ``(B, N, C)`` -> ``(B, C, F / freq_ratio, freq_ratio * T)``."""
        B, _, C = t.shape
        side = self.spec_size // 2 ** (len(self.depths) - 1) // self.patch
        t = t.permute(0, 2, 1).contiguous().reshape(B, C, side, side)
        bins = side // self.freq_ratio
        t = t.reshape(B, C, side // bins, bins, side).permute(0, 1, 3, 2, 4).contiguous()
        return t.reshape(B, C, bins, -1)

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval forward: log-mel ``(B, 1, T, n_mels)`` -> (``embedding`` ``(B, C)``, frame tokens ``(B, N, C)``)."""
        x = self.bn0(mel.transpose(1, 3)).transpose(1, 3)
        x = self.patch_embed(self.reshape_wav2img(x))
        for layer in self.layers:
            x, v = layer(x)
        pooled = torch.amax(self._grouped(self.norm(x)).flatten(2), dim=2)
        frames = self._grouped(self.norm(v)).mean(dim=2).permute(0, 2, 1)
        return pooled, frames


def check_htsat_sizes(spec_size: int, patch: int, depths: tuple[int, ...], heads: tuple[int, ...], embed: int,
                      window: int, n_mels: int, n_frames: int) -> str | None:
    """Why these HTSAT sizes cannot run the authors' maths, or None when they can."""
    if len(depths) != len(heads) or not depths:
        return "HTSAT depths and heads must have the same non-zero length"
    if spec_size % n_mels or spec_size // n_mels < 1:
        return f"HTSAT spec size {spec_size} must be a multiple of n_mels {n_mels}"
    freq_ratio = spec_size // n_mels
    if n_frames > spec_size * freq_ratio:
        return f"{n_frames} frames do not fit the {spec_size * freq_ratio} the tower stretches to"
    grid = spec_size // patch
    if spec_size % patch or grid % 2 ** (len(depths) - 1):
        return f"HTSAT grid {spec_size}/{patch} cannot be halved {len(depths) - 1} times"
    side = grid // 2 ** (len(depths) - 1)
    if side < freq_ratio or side % freq_ratio:
        return f"final HTSAT grid {side} must be a multiple of freq_ratio {freq_ratio}"
    for i, h in enumerate(heads):
        res = grid // 2 ** i
        ws = min(window, res)
        if (embed * 2 ** i) % h or res % ws:
            return f"HTSAT stage {i}: width {embed * 2 ** i} / heads {h} / resolution {res} / window {ws} do not fit"
    return None
