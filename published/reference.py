"""An independent reference of the authors' Sat2Sound model (``sat2soundModel`` in ``mvrl/sat2sound``), for checks.

Written only from the authors' public code (``src/engine.py``, ``src/models/*``, ``src/dataloader.py``).
``AuthorsSat2Sound(sizes).state_dict()`` has exactly the keys, shapes and order of the authors' Lightning module;
the ``encode_*`` functions are their evaluation maths (``eval()``, ``no_grad``, ``meta_droprate = 0`` as
``src/evaluate.py`` and the retrieval demo set it). ``standin.randomize_`` fills it with realistic values.

Image: SatMAE ViT-B/16 without cls token, position table, final norm or head (timm block layout, LayerNorm eps
1e-6) plus the GSD sin-cos code of ``pos_embed.py``: ``res = zoom * GSD[sat_type]``; token ``row * grid + col`` gets
``[sin(col res w), cos(col res w), sin(row res w), cos(row res w)]``, ``w_k = 10000^(-k / (width / 4))``; then the
projector (Linear, GELU, Linear). With metadata the tokens ``[grid*grid image tokens, one per field in the order
asource, tsource, latlong, month, time]`` (fields of ``metadata_type`` only; an invalid field's token zeroed) run
through ``torch.nn.TransformerEncoder`` (post-norm, GELU, eps 1e-5) with ``src_key_padding_mask = not valid``;
ALL fused tokens, metadata ones included, go to the FDT image query, unmasked.

Metadata encoding (``src/dataloader.py``): ``latlong = [sin(pi lat/90), cos(pi lat/90), sin(pi lon/180),
cos(pi lon/180)]``, ``month = [sin(2 pi m/12), cos(2 pi m/12)]`` (m in 1..12), ``time = [sin(2 pi h/23),
cos(2 pi h/23)]`` (h in 0..23: 23, not 24). A missing value is ``[0, 0]`` with valid flag 0 (GeoSound: no date ->
month and time invalid; freesound -> time invalid). Source ids: audio ``yfcc 0, iNat 1, aporee 2, freesound 3``;
caption ``meta 0, qwen 1, pengi 2``.

The fusion's eval fast path: under ``no_grad`` in eval, ``TransformerEncoder`` makes a nested tensor when the
padding is left-aligned in EVERY row of the batch (valid first, padding last) and returns exact zeros at padded
positions; if any row is not left-aligned (month invalid, time valid) the whole batch takes the per-layer path and
padded positions get ordinary outputs (as they always do in training). This reference calls the torch class
itself under ``no_grad`` in eval, so it inherits exactly that, batch coupling included (``padded_outputs_zeroed``
tells the case). The authors' data never has month invalid with time valid: padded tokens come out as zeros.

Audio starts at the log-mel (MGA-CLAP's module holds an extractor it does not call; see ``reference_htsat``).
Text: FLAN-T5-large states (not in the checkpoint) go straight to the text query; a padded token's scores are
multiplied by 0, so it joins the max over tokens with score 0. FDT: ``q = q_map(tokens)``, scores ``q . codebook /
sqrt(dim) / temperature``, max over tokens, sparsemax over codes, ``weights @ codebook``, ``x / (|x| + 1e-8)``.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from contracts.errors import ConfigError, DataError
from published.reference_htsat import Mlp, ReferenceHTSAT, check_htsat_sizes

GSD = {"sentinel": 10.0, "bingmap": 0.6, "googleEarth": 0.2}
AUDIO_SOURCES = {"yfcc": 0, "iNat": 1, "aporee": 2, "freesound": 3}
CAPTION_SOURCES = {"meta": 0, "qwen": 1, "pengi": 2}
META_FIELDS = ("asource", "tsource", "latlong", "month", "time")  # the authors' token order


@dataclass(frozen=True)
class AuthorsSizes:
    """Every size the authors' model is built from; ``paper`` is the released one."""

    metadata_type: str = "latlong_month_time_asource_tsource"
    image_size: int = 224
    patch: int = 16
    vit_width: int = 768
    vit_depth: int = 12
    vit_heads: int = 12
    fc_dim: int = 1024
    fusion_layers: int = 3
    fusion_heads: int = 8
    fusion_ffn: int = 2048
    meta_hidden: int = 64
    htsat_embed: int = 96
    htsat_depths: tuple[int, ...] = (2, 2, 6, 2)
    htsat_heads: tuple[int, ...] = (4, 8, 16, 32)
    htsat_window: int = 8
    htsat_patch: int = 4
    spec_size: int = 256
    n_mels: int = 64
    n_frames: int = 1001
    htsat_classes: int = 527
    sample_rate: int = 32000
    n_fft: int = 1024
    hop: int = 320
    f_min: float = 50.0
    f_max: float = 14000.0
    codebook_size: int = 16000
    dim: int = 1024
    temperature: float = 1000.0
    text_width: int = 1024
    combined_modality_loss: bool = True
    meta_fields: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        mt = self.metadata_type
        parts = set() if mt == "none" else set(mt.split("_"))
        if mt != "none" and (not parts or not parts <= set(META_FIELDS)):
            raise ConfigError(f"metadata_type {mt!r}: use 'none' or '_'-joined fields of {', '.join(META_FIELDS)}")
        object.__setattr__(self, "meta_fields", tuple(f for f in META_FIELDS if f in parts))
        if self.image_size % self.patch or self.vit_width % 4 or self.vit_width % self.vit_heads or \
                self.fc_dim % self.fusion_heads:
            raise ConfigError(f"image {self.image_size}/patch {self.patch}/width {self.vit_width}/heads "
                              f"{self.vit_heads}/fc_dim {self.fc_dim}/fusion heads {self.fusion_heads} do not fit")
        why = check_htsat_sizes(self.spec_size, self.htsat_patch, self.htsat_depths, self.htsat_heads,
                                self.htsat_embed, self.htsat_window, self.n_mels, self.n_frames)
        if why:
            raise ConfigError(why)

    @classmethod
    def paper(cls, metadata_type: str = "latlong_month_time_asource_tsource") -> AuthorsSizes:
        return cls(metadata_type=metadata_type)

    @classmethod
    def tiny(cls, metadata_type: str = "latlong_month_time_asource_tsource") -> AuthorsSizes:
        """Seconds-fast sizes with the same maths: the HTSAT has 4 stages on a 16x16 grid with window 4, so
        stages 0-1 shift, stage 2 turns the shift off (resolution == window) and stage 3 shrinks the window to 2."""
        return cls(metadata_type=metadata_type, image_size=32, patch=8, vit_width=32, vit_depth=2, vit_heads=2,
                   fc_dim=32, fusion_layers=2, fusion_heads=2, fusion_ffn=48, htsat_embed=8,
                   htsat_depths=(2, 2, 2, 2), htsat_heads=(1, 2, 2, 4), htsat_window=4, spec_size=64, n_mels=32,
                   n_frames=101, htsat_classes=5, n_fft=128, hop=32, codebook_size=64, dim=32, text_width=24)

    @property
    def audio_width(self) -> int:
        return self.htsat_embed * 2 ** (len(self.htsat_depths) - 1)


