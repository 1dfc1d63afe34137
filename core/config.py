"""Typed configuration: dataclasses for every stage and the named presets ``tiny``, ``default`` and ``paper``.

``tiny`` runs in seconds (tests), ``default`` is the embedded demo on 2 CPU cores, ``paper`` has the published
sizes (SatMAE ViT-B/16 width, d=1024, M=16000, 32 kHz / 10 s audio) and is meant for a GPU and the real data.
Configs round-trip through JSON (``to_dict`` / ``from_dict``) so every artifact folder can describe itself.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from contracts.errors import ConfigError
from contracts.schema import META_FIELDS, ZOOMS
from core.config_io import from_dict, to_dict
from world.config import WorldConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AudioConfig:
    """Audio front end: mono, resample, random crop / zero-pad, STFT (Hann, centred), mel, log (dB)."""

    sample_rate: int = 16000
    clip_seconds: float = 5.0
    n_fft: int = 512
    hop_length: int = 256
    n_mels: int = 64
    f_min: float = 50.0
    f_max: float = 8000.0
    amin: float = 1e-10

    @property
    def n_samples(self) -> int:
        return int(round(self.sample_rate * self.clip_seconds))

    @property
    def n_frames(self) -> int:
        return 1 + self.n_samples // self.hop_length


@dataclass(frozen=True)
class ImageConfig:
    """Model input image and how tiles become it: centre crop by zoom, bicubic resize, ImageNet mean/std."""

    image_size: int = 128  # zoom 5 shrinks a 320 px world tile 2.5x: thin roads and rails stay visible
    patch_size: int = 16  # the paper's ViT patch; 8 x 8 = 64 tokens
    imagery: str = "bingmap"  # which tile column of the dataset is read
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    zooms: tuple[int, ...] = ZOOMS
    colour_jitter: float = 0.2  # training only
    flip_rotate: bool = True  # training only: each view turned by k x 90 degrees and mirrored at random

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def n_patches(self) -> int:
        return self.grid * self.grid


@dataclass(frozen=True)
class ImageEncoderConfig:
    width: int = 128
    depth: int = 3
    heads: int = 4
    mlp_ratio: float = 4.0
    projector_hidden: int = 192  # MLP projector width -> ... -> codebook dim (paper 768->1024->1024)
    ln_eps: float = 1e-5  # the published SatMAE ViT uses 1e-6
    pos_order: Literal["yx", "xy"] = "yx"  # which half of the 2-D sin-cos encoding comes first (published: x)


@dataclass(frozen=True)
class FusionConfig:
    """Metadata early fusion: 5 metadata tokens appended to the patch tokens, then a transformer."""

    use_metadata: bool = True
    layers: int = 1
    heads: int = 4
    meta_hidden: int = 64  # Linear(k, 64) - GELU - Linear(64, d)
    drop_prob: float = 0.5  # each field dropped for this fraction of every training batch
    norm_first: bool = True  # pre-norm blocks; the published fusion (torch.nn.TransformerEncoder) is post-norm
    ffn_hidden: int = 0  # feed-forward width; 0 = 4 x d (published: 2048)
    ln_eps: float = 1e-5
    mask_codebook: bool = True  # padded metadata tokens score 0 at the codebook (the published model scores them)
    zero_padded: bool = False  # padded tokens leave the fusion as zeros (torch.nn.TransformerEncoder's eval path)
    meta_fields: tuple[str, ...] = META_FIELDS  # which metadata tokens exist (published SoundingEarth: no audio source)


@dataclass(frozen=True)
class HTSATConfig:
    """MGA-CLAP's HTSAT: a Swin transformer over the log-mel stretched and folded into a square image."""

    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    heads: tuple[int, ...] = (4, 8, 16, 32)
    window: int = 8
    patch: int = 4
    spec_size: int = 256  # the (frames, mels) log-mel is stretched to (spec_size * freq_ratio, mels) and folded
    mlp_ratio: float = 4.0

    @property
    def width(self) -> int:
        """Width of the frame-level output tokens (768 for the published sizes)."""
        return self.embed_dim * 2 ** (len(self.depths) - 1)


@dataclass(frozen=True)
class AudioEncoderConfig:
    width: int = 128
    depth: int = 2
    heads: int = 4
    mlp_ratio: float = 4.0
    time_patch: int = 16  # frames per token of the patch embedding
    freq_patch: int = 64  # mel bands per token (= n_mels: one token per time step)
    kind: Literal["transformer", "htsat"] = "transformer"  # "htsat": the published audio tower (``htsat`` below)
    htsat: HTSATConfig = field(default_factory=HTSATConfig)


