"""Audio front end: shapes per preset, the numpy/torch twins, the torch.stft reference, the Slaney filterbank,
decoding (formats, resampling), cropping, and every bad audio input."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import torch
from data_fixtures import audio_bytes, tone

from contracts.errors import ConfigError, DataError
from core.config import AudioConfig, get_preset
from core.data.audio_frontend import LogMel, crop_or_pad, load_audio, load_clip, log_mel_numpy, mel_filterbank
from core.data.logmel_numpy import hz_to_mel, mel_to_hz

torch.set_num_threads(1)


def _signals(cfg: AudioConfig) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    n = cfg.n_samples
    t = np.arange(n) / cfg.sample_rate
    return {
        "noise": 0.1 * rng.standard_normal(n),
        "tone": 0.5 * np.sin(2 * np.pi * 440 * t),
        "chord": (0.3 * np.sin(2 * np.pi * 1000 * t) + 0.2 * np.sin(2 * np.pi * 3100 * t)
                  + 1e-3 * rng.standard_normal(n)),
        "half_silent": np.concatenate([0.1 * rng.standard_normal(n // 2), np.zeros(n - n // 2)]),
    }


def _stft_reference(wave: np.ndarray, cfg: AudioConfig, dtype=torch.float64) -> np.ndarray:
    """Independent reference: torch.stft(center=True, reflect) power -> the same filterbank -> dB."""
    x = torch.from_numpy(np.asarray(wave)).to(dtype)
    spec = torch.stft(x, cfg.n_fft, cfg.hop_length, window=torch.hann_window(cfg.n_fft, dtype=dtype), center=True,
                      pad_mode="reflect", return_complex=True)
    mel = (spec.abs() ** 2).transpose(-1, -2) @ torch.from_numpy(mel_filterbank(cfg).T.copy()).to(dtype)
    return (10 * torch.log10(torch.clamp(mel, min=cfg.amin))).numpy()


@pytest.mark.parametrize(("preset", "shape"), [("tiny", (126, 32)), ("default", (313, 64)), ("paper", (1001, 64))])
def test_logmel_shape_per_preset(preset, shape):
    cfg = get_preset(preset).audio
    wave = np.zeros(cfg.n_samples, dtype=np.float32)
    assert cfg.n_frames == shape[0]
    assert log_mel_numpy(wave, cfg).shape == shape
    assert LogMel(cfg)(torch.zeros(2, cfg.n_samples)).shape == (2, *shape)
    # silence is the amin floor: 10*log10(1e-10) = -100 dB
    assert np.allclose(log_mel_numpy(wave, cfg), -100.0)


def test_paper_preset_numbers():
    cfg = get_preset("paper").audio
    assert (cfg.sample_rate, cfg.n_samples, cfg.n_fft, cfg.hop_length, cfg.n_mels) == (32000, 320000, 1024, 320, 64)
    assert (cfg.f_min, cfg.f_max, cfg.amin) == (50.0, 14000.0, 1e-10)


@pytest.mark.parametrize("preset", ["tiny", "default", "paper"])
def test_numpy_twin_matches_stft_reference(preset):
    cfg = get_preset(preset).audio
    for name, wave in _signals(cfg).items():
        ours = log_mel_numpy(wave, cfg)
        ref = _stft_reference(wave, cfg)
        assert np.abs(ours - ref).max() < 1e-4, name  # float32 output rounding only


@pytest.mark.parametrize("preset", ["tiny", "default"])
def test_torch_twin_matches_numpy_twin(preset):
    cfg = get_preset(preset).audio
    module = LogMel(cfg)
    for name, wave in _signals(cfg).items():
        wave = wave.astype(np.float32)
        want = log_mel_numpy(wave, cfg)
        got = module(torch.from_numpy(wave)[None])[0].numpy()
        diff = np.abs(got - want)
        if name in ("noise", "half_silent"):
            assert diff.max() < 1e-4, name
        else:
            # Tonal: 1e-4 dB in every band within 40 dB of its frame's peak; far below a pure tone float32
            # rounding is the floor (torch.stft in float32 is no closer), still well under 0.1 dB.
            near = want > want.max(axis=1, keepdims=True) - 40
            assert diff[near].max() < 1e-4, name
            assert diff.max() < 0.1, name
            stft32 = _stft_reference(wave, cfg, torch.float32)
            assert diff.max() < 3 * np.abs(stft32 - want).max() + 1e-4, name
    # In float64 the conv-DFT module agrees everywhere.
    module64 = LogMel(cfg, dtype=torch.float64)
    for name, wave in _signals(cfg).items():
        got = module64(torch.from_numpy(wave)[None])[0].numpy()
        assert np.abs(got - log_mel_numpy(wave, cfg)).max() < 1e-4, name


def test_torch_twin_paper_batch_matches_numpy():
    cfg = get_preset("paper").audio
    waves = np.stack(list(_signals(cfg).values())[:2]).astype(np.float32)
    got = LogMel(cfg)(torch.from_numpy(waves)).numpy()
    want = log_mel_numpy(waves, cfg)
    assert got.shape == want.shape == (2, 1001, 64)
    near = want > want.max(axis=2, keepdims=True) - 40
    assert np.abs(got - want)[near].max() < 1e-4


def test_logmel_module_has_no_stft_and_exports_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    cfg = get_preset("tiny").audio
    module = LogMel(cfg).eval()
    assert not list(module.state_dict())  # kernels and mel matrix are rebuilt from the config, not checkpointed
    wave = torch.randn(2, cfg.n_samples) * 0.1
    path = tmp_path / "logmel.onnx"
    torch.onnx.export(module, (wave,), str(path), dynamo=True, external_data=False,
                      dynamic_shapes={"wave": {0: torch.export.Dim("batch")}})
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert not ops & {"STFT", "DFT"}, ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: wave.numpy()[:1]})[0]
    assert out.shape == (1, cfg.n_frames, cfg.n_mels)
    assert np.abs(out - log_mel_numpy(wave.numpy()[:1], cfg)).max() < 1e-3


def test_slaney_mel_scale_points():
    assert float(hz_to_mel(1000.0)) == pytest.approx(15.0)
    assert float(hz_to_mel(200.0)) == pytest.approx(3.0)  # linear part: 200/3 Hz per mel
    assert float(hz_to_mel(6400.0)) == pytest.approx(15.0 + 27.0)  # 27 mels per factor 6.4 above 1 kHz
    hz = np.array([0.0, 50.0, 999.0, 1000.0, 4000.0, 14000.0])
    assert np.allclose(mel_to_hz(hz_to_mel(hz)), hz)


@pytest.mark.parametrize("preset", ["tiny", "default", "paper"])
def test_mel_filterbank_properties(preset):
    cfg = get_preset(preset).audio
    fb = mel_filterbank(cfg)
    assert fb.shape == (cfg.n_mels, cfg.n_fft // 2 + 1)
    assert (fb >= 0).all()
    assert (fb.max(axis=1) > 0).all()
    peaks = fb.argmax(axis=1)
    assert (np.diff(peaks) >= 0).all() and peaks[-1] > peaks[0]
    freqs = np.linspace(0, cfg.sample_rate / 2, cfg.n_fft // 2 + 1)
    # nothing outside [f_min, f_max]
    assert fb[:, freqs < cfg.f_min].sum() == 0 and fb[:, freqs > cfg.f_max].sum() == 0
    # Slaney norm: each triangle has unit area in Hz; bands wide enough to be sampled well integrate to ~1
    area = fb.sum(axis=1) * (cfg.sample_rate / cfg.n_fft)
    assert np.allclose(area[cfg.n_mels // 2:], 1.0, atol=0.02)
    # Slaney norm makes peak height 2/(bandwidth): wider (higher) bands have lower peaks
    assert fb[-1].max() < fb[cfg.n_mels // 2].max()


def test_bad_audio_config_is_config_error():
    with pytest.raises(ConfigError, match="f_max"):
        mel_filterbank(AudioConfig(sample_rate=8000, f_max=6000.0))
    with pytest.raises(ConfigError, match="too short"):
        LogMel(AudioConfig(sample_rate=8000, clip_seconds=0.01, n_fft=512, f_max=4000.0))


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG", "MP3"])
def test_load_audio_formats_and_resampling(fmt, tmp_path):
    cfg = get_preset("tiny").audio  # 8 kHz
    wave = tone(1, 16000, 1.0)
    data = audio_bytes(wave, 16000, fmt)
    got = load_audio(data, cfg)
    assert got.dtype == np.float32 and got.ndim == 1
    assert abs(got.shape[0] - 8000) <= 1200  # MP3 adds encoder delay/padding
    path = tmp_path / f"clip.{fmt.lower()}"
    path.write_bytes(data)
    assert np.array_equal(load_audio(path, cfg), got)
    assert np.array_equal(load_audio(str(path), cfg), got)
    # the 350 Hz tone survives: the strongest mel band is the one around 350 Hz
    mel = log_mel_numpy(crop_or_pad(got, cfg.n_samples), cfg)
    centres = mel_to_hz(np.linspace(hz_to_mel(cfg.f_min), hz_to_mel(cfg.f_max), cfg.n_mels + 2))[1:-1]
    assert abs(centres[mel[:40].mean(axis=0).argmax()] - 350) < 80


def test_load_audio_stereo_is_averaged_to_mono():
    cfg = get_preset("tiny").audio
    left = np.full(8000, 0.5, dtype=np.float32)
    buf = io.BytesIO()
    sf.write(buf, np.stack([left, -0.25 * np.ones(8000, np.float32)], axis=1), 8000, format="WAV", subtype="FLOAT")
    got = load_audio(buf.getvalue(), cfg)
    assert got.shape == (8000,) and np.allclose(got, 0.125)


def test_crop_or_pad():
    wave = np.arange(10, dtype=np.float32)
    assert np.array_equal(crop_or_pad(wave, 4), [3, 4, 5, 6])  # centre
    padded = crop_or_pad(wave, 13)
    assert np.array_equal(padded[:10], wave) and np.array_equal(padded[10:], [0, 0, 0])
    starts = {int(crop_or_pad(wave, 4, np.random.default_rng(s))[0]) for s in range(50)}
    assert starts == set(range(7))  # every window position is drawn
    a = crop_or_pad(wave, 4, np.random.default_rng(3))
    assert np.array_equal(a, crop_or_pad(wave, 4, np.random.default_rng(3)))


def test_load_clip_windows_long_files_and_pads_short_ones():
    cfg = get_preset("tiny").audio  # 2 s at 8 kHz
    long = np.linspace(-1, 1, 8000 * 6, dtype=np.float32)  # a ramp: a window's position is its first value
    data = audio_bytes(long, 8000, "WAV")
    centre = load_clip(data, cfg)
    assert centre.shape == (cfg.n_samples,)
    assert np.allclose(centre, crop_or_pad(long, cfg.n_samples), atol=1e-4)
    firsts = {round(float(load_clip(data, cfg, np.random.default_rng(s))[0]), 2) for s in range(20)}
    assert len(firsts) > 10  # random windows
    short = load_clip(audio_bytes(long[:4000], 8000, "WAV"), cfg)
    assert short.shape == (cfg.n_samples,) and np.all(short[4000:] == 0)
    resampled = load_clip(audio_bytes(tone(2, 44100, 5.0), 44100, "FLAC"), cfg)
    assert resampled.shape == (cfg.n_samples,)


def test_bad_audio_raises_data_error_naming_file_and_field(tmp_path):
    cfg = get_preset("tiny").audio
    with pytest.raises(DataError, match=r"cannot decode audio.*file shard-1.parquet.*sample s7.*field 'audio'"):
        load_audio(b"this is not audio at all" * 20, cfg, name_for_errors="shard-1.parquet", sample="s7")
    with pytest.raises(DataError, match=r"empty.*field 'audio'"):
        load_clip(b"", cfg, name_for_errors="cell", sample="s8")
    missing = tmp_path / "nowhere.ogg"
    with pytest.raises(DataError, match=r"not found.*nowhere\.ogg.*field 'audio'"):
        load_audio(missing, cfg)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.wav"):
        load_clip(empty, cfg)
    truncated = tmp_path / "trunc.flac"
    truncated.write_bytes(audio_bytes(tone(0, 8000, 1.0), 8000, "FLAC")[:30])
    with pytest.raises(DataError, match=r"trunc\.flac"):
        load_audio(truncated, cfg)
    silent_header = io.BytesIO()
    sf.write(silent_header, np.zeros(0, np.float32), 8000, format="WAV")
    with pytest.raises(DataError, match="no samples"):
        load_audio(silent_header.getvalue(), cfg, name_for_errors="zero.wav")