def gsd_sincos(width: int, grid: int, res: torch.Tensor) -> torch.Tensor:
    """``pos_embed.get_2d_sincos_pos_embed_with_resolution`` without cls row: ``(B, grid*grid, width)``."""
    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32),
                                indexing="ij")
    omega = 1.0 / 10000 ** (torch.arange(width // 4, dtype=torch.float32) / (width / 4.0))

    def code(pos: torch.Tensor) -> torch.Tensor:
        out = (pos.reshape(-1)[:, None] * res.to(torch.float32).repeat_interleave(grid * grid)[:, None]) * omega
        return torch.cat([torch.sin(out), torch.cos(out)], dim=1)

    pos_x = cols.unsqueeze(0).expand(len(res), grid, grid)
    pos_y = rows.unsqueeze(0).expand(len(res), grid, grid)
    return torch.cat([code(pos_x), code(pos_y)], dim=1).reshape(len(res), grid * grid, width)


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        attn = ((q * (C // self.heads) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), _Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), Mlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _SatMAEViT(nn.Module):
    def __init__(self, s: AuthorsSizes):
        super().__init__()
        self.grid = s.image_size // s.patch
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, s.vit_width, kernel_size=s.patch, stride=s.patch)
        self.blocks = nn.ModuleList(_Block(s.vit_width, s.vit_heads) for _ in range(s.vit_depth))

    def forward(self, x: torch.Tensor, res: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = x + gsd_sincos(x.shape[-1], self.grid, res).to(x.device)
        for blk in self.blocks:
            x = blk(x)
        return x


class _SatMAEBackbone(nn.Module):
    def __init__(self, s: AuthorsSizes):
        super().__init__()
        self.backbone = _SatMAEViT(s)
        self.projector = nn.Module()
        self.projector.linear1 = nn.Linear(s.vit_width, s.fc_dim)
        self.projector.linear2 = nn.Linear(s.fc_dim, s.fc_dim)

    def forward(self, x: torch.Tensor, res: torch.Tensor) -> torch.Tensor:
        return self.projector.linear2(F.gelu(self.projector.linear1(self.backbone(x, res))))


def _source(n: int, dim: int) -> nn.Module:
    m = nn.Module()
    m.source_embed = nn.Embedding(n, dim)
    return m


class _MetaEmbed(nn.Module):
    """``metadata_projector``: one token per field, zeroed where the field is invalid."""

    def __init__(self, s: AuthorsSizes):
        super().__init__()
        self.fields = s.meta_fields
        if "asource" in self.fields:
            self.audio_source_fc = _source(len(AUDIO_SOURCES), s.fc_dim)
        if "tsource" in self.fields:
            self.caption_source_fc = _source(len(CAPTION_SOURCES), s.fc_dim)
        for name, attr, n_in in (("latlong", "location_fc", 4), ("month", "month_fc", 2), ("time", "time_fc", 2)):
            if name in self.fields:
                setattr(self, attr, Mlp(n_in, s.meta_hidden, s.fc_dim))  # metaNet

    def forward(self, enc: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, valid = [], []
        for f in self.fields:
            if f == "asource":
                t, ok = self.audio_source_fc.source_embed(enc["audio_source"]), None
            elif f == "tsource":
                t, ok = self.caption_source_fc.source_embed(enc["caption_source"]), None
            elif f == "latlong":
                t, ok = self.location_fc(enc["latlong"]), None
            else:
                t, ok = getattr(self, f"{f}_fc")(enc[f]), enc[f"{f}_valid"].bool()
            ok = torch.ones(t.shape[0], dtype=torch.bool, device=t.device) if ok is None else ok.to(t.device)
            tokens.append((t * ok.unsqueeze(1)).unsqueeze(1))
            valid.append(ok.unsqueeze(1))
        return torch.cat(tokens, dim=1), torch.cat(valid, dim=1)


class _MetaFuser(nn.Module):
    def __init__(self, s: AuthorsSizes):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model=s.fc_dim, nhead=s.fusion_heads, dim_feedforward=s.fusion_ffn,
                                           batch_first=True, activation="gelu")
        self.transformer_encoder = nn.TransformerEncoder(layer, num_layers=s.fusion_layers)
        self.meta_embed = _MetaEmbed(s)

    def forward(self, sat: torch.Tensor, enc: dict[str, torch.Tensor]) -> torch.Tensor:
        meta, valid = self.meta_embed(enc)
        tokens = torch.cat([sat, meta], dim=1)
        valid = torch.cat([torch.ones(sat.shape[:2], dtype=torch.bool, device=sat.device), valid], dim=1)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*nested tensors is in prototype.*")
            return self.transformer_encoder(tokens, src_key_padding_mask=~valid)


def padded_outputs_zeroed(valid: torch.Tensor) -> bool:
    """Whether torch's eval fast path zeroes padded fusion outputs for this batch's ``(B, tokens)`` validity
    (True = kept): padding present and every row left-aligned."""
    v = valid.bool()
    left_aligned = bool((v.int().cummin(dim=1).values == v.int()).all())
    return left_aligned and not bool(v.all())


def sparsemax(z: torch.Tensor) -> torch.Tensor:
    """Sparsemax over the last dimension (Martins & Astudillo), as the FDT code computes it."""
    z = z - z.max(dim=-1, keepdim=True).values
    zs = torch.sort(z, dim=-1, descending=True).values
    rank = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype, device=z.device)
    support = (1 + rank * zs > torch.cumsum(zs, dim=-1)).to(z.dtype)
    k = (support * rank).max(dim=-1, keepdim=True).values
    tau = ((support * zs).sum(dim=-1, keepdim=True) - 1) / k
    return torch.clamp(z - tau, min=0)


class _QueryModel(nn.Module):
    def __init__(self, ft_dim: int, dim: int, temperature: float):
        super().__init__()
        self.dim, self.temperature = dim, temperature
        self.q_map = nn.Sequential(nn.LayerNorm(ft_dim), nn.Linear(ft_dim, dim), nn.GELU(), nn.LayerNorm(dim),
                                   nn.Linear(dim, dim))

    def forward(self, ft: torch.Tensor, codebook: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        scores = self.q_map(ft) @ codebook.t() / math.sqrt(self.dim)
        if pad_mask is not None:
            scores = scores * (pad_mask == 0).unsqueeze(-1)
        weights = sparsemax((scores / self.temperature).max(dim=1).values)
        return weights @ codebook


class _FDT(nn.Module):
    def __init__(self, s: AuthorsSizes):
        super().__init__()
        self.space_dict = nn.Parameter(torch.randn(s.codebook_size, s.dim))
        self.img_query_model = _QueryModel(s.fc_dim, s.dim, s.temperature)
        self.txt_query_model = _QueryModel(s.text_width, s.dim, s.temperature)
        self.audio_query_model = _QueryModel(s.audio_width, s.dim, s.temperature)


def l2normalize(x: torch.Tensor) -> torch.Tensor:
    return x / (x.norm(p=2, dim=-1, keepdim=True) + 1e-8)  # the authors' l2normalize


def encode_metadata(meta: dict, fields: tuple[str, ...], batch: int) -> dict[str, torch.Tensor]:
    """Raw ``meta`` (``lat, lon`` degrees, ``month`` 1-12, ``hour`` 0-23, ``audio_source``, ``caption_source`` ids,
    optional ``month_valid`` / ``hour_valid``) -> the authors' batch tensors (``latlong``, ``month``, ``time``,
    ``month_valid``, ``time_valid``, ``audio_source``, ``caption_source``), float64 maths cast to float32."""
    out: dict[str, torch.Tensor] = {}

    def col(name: str, dtype: torch.dtype) -> torch.Tensor:
        if name not in meta:
            raise DataError("metadata is missing a field the model uses", field=name)
        t = torch.as_tensor(meta[name], dtype=dtype).reshape(-1)
        if t.numel() != batch:
            raise DataError(f"metadata has {t.numel()} values for a batch of {batch}", field=name)
        return t

    def circle(v: torch.Tensor, period: float) -> torch.Tensor:  # 2 pi lat / 180 == pi lat / 90 exactly
        return torch.stack([torch.sin(2 * math.pi * v / period), torch.cos(2 * math.pi * v / period)], 1)

    for f, name, n in (("asource", "audio_source", 4), ("tsource", "caption_source", 3)):
        if f in fields:
            out[name] = ids = col(name, torch.long)
            if bool(((ids < 0) | (ids >= n)).any()):
                raise DataError(f"source ids must lie in 0..{n - 1}", field=name)
    if "latlong" in fields:
        out["latlong"] = torch.cat([circle(col("lat", torch.float64), 180), circle(col("lon", torch.float64), 360)],
                                   1).float()
    for f, name, period in (("month", "month", 12), ("time", "hour", 23)):
        if f in fields:
            ok = col(f"{name}_valid", torch.bool) if f"{name}_valid" in meta else torch.ones(batch, dtype=torch.bool)
            code = circle(col(name, torch.float64), period)
            out[f] = torch.where(ok[:, None], code, torch.zeros_like(code)).float()
            out[f"{f}_valid"] = ok.long()
    return out


def _inference(fn):
    @functools.wraps(fn)
    def run(self: AuthorsSat2Sound, *args, **kwargs):
        if self.training:
            raise ConfigError("the reference runs the authors' evaluation maths only: call .eval() first")
        with torch.no_grad():
            return fn(self, *args, **kwargs)

    return run


class AuthorsSat2Sound(nn.Module):
    """Key-for-key the authors' ``sat2soundModel`` (built in eval mode); ``text_encoder`` holds nothing there."""

    def __init__(self, sizes: AuthorsSizes):
        super().__init__()
        self.sizes = s = sizes
        self.satmae_backbone = _SatMAEBackbone(s)
        self.sat_encoder = nn.Module()
        if s.meta_fields:
            self.sat_encoder.meta_fuser = _MetaFuser(s)
        self.audio_encoder = nn.Module()
        self.audio_encoder.model = nn.Module()
        self.audio_encoder.model.audio_enc = ReferenceHTSAT(
            spec_size=s.spec_size, patch=s.htsat_patch, embed=s.htsat_embed, depths=s.htsat_depths,
            heads=s.htsat_heads, window=s.htsat_window, n_mels=s.n_mels, num_classes=s.htsat_classes,
            sample_rate=s.sample_rate, n_fft=s.n_fft, hop=s.hop, f_min=s.f_min, f_max=s.f_max)
        self.text_encoder = nn.Module()
        self.fdt = _FDT(s)
        names = ["at", "it", "ia", "fdt"] + (["i_at", "it_a"] if s.combined_modality_loss else [])
        for n in names:
            setattr(self, f"logit_scale_{n}", nn.Parameter(torch.ones([]) * math.log(1 / 0.07)))
        self.eval()

    def inert_keys(self) -> tuple[str, ...]:
        """Keys that cannot change any ``encode_*`` output (the contrastive logit scales and the audio tower's
        unused parts); every other key does."""
        audio = tuple(f"audio_encoder.model.audio_enc.{k}" for k in self.audio_encoder.model.audio_enc.inert_keys())
        return tuple(k for k in self.state_dict() if k.startswith("logit_scale_")) + audio

    def _res(self, zoom, sat_type: str, batch: int) -> torch.Tensor:
        if sat_type not in GSD:
            raise ConfigError(f"sat_type {sat_type!r}: use one of {', '.join(GSD)}")
        zooms = [float(z) for z in torch.as_tensor(zoom).reshape(-1).tolist()]
        if len(zooms) != batch:
            raise DataError(f"{len(zooms)} zoom levels for a batch of {batch} images")
        return torch.tensor([1.0 * z * GSD[sat_type] for z in zooms], dtype=torch.float32)

    @_inference
    def satmae_tokens(self, image: torch.Tensor, zoom, sat_type: str) -> torch.Tensor:
        """SatMAE + projector: ``(B, grid*grid, fc_dim)``."""
        return self.satmae_backbone(image, self._res(zoom, sat_type, image.shape[0]))

    @_inference
    def image_tokens(self, image: torch.Tensor, zoom, sat_type: str, meta: dict | None = None) -> torch.Tensor:
        """The tokens the FDT image query sees: ``(B, grid*grid [+ fields], fc_dim)``."""
        tokens = self.satmae_tokens(image, zoom, sat_type)
        if not self.sizes.meta_fields:
            return tokens
        if meta is None:
            raise DataError(f"this model fuses metadata ({self.sizes.metadata_type}); pass meta")
        enc = {k: v.to(tokens.device) for k, v in encode_metadata(meta, self.sizes.meta_fields, len(tokens)).items()}
        return self.sat_encoder.meta_fuser(tokens, enc)

    @_inference
    def encode_image(self, image: torch.Tensor, zoom, sat_type: str, meta: dict | None = None) -> torch.Tensor:
        """``(B, 3, S, S)`` ImageNet-normalised tiles -> ``(B, dim)`` unit vectors."""
        tokens = self.image_tokens(image, zoom, sat_type, meta)
        return l2normalize(self.fdt.img_query_model(tokens, self.fdt.space_dict))

    @_inference
    def audio_tokens(self, mel: torch.Tensor) -> torch.Tensor:
        """Log-mel ``(B, n_frames, n_mels)`` -> HTSAT frame tokens ``(B, N, audio_width)``."""
        if mel.dim() != 3 or mel.shape[-1] != self.sizes.n_mels:
            raise DataError(f"log-mel must be (batch, frames, {self.sizes.n_mels}); got {tuple(mel.shape)}")
        return self.audio_encoder.model.audio_enc(mel.unsqueeze(1))[1]

    @_inference
    def encode_audio(self, mel: torch.Tensor) -> torch.Tensor:
        return l2normalize(self.fdt.audio_query_model(self.audio_tokens(mel), self.fdt.space_dict))

    @_inference
    def encode_text(self, states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """FLAN-T5 encoder states ``(B, T, text_width)`` and mask ``(B, T)`` (1 = token) -> ``(B, dim)``."""
        pad_mask = torch.where(attention_mask == 1, torch.tensor(0.0), torch.tensor(float("-inf")))
        return l2normalize(self.fdt.txt_query_model(states, self.fdt.space_dict, pad_mask.to(states.device)))