@dataclass(frozen=True)
class TextConfig:
    backbone: str = "minilm-l6"  # frozen pretrained encoder ("minilm-l6" ships in a package; "flan-t5" needs path)
    max_tokens: int = 48
    width: int = 384  # token-state width of the backbone
    path: str = ""  # local folder of a backbone that no package ships (FLAN-T5); nothing is downloaded
    export_tokens: int = 0  # fixed sequence length of the exported text tower; 0 = max_tokens


@dataclass(frozen=True)
class CodebookConfig:
    size: int = 1024  # M concepts (paper 16000)
    dim: int = 192  # d (paper 1024)
    # scores / sqrt(d) / temperature before sparsemax (public code: 1000 at M=16000). With unit-scale codes a
    # temperature of 1 lets sparsemax keep one or two codes: every sample lands on the same code and the gradient
    # through a one-code sparsemax is zero (measured: collapse). 30 keeps ~60-70 codes active at the start.
    temperature: float = 30.0
    head: Literal["codebook", "global"] = "codebook"  # "global": mean-pooled tokens (GeoCLAP/PSM-style baseline)


@dataclass(frozen=True)
class ModelConfig:
    image: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    audio: AudioEncoderConfig = field(default_factory=AudioEncoderConfig)
    text: TextConfig = field(default_factory=TextConfig)
    codebook: CodebookConfig = field(default_factory=CodebookConfig)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20  # the default budget: two cosine cycles, ~20 minutes on 2 idle CPU cores (~110 samples/s)
    batch_size: int = 128
    lr: float = 5e-4  # paper 5e-5 fine-tunes pretrained encoders; ours train from scratch
    weight_decay: float = 0.2
    betas: tuple[float, float] = (0.9, 0.98)
    restart_epochs: int = 10  # cosine annealing with warm restarts: T_0 in epochs (two cycles by default)
    warmup_steps: int = 50
    pseudo_alpha: float = 0.1
    logit_scale_init: float = 2.6592600369262695  # log(1/0.07)
    eval_every_epochs: int = 1
    seed: int = 0
    max_grad_norm: float = 1.0
    num_threads: int = 0  # 0 = leave torch's default


