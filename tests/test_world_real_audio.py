"""The world built from real recordings: sources played from real clips where installed, synthesised elsewhere,
deterministic, recorded in world.json, and a clear fallback when the packages are missing."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest

from world import real_audio, recordings
from world.build import build_world
from world.sounds import render_scene

needs_packages = pytest.mark.skipif(not real_audio.installed().sources,
                                    reason="no real recordings installed (apt-get install megaglest-data "
                                           "openttd-opensfx)")


@needs_packages
def test_excerpts_are_real_clips_at_the_mix_level_and_deterministic():
    real = real_audio.installed()
    assert {"birdsong", "insects", "rain", "wind", "traffic"} <= set(real.sources)
    assert all(c.split == recordings.SOURCE_SPLIT for clips in real.by_source.values() for c in clips)
    for source in ("birdsong", "horns"):  # a long ambience loop, and a 0.7 s event that has to be looped
        a = real.excerpt(source, 40000, 8000, np.random.default_rng(3))
        b = real.excerpt(source, 40000, 8000, np.random.default_rng(3))
        assert a.shape == (40000,) and a.dtype == np.float32 and np.array_equal(a, b)
        assert 0.07 < float(np.sqrt(np.mean(a * a))) < 0.14  # RMS 0.1 within the +-2 dB gain
    one = real_audio.RealSources(clips=[real.by_source["birdsong"][0]])
    whole = recordings.decode_clip(one.by_source["birdsong"][0], 8000)
    x = one.excerpt("birdsong", 8000, 8000, np.random.default_rng(0))
    from scipy.signal import correlate

    dots = correlate(whole.astype(np.float64), x.astype(np.float64), mode="valid", method="fft")
    energy = np.convolve(whole.astype(np.float64) ** 2, np.ones(x.size), "valid")
    cos = dots / (np.sqrt(energy) * np.linalg.norm(x) + 1e-12)
    assert cos.max() > 0.9999  # the excerpt is a window of the recording, scaled


@needs_packages
def test_held_out_clips_are_never_world_material():
    held = {c.key for c in recordings.catalogue() if c.split == recordings.HELD_OUT_SPLIT}
    used = {c.key for clips in real_audio.installed().by_source.values() for c in clips}
    assert held and not held & used


def test_without_real_material_every_source_is_synthesised():
    empty = real_audio.RealSources(clips=[])
    assert empty.sources == () and not empty.has("birdsong")
    a = render_scene(["birdsong", "wind"], 1.0, 8000, np.random.default_rng(5), [0.0, -6.0], real=empty)
    b = render_scene(["birdsong", "wind"], 1.0, 8000, np.random.default_rng(5), [0.0, -6.0])
    assert np.array_equal(a, b)


@needs_packages
def test_a_real_audio_world_records_its_material_and_differs_only_in_sound(tiny_cfg, tmp_path, caplog):
    cfg = dataclasses.replace(tiny_cfg, world=dataclasses.replace(tiny_cfg.world, n_samples=12, audio="real"))
    with caplog.at_level(logging.INFO, logger="world"):
        real = build_world(cfg, tmp_path / "real", workers=1, progress=False)
    assert "real recordings play" in caplog.text
    synth = build_world(dataclasses.replace(cfg, world=dataclasses.replace(cfg.world, audio="synthetic")),
                        tmp_path / "synth", workers=1, progress=False)
    meta_r, meta_s = (json.loads((p / "world.json").read_text()) for p in (real, synth))
    record = meta_r["build_key"]["real_audio"]
    assert set(record["real_sources"]) == set(real_audio.installed().sources)
    assert "real_audio" not in meta_s["build_key"] and meta_r["fingerprint"] != meta_s["fingerprint"]
    import pyarrow.parquet as pq

    rows_r = pq.read_table(real / "data" / sorted(meta_r["shards"])[0]).to_pylist()
    rows_s = pq.read_table(synth / "data" / sorted(meta_s["shards"])[0]).to_pylist()
    for r, s in zip(rows_r, rows_s):  # same places, tiles and recorded sources; only the sound differs
        assert r["gt_present"] == s["gt_present"] and r["bingmap_image"] == s["bingmap_image"]
    assert any(r["audio"]["bytes"] != s["audio"]["bytes"] for r, s in zip(rows_r, rows_s))
    again = build_world(cfg, tmp_path / "real2", workers=2, progress=False)
    assert json.loads((again / "world.json").read_text())["fingerprint"] == meta_r["fingerprint"]


def test_missing_packages_fall_back_to_synthesis_with_a_clear_message(tiny_cfg, tmp_path, monkeypatch, caplog):
    nothing = real_audio.RealSources(clips=[])
    nothing.missing_packages = [recordings.MEGAGLEST, recordings.OPENSFX]
    monkeypatch.setattr(real_audio, "installed", lambda: nothing)
    cfg = dataclasses.replace(tiny_cfg, world=dataclasses.replace(tiny_cfg.world, n_samples=6, audio="real"))
    with caplog.at_level(logging.INFO, logger="world"):
        out = build_world(cfg, tmp_path / "w", workers=1, progress=False)
    assert "megaglest-data, openttd-opensfx not installed (apt-get install" in caplog.text
    assert json.loads((out / "world.json").read_text())["build_key"]["real_audio"]["real_sources"] == []


@needs_packages
def test_the_gallery_renders_real_recordings_of_the_sources_a_caption_names():
    from gallery.captions import CaptionRecord, caption_id
    from gallery.errors import GalleryError
    from gallery.renderers import ProceduralRenderer, get_renderer

    text = "birds chirping and wind blowing in the forest"
    record = CaptionRecord(id=caption_id(text), caption=text)
    real = get_renderer("procedural", seconds=2.0, sample_rate=8000, audio="real").render(record)
    again = ProceduralRenderer(2.0, 8000, "real").render(record)
    synth = ProceduralRenderer(2.0, 8000).render(record)
    assert real.sources == synth.sources == ["birdsong", "wind"]
    assert np.array_equal(real.wave, again.wave) and not np.array_equal(real.wave, synth.wave)
    with pytest.raises(GalleryError, match="unknown audio"):
        ProceduralRenderer(2.0, 8000, "mp3")
