"""The spatial mixer on its own (no bundle, no Kivy): ear cues, distance law, smooth ramps, crossfades, outputs,
and the compass maths. Checked on rendered stereo, not on calls."""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest
from scipy import signal

from benchmarks.ar_audio import ild_itd
from contracts.errors import ConfigError
from mobile_app.audio_out import AudioTrackOutput, BufferOutput, open_output, to_pcm16
from mobile_app.spatial import Mixer, distance_gain, ear_cues, lagrange3, woodworth_itd_s, wrap_deg
from mobile_app.surround import bearing_deg, check_heading, offset_m

SR = 8000


def _noise(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    b, a = signal.butter(4, 0.5)
    x = signal.lfilter(b, a, np.random.default_rng(seed).standard_normal(int(seconds * SR)))
    return (0.3 * x / x.std()).astype(np.float32)


def test_cues_pan_with_equal_power_and_lead_on_the_near_ear():
    ahead, right, left, behind = ear_cues(0), ear_cues(90), ear_cues(-90), ear_cues(180)
    assert ahead.left == pytest.approx(ahead.right) and ahead.itd_s == 0
    assert right.left**2 + right.right**2 == pytest.approx(1.0)  # equal power
    assert right.ild_db == pytest.approx(20 * math.log10(math.tan(3 * math.pi / 8)))  # 7.66 dB at width 0.5
    assert right.itd_s == pytest.approx(0.0875 / 343 * (math.pi / 2 + 1), rel=1e-6)  # Woodworth, 0.656 ms
    assert left.ild_db == pytest.approx(-right.ild_db) and left.itd_s == pytest.approx(-right.itd_s)
    assert behind.left == pytest.approx(behind.right) and behind.left < ahead.left  # the rear shadow
    assert woodworth_itd_s(30) == pytest.approx(woodworth_itd_s(150))  # front/back share the lateral angle
    assert wrap_deg(270) == -90 and wrap_deg(-190) == 170 and wrap_deg(180) == 180


def test_distance_gain_fades_in_and_out_and_the_centre_stays_loudest():
    s = 180.0
    assert distance_gain(0.0, s) == 0 and distance_gain(0.5 * s, s) == 0  # the listener's own place: the centre
    assert distance_gain(s, s) == pytest.approx(0.5)  # -6 dB one cell away
    assert distance_gain(math.sqrt(2) * s, s) == pytest.approx(0.5 / math.sqrt(2), rel=0.02)
    assert distance_gain(2 * s, s) == 0 and distance_gain(3 * s, s) == 0
    d = np.linspace(0, 2.5 * s, 500)
    g = np.array([distance_gain(x, s) for x in d])
    assert np.all(np.abs(np.diff(g)) < 0.02)  # continuous: walking never makes a place jump in or out
    loudest_ear = max(max(ear_cues(a).left, ear_cues(a).right) for a in range(-180, 180, 5)) * g.max()
    assert loudest_ear < ear_cues(0).left * 0.75  # no neighbour in either ear is as loud as the centre


@pytest.mark.parametrize("azimuth", [90, 60, 30, -45, -90, 135])
def test_mixed_stereo_carries_the_promised_level_and_time_differences(azimuth):
    m = Mixer(SR)
    m.add("src", _noise(), ear_cues(azimuth), 0.5)
    ild, itd_ms = ild_itd(m.render(SR), SR)
    cues = ear_cues(azimuth)
    assert ild == pytest.approx(cues.ild_db, abs=0.25)
    assert itd_ms == pytest.approx(cues.itd_s * 1e3, abs=0.01)


def test_fractional_delay_interpolation_is_exact_on_samples_and_smooth_between():
    assert lagrange3(0.0) == pytest.approx((0, 1, 0, 0))
    assert sum(lagrange3(0.37)) == pytest.approx(1.0)
    x = np.sin(np.linspace(0, 8 * np.pi, SR)).astype(np.float32)  # a slow sine: interpolation must follow it
    m = Mixer(SR)
    m.add("s", x, ear_cues(90), 1.0)
    y = m.render(SR // 2)
    d = ear_cues(90).delay_left_s * SR
    t = np.arange(100, 400)
    want = np.sin((t - d) * 8 * np.pi / (SR - 1)) * ear_cues(90).left * m.master
    assert np.abs(y[100:400, 0] - want).max() < 1e-3


def test_turning_ramps_the_gains_without_a_click():
    tone = (0.5 * np.sin(2 * np.pi * 200 * np.arange(SR) / SR)).astype(np.float32)
    m = Mixer(SR, ramp_s=0.05)
    m.add("s", tone, ear_cues(90), 1.0)
    before = m.render(SR // 4)
    m.set_target("s", ear_cues(-90), 1.0)  # the head turns half a circle at once
    during = m.render(int(0.05 * SR))
    after = m.render(SR // 4)
    y = np.concatenate([before, during, after])
    # a click is a sample-to-sample jump far beyond what the 200 Hz tone itself does
    steepest = np.abs(np.diff(tone)).max() * m.master
    assert np.abs(np.diff(y, axis=0)).max() <= steepest * 1.05
    rms = lambda z: np.sqrt((z.astype(np.float64) ** 2).mean(axis=0))  # noqa: E731
    assert rms(before)[1] > 2 * rms(before)[0] and rms(after)[0] > 2 * rms(after)[1]  # right ... then left
    ramp_gains = np.abs(during[:, 1])
    assert ramp_gains[: len(ramp_gains) // 4].max() > ramp_gains[-len(ramp_gains) // 4:].max()  # a ramp, not a step


def test_crossfade_is_equal_power_and_the_old_voice_leaves():
    m = Mixer(SR)
    m.add("c", _noise(seed=1), ear_cues(0), 1.0)
    m.render(SR // 10)
    m.crossfade("c", _noise(seed=2), ear_cues(0), 1.0, fade_s=0.5)
    assert len(m.voice_keys()) == 2
    levels = []
    for _ in range(5):
        old = next(v for k, v in m.voices.items() if k != "c")
        levels.append((m.voices["c"].level, old.level))
        m.render(SR // 10)
    assert all(a**2 + b**2 == pytest.approx(1.0, abs=1e-6) for a, b in levels)
    m.render(SR // 10)
    assert m.voice_keys() == ["c"] and m.voices["c"].level == pytest.approx(1.0)
    m.fade_out("c", 0.05)
    m.render(SR // 10)
    assert m.voice_keys() == [] and np.abs(m.render(100)).max() == 0


def test_bad_headings_are_refused_in_one_line():
    assert check_heading(360) == 0 and check_heading("90") == 90 and check_heading(0.5) == 0.5
    for bad in (float("nan"), float("inf"), -1, 360.5, "east", None):
        with pytest.raises(ConfigError, match="between 0 and 360"):
            check_heading(bad)


def test_geometry_helpers():
    e, n = offset_m((47.0, 9.0), (47.0, 9.001))
    assert n == pytest.approx(0) and e == pytest.approx(0.001 * 111319.49 * math.cos(math.radians(47)), rel=1e-6)
    assert bearing_deg(1, 0) == 90 and bearing_deg(0, -1) == 180 and bearing_deg(-1, 0) == 270


def test_compass_maths_flat_and_tilted():
    pytest.importorskip("kivy")
    from mobile_app import kivy_env

    kivy_env.configure(headless=True)
    from mobile_app.heading import compass_word, heading_from_field, smooth_heading

    # field points north and down (northern hemisphere); device axes x right, y top, z out of the screen
    assert heading_from_field(0, 20, -40) == pytest.approx(0)  # flat, top to the north
    assert heading_from_field(-20, 0, -40) == pytest.approx(90)  # flat, top to the east
    assert heading_from_field(0, 20, -40, gravity=(0, 0, 9.8)) == pytest.approx(0, abs=1e-6)
    assert heading_from_field(-20, 0, -40, gravity=(0, 0, 9.8)) == pytest.approx(90, abs=1e-6)
    # held upright, the listener facing west: y up, the screen's back (-z) west, so x points north
    assert heading_from_field(20, -40, 0, gravity=(0, 9.8, 0)) == pytest.approx(270, abs=1e-6)
    # tilted 30 degrees towards the listener, top to the east: still east
    tilt = math.radians(30)
    g = (0, 9.8 * math.sin(tilt), 9.8 * math.cos(tilt))
    down = (0, -40 * math.sin(tilt), -40 * math.cos(tilt))  # the field's down part in device axes (-gravity)
    assert heading_from_field(-20 + down[0], down[1], down[2], gravity=g) == pytest.approx(90, abs=1e-6)
    assert heading_from_field(float("nan"), 1, 1) is None and heading_from_field(0, 0, 5) is None
    assert smooth_heading(350, 10, 0.5) == pytest.approx(0) and smooth_heading(None, 370) == 10
    assert compass_word(95) == "E" and compass_word(350) == "N" and compass_word(225) == "SW"


def test_buffer_output_renders_in_step_with_the_clock_and_keeps_the_audio():
    m = Mixer(SR)
    m.add("s", _noise(), ear_cues(45), 0.5)
    out = BufferOutput(m.render, SR, keep_s=0.5)
    assert out.pump() == 0  # not started
    out.write(SR)  # a second rendered at once: only the last half second is kept
    assert out.rendered == SR and len(out.audio()) == SR // 2 and out.audio(0.1).shape == (SR // 10, 2)
    assert out.stats()["rms_right"] > out.stats()["rms_left"] > 0
    assert isinstance(open_output(m.render, SR, headless=True), BufferOutput)
    pcm = np.frombuffer(to_pcm16(np.array([[1.5, -1.0], [0.5, 0.0]], np.float32)), "<i2")
    assert pcm.tolist() == [32767, -32767, 16383, 0]


def test_audiotrack_output_streams_pcm_blocks(monkeypatch):
    """On Android the mix goes to an AudioTrack through pyjnius (faked here: no phone in CI)."""
    written: list[int] = []

    class Track:
        MODE_STREAM = 1

        @staticmethod
        def getMinBufferSize(sr, ch, enc):  # noqa: N802  (the Java name)
            return 4096

        def __init__(self, stream, sr, ch, enc, size, mode):
            self.args = (sr, size, mode)

        def play(self):
            pass

        def write(self, data, offset, n):
            written.append(n)
            return n

        def stop(self):
            pass

        def release(self):
            pass

    consts = types.SimpleNamespace(CHANNEL_OUT_STEREO=12, ENCODING_PCM_16BIT=2, STREAM_MUSIC=3)
    fake = types.ModuleType("jnius")
    fake.autoclass = lambda name: Track if name.endswith("AudioTrack") else consts
    monkeypatch.setitem(sys.modules, "jnius", fake)
    m = Mixer(SR)
    m.add("s", _noise(), ear_cues(0), 0.5)
    out = AudioTrackOutput(m.render, SR, block_s=0.02)
    assert out.track.args[0] == SR and out.track.args[2] == Track.MODE_STREAM
    out.start()
    import time

    deadline = time.monotonic() + 5
    while len(written) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    out.stop()
    assert len(written) >= 3 and written[0] == int(0.02 * SR) * 4  # 16-bit stereo bytes per block