@dataclass(frozen=True)
class Sat2SoundConfig:
    name: str = "default"
    audio: AudioConfig = field(default_factory=AudioConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    world: WorldConfig = field(default_factory=WorldConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sat2SoundConfig:
        return from_dict(cls, data)


# ---------------------------------------------------------------------------------------------- serialisation


# --------------------------------------------------------------------------------------------------- presets


def _tiny() -> Sat2SoundConfig:
    return Sat2SoundConfig(
        name="tiny",
        audio=AudioConfig(sample_rate=8000, clip_seconds=2.0, n_fft=256, hop_length=128, n_mels=32,
                          f_min=50.0, f_max=4000.0),
        image=ImageConfig(image_size=32, patch_size=8),
        world=WorldConfig(n_samples=96, tile_px=160, shard_size=40, cell_deg=4.0),
        model=ModelConfig(
            image=ImageEncoderConfig(width=32, depth=1, heads=2, projector_hidden=48),
            fusion=FusionConfig(layers=1, heads=2, meta_hidden=16),
            audio=AudioEncoderConfig(width=32, depth=1, heads=2, time_patch=8, freq_patch=32),
            text=TextConfig(max_tokens=24),
            codebook=CodebookConfig(size=64, dim=32),
        ),
        train=TrainConfig(epochs=2, batch_size=16, lr=1e-3, warmup_steps=2, restart_epochs=2),
    )


def _default() -> Sat2SoundConfig:
    # the demo world plays real recordings where the installed packages have them (world.real_audio)
    return Sat2SoundConfig(name="default", world=WorldConfig(audio="real"))


def _paper() -> Sat2SoundConfig:
    return Sat2SoundConfig(
        name="paper",
        audio=AudioConfig(sample_rate=32000, clip_seconds=10.0, n_fft=1024, hop_length=320, n_mels=64,
                          f_min=50.0, f_max=14000.0),
        image=ImageConfig(image_size=224, patch_size=16),
        world=WorldConfig(tile_px=1500),
        model=ModelConfig(
            image=ImageEncoderConfig(width=768, depth=12, heads=12, projector_hidden=1024),
            fusion=FusionConfig(layers=3, heads=8, meta_hidden=64),
            audio=AudioEncoderConfig(width=768, depth=4, heads=12, time_patch=32, freq_patch=64),  # HTSAT-sized (~28M)
            text=TextConfig(backbone="minilm-l6", max_tokens=77),
            codebook=CodebookConfig(size=16000, dim=1024, temperature=1000.0),
        ),
        train=TrainConfig(epochs=20, batch_size=128, lr=5e-5, warmup_steps=500),
    )


# The six released checkpoints (``{bingmap,sentinel,SoundingEarth}_{nometa,withmeta}.ckpt``): the authors' exact
# architecture. sat type -> (our imagery column, metadata fields; SoundingEarth has no audio-source field).
PUBLISHED_SATS: dict[str, tuple[str, tuple[str, ...]]] = {
    "bingmap": ("bingmap", META_FIELDS),
    "sentinel": ("sentinel", META_FIELDS),
    "soundingearth": ("googleearth", tuple(f for f in META_FIELDS if f != "audio_source")),
}


def published_preset_name(sat: str, with_meta: bool) -> str:
    return f"published-{sat.lower()}-{'meta' if with_meta else 'nometa'}"


def _published_arch(base: Sat2SoundConfig, name: str, imagery: str, fields: tuple[str, ...], with_meta: bool,
                    htsat: HTSATConfig, fusion_heads: int, ffn: int) -> Sat2SoundConfig:
    """``base``'s sizes with the published model's architecture: HTSAT audio, FLAN-T5 text, post-norm fusion
    (FFN ``ffn``, none without metadata), the ViT's LayerNorm eps 1e-6, x-first GSD encoding, no codebook mask."""
    m = base.model
    return dataclasses.replace(
        base, name=name,
        image=dataclasses.replace(base.image, imagery=imagery),
        model=dataclasses.replace(
            m,
            image=dataclasses.replace(m.image, ln_eps=1e-6, pos_order="xy"),
            fusion=dataclasses.replace(m.fusion, use_metadata=with_meta, layers=m.fusion.layers if with_meta else 0,
                                       heads=fusion_heads, norm_first=False, ffn_hidden=ffn, mask_codebook=False,
                                       zero_padded=True, meta_fields=fields),
            audio=AudioEncoderConfig(width=htsat.width, heads=htsat.heads[-1], kind="htsat", htsat=htsat),
        ),
    )


def _published(sat: str, with_meta: bool) -> Sat2SoundConfig:
    imagery, fields = PUBLISHED_SATS[sat]
    paper = _paper()
    paper = dataclasses.replace(paper, model=dataclasses.replace(
        paper.model, text=TextConfig(backbone="flan-t5", max_tokens=512, width=1024, export_tokens=64)))
    return _published_arch(paper, published_preset_name(sat, with_meta), imagery, fields, with_meta,
                           HTSATConfig(), fusion_heads=8, ffn=2048)


def _published_tiny() -> Sat2SoundConfig:
    """The published architecture at seconds-fast sizes (tests, and imports of small fixtures)."""
    tiny = _tiny()
    base = dataclasses.replace(
        tiny, audio=AudioConfig(sample_rate=8000, clip_seconds=0.4, n_fft=128, hop_length=32, n_mels=32,
                                f_min=50.0, f_max=4000.0),
        model=dataclasses.replace(
            tiny.model, image=ImageEncoderConfig(width=32, depth=2, heads=2, projector_hidden=32),
            fusion=FusionConfig(layers=2, heads=2, meta_hidden=64),
            text=TextConfig(backbone="flan-t5", max_tokens=512, width=24, export_tokens=16),
            codebook=CodebookConfig(size=64, dim=32, temperature=1000.0)))
    htsat = HTSATConfig(embed_dim=8, depths=(2, 2, 2, 2), heads=(1, 2, 2, 4), window=4, patch=4, spec_size=64)
    return _published_arch(base, "published-tiny", "bingmap", META_FIELDS, True, htsat, fusion_heads=2, ffn=48)


PRESETS: dict[str, typing.Callable[[], Sat2SoundConfig]] = {"tiny": _tiny, "default": _default, "paper": _paper,
                                                             "published-tiny": _published_tiny}
for _sat in PUBLISHED_SATS:
    for _meta in (True, False):
        PRESETS[published_preset_name(_sat, _meta)] = lambda s=_sat, m=_meta: _published(s, m)


def get_preset(name: str) -> Sat2SoundConfig:
    """The named preset; an unknown name is a ValueError that lists the known ones."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}") from None


# ------------------------------------------------------------------------------------------ student presets
# Mobile students for `sat2sound distill` (compress/). A student keeps its teacher's codebook (size, dim,
# temperature), text settings, audio front end, imagery and zooms - the codebook and text query map are copied from
# the teacher and frozen, so the student embeds into the teacher's space - and shrinks the image and audio towers.


def _student_of(teacher: Sat2SoundConfig, name: str, image_size: int, image: ImageEncoderConfig,
                fusion_layers: int, audio: AudioEncoderConfig, train: TrainConfig,
                patch_size: int | None = None) -> Sat2SoundConfig:
    # flip_rotate off: distillation matches the teacher's embedding of the very view the student sees, unturned
    return dataclasses.replace(
        teacher,
        name=name,
        image=dataclasses.replace(teacher.image, image_size=image_size, flip_rotate=False,
                                  patch_size=teacher.image.patch_size if patch_size is None else patch_size),
        model=dataclasses.replace(teacher.model, image=image, audio=audio,
                                  fusion=dataclasses.replace(teacher.model.fusion, layers=fusion_layers)),
        train=train,
    )


def _student_tiny() -> Sat2SoundConfig:
    return _student_of(
        _tiny(), "student-tiny", 24,
        ImageEncoderConfig(width=16, depth=1, heads=2, projector_hidden=24), 0,
        AudioEncoderConfig(width=16, depth=1, heads=2, time_patch=8, freq_patch=32),
        TrainConfig(epochs=2, batch_size=16, lr=2e-3, warmup_steps=2, restart_epochs=2),
    )


def _student_default() -> Sat2SoundConfig:
    # 48 px / patch 8 (36 patches), a 2-block 96-wide ViT and no fusion layer (the metadata tokens meet the patch
    # tokens at the codebook's max-pool): a fusion layer is d x d wide whatever the student, and alone would cost
    # the 5x size target. Measured at batch 1, 1 thread, ORT: fp32 0.95 ms against the default teacher's 3.9 ms.
    return _student_of(
        _default(), "student-default", 48,
        ImageEncoderConfig(width=96, depth=2, heads=2, projector_hidden=128), 0,
        AudioEncoderConfig(width=64, depth=2, heads=2),
        TrainConfig(epochs=12, batch_size=128, lr=1e-3, weight_decay=0.05, warmup_steps=50), patch_size=8,
    )


def _student_paper() -> Sat2SoundConfig:
    # A MobileCLIP-S0-sized image tower for the paper-scale teacher (ViT-B/16 at 224 px).
    return _student_of(
        _paper(), "student-paper", 160,
        ImageEncoderConfig(width=384, depth=6, heads=6, projector_hidden=768), 1,
        AudioEncoderConfig(width=384, depth=3, heads=6, time_patch=32, freq_patch=64),
        TrainConfig(epochs=20, batch_size=128, lr=5e-4, weight_decay=0.05, warmup_steps=500),
    )


def _student_published(teacher: str) -> Sat2SoundConfig:
    # the paper student's towers (the tiny one's for published-tiny) under a published teacher: its FLAN-T5 text,
    # imagery and metadata fields
    sized = _student_tiny() if teacher == "published-tiny" else _student_paper()
    return _student_of(get_preset(teacher), f"student-{teacher}", sized.image.image_size, sized.model.image,
                       sized.model.fusion.layers if teacher == "published-tiny" else 1, sized.model.audio,
                       sized.train, patch_size=sized.image.patch_size)


# The one teacher -> student preset mapping: which teacher preset each student preset was sized against.
STUDENT_OF_TEACHER: dict[str, str] = {"tiny": "student-tiny", "default": "student-default", "paper": "student-paper"}
PRESETS.update({"student-tiny": _student_tiny, "student-default": _student_default, "student-paper": _student_paper})
for _teacher in [name for name in PRESETS if name.startswith("published-")]:
    STUDENT_OF_TEACHER[_teacher] = f"student-{_teacher}"
    PRESETS[f"student-{_teacher}"] = lambda t=_teacher: _student_published(t)


def student_preset_for(teacher_preset: str) -> str | None:
    """The student preset sized for a teacher preset (``student-default`` for ``default``), or None."""
    return STUDENT_OF_TEACHER.get(teacher_preset)


def teacher_preset_of(student_preset: str) -> str | None:
    """The teacher preset a student preset was sized against, or None for a name that is no student preset."""
    return next((t for t, s in STUDENT_OF_TEACHER.items() if s == student_preset), None)
