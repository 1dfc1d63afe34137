"""The synthesiser of every sound source: ``SYNTHS[name](n, sample_rate, rng)`` -> float32 mono of n samples.

Each source is built from the acoustic ingredients that make the real thing recognisable (FM chirps for birds,
pulse-gated carriers for crickets, lowpass noise with gust envelopes for wind, inharmonic decaying partials for
bells, pulse trains through formant filters for voices and animals ...), randomised per event from the rng, so
two clips of the same source differ while the sources stay apart in spectrum and rhythm. Levels are left to the
caller (world.sounds normalises and mixes them).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import signal

from world.audio_blocks import (
    add_event,
    bandpass,
    fmax,
    gate_env,
    lowpass,
    onsets,
    pulses,
    shaped_noise,
    smooth_env,
    tone,
    white_noise,
    window,
)
from world.sources import SOURCES


def _birdsong(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n, np.float32)
    for _ in range(rng.integers(1, 4)):
        base = min(rng.uniform(2200, 5200), fmax(sr) * 0.8)
        syl = rng.uniform(0.04, 0.14)
        kind = rng.integers(0, 3)  # 0 down-sweep, 1 up-sweep, 2 trill
        gain = rng.uniform(0.4, 1.0)
        for start in onsets(n, sr, rng, rng.uniform(0.4, 1.2)):
            t0 = start
            for _ in range(rng.integers(3, 10)):
                m = int(syl * sr * rng.uniform(0.7, 1.3))
                u = np.linspace(0, 1, m)
                span = base * rng.uniform(0.2, 0.5)
                if kind == 0:
                    f = base + span * (1 - u)
                elif kind == 1:
                    f = base - span * (1 - u)
                else:
                    f = base + 0.5 * span * np.sin(2 * np.pi * rng.uniform(25, 45) * u * syl)
                f = np.minimum(f, fmax(sr))
                ev = tone(f, m, sr) + 0.2 * tone(np.minimum(2 * f, fmax(sr)), m, sr)
                add_event(out, gain * ev * np.sin(np.pi * u).astype(np.float32) ** 2, t0)
                t0 += m + int(rng.uniform(0.02, 0.08) * sr)
    return out


def _insects(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n, np.float32)
    if rng.random() < 0.6:  # crickets: pulse-gated carrier in chirps
        for _ in range(rng.integers(2, 5)):
            carrier = min(rng.uniform(3500, 5500), fmax(sr) * 0.9)
            pr, cr, ph1, ph2, thr = (rng.uniform(25, 50), rng.uniform(1.0, 3.5), rng.uniform(0, 6), rng.uniform(0, 6),
                                     rng.uniform(-0.2, 0.5))

            def gate(t, pr=pr, cr=cr, ph1=ph1, ph2=ph2, thr=thr):
                return (np.sin(2 * np.pi * pr * t + ph1) > 0.2) & (np.sin(2 * np.pi * cr * t + ph2) > thr)

            out += rng.uniform(0.3, 1.0) * gate_env(n, sr, gate) * tone(carrier, n, sr, rng.uniform(0, 6))
    else:  # cicadas: a dense buzz, slowly swelling
        centre = min(rng.uniform(4000, 6500), fmax(sr) * 0.85)
        buzz = shaped_noise(n, sr, rng, centre * 0.8, centre * 1.15)
        am = 0.6 + 0.4 * tone(rng.uniform(80, 160), n, sr)
        out = buzz * am * smooth_env(n, sr, rng, 0.5, 0.7)
    return out


def _wind(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    base = shaped_noise(n, sr, rng, 20.0, rng.uniform(250, 700), tilt=-6.0)
    return base * smooth_env(n, sr, rng, rng.uniform(0.3, 0.8), 0.85, 0.08)


def _leaves(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    hiss = shaped_noise(n, sr, rng, 1800.0, 7000.0)
    crackle = np.zeros(n, np.float32)
    crackle[rng.integers(0, n, rng.poisson(rng.uniform(0.002, 0.01) * n))] = 1.0
    crackle = lowpass(crackle, sr, 150.0)
    crackle /= crackle.max() + 1e-9
    gusts = smooth_env(n, sr, rng, rng.uniform(0.4, 1.0), 0.9, 0.05)
    return hiss * (0.3 + crackle) * gusts


def _surf(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    body = shaped_noise(n, sr, rng, 60.0, rng.uniform(700, 1400), tilt=-3.0)
    fizz = shaped_noise(n, sr, rng, 1500.0, 6000.0)
    env = np.zeros(n, np.float32)
    period = rng.uniform(4.0, 9.0)
    t = rng.uniform(-period, 0.0)
    while t < n / sr:
        rise, decay = rng.uniform(0.8, 1.8), rng.uniform(2.0, 4.0)
        m = int((rise + decay) * sr)
        u = np.arange(m) / sr
        wave = np.where(u < rise, (u / rise) ** 2, np.exp(-(u - rise) / (decay / 3)))
        add_event(env, (wave * rng.uniform(0.6, 1.0)).astype(np.float32), int(t * sr))
        t += period * rng.uniform(0.8, 1.2)
    return (body + 0.35 * fizz) * (0.15 + env)


def _stream(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    out = 0.5 * shaped_noise(n, sr, rng, 300.0, 3000.0)
    for start in onsets(n, sr, rng, rng.uniform(25, 60)):
        m = int(rng.uniform(0.006, 0.02) * sr)
        u = np.arange(m) / sr
        f0 = min(rng.uniform(400, 2200), fmax(sr))
        f = np.minimum(f0 * (1 + 8 * u), fmax(sr))
        add_event(out, (rng.uniform(0.5, 2.0) * np.exp(-u * rng.uniform(150, 400)) * tone(f, m, sr)), start)
    return out


def _rain(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    hiss = shaped_noise(n, sr, rng, 400.0, 9000.0, tilt=-1.5)
    drops = np.zeros(n, np.float32)
    count = rng.poisson(rng.uniform(0.004, 0.02) * n)
    drops[rng.integers(0, n, count)] = rng.uniform(0.2, 1.0, count).astype(np.float32)
    kernel_n = max(int(0.004 * sr), 4)
    kernel = (rng.standard_normal(kernel_n) * np.exp(-np.arange(kernel_n) / (kernel_n / 4))).astype(np.float32)
    ticks = signal.fftconvolve(drops, kernel)[:n].astype(np.float32)
    ticks = bandpass(ticks, sr, 1500.0, 8000.0)
    ticks /= np.sqrt(np.mean(ticks ** 2)) + 1e-9
    return 0.6 * hiss + 0.8 * ticks


def _traffic(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sr
    rumble = shaped_noise(n, sr, rng, 30.0, 400.0, tilt=-3.0)
    tyres = shaped_noise(n, sr, rng, 400.0, 2500.0)
    env = np.full(n, rng.uniform(0.15, 0.35), np.float32)
    for _ in range(rng.integers(2, 7)):
        centre, width = rng.uniform(-1.0, n / sr + 1.0), rng.uniform(0.8, 2.5)
        env += rng.uniform(0.5, 1.2) * np.exp(-0.5 * ((t - centre) / width) ** 2).astype(np.float32)
    engine = lowpass(pulses(np.full(n, rng.uniform(30, 60)), sr), sr, 300.0)
    engine /= np.sqrt(np.mean(engine ** 2)) + 1e-9
    return env * (rumble + 0.6 * tyres + 0.3 * engine)


def _horns(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n, np.float32)
    f1 = rng.uniform(350, 520)
    for start in onsets(n, sr, rng, rng.uniform(0.3, 0.8), min_gap=0.4):
        m = int(rng.uniform(0.2, 0.9) * sr)
        ev = np.zeros(m, np.float32)
        for f in (f1, f1 * 1.26):
            for k in (1, 3, 5, 7):
                if k * f < fmax(sr):
                    ev += tone(k * f, m, sr) / k
        add_event(out, ev * window(m, 0.03, 0.08), start)
    return out


def _siren(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sr
    centre, dev = rng.uniform(750, 1100), rng.uniform(250, 450)
    period = rng.uniform(3.0, 6.0) if rng.random() < 0.6 else rng.uniform(0.2, 0.35)
    f = centre + dev * np.sin(2 * np.pi * t / period + rng.uniform(0, 6))
    out = np.zeros(n, np.float32)
    for k, a in ((1, 1.0), (2, 0.45), (3, 0.25)):
        out += a * tone(np.minimum(k * f, fmax(sr)), n, sr)
    approach = np.linspace(rng.uniform(0.2, 1.0), rng.uniform(0.2, 1.0), n).astype(np.float32)
    return out * approach


def _train(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    rumble = shaped_noise(n, sr, rng, 25.0, 260.0, tilt=-2.0)
    clacks = np.zeros(n, np.float32)
    period = rng.uniform(0.5, 1.1)
    m = int(0.03 * sr)
    click = (np.exp(-np.arange(m) / (m / 5)) * rng.standard_normal(m)).astype(np.float32)
    click = bandpass(click, sr, 800.0, 3500.0)
    t = rng.uniform(0, period)
    while t < n / sr:
        for dt in (0.0, rng.uniform(0.1, 0.16)):
            add_event(clacks, 3.0 * click, int((t + dt) * sr))
        t += period
    out = rumble + 0.8 * clacks
    if rng.random() < 0.4:  # a horn chord
        m = int(rng.uniform(0.8, 1.6) * sr)
        chord = sum(tone(f, m, sr) for f in (277.0, 349.0, 415.0)) * window(m, 0.05, 0.1)
        add_event(out, 1.2 * chord.astype(np.float32), int(rng.uniform(0, 0.7) * n))
    return out * np.linspace(rng.uniform(0.4, 1.0), rng.uniform(0.4, 1.0), n).astype(np.float32)


def _construction(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n, np.float32)
    t = np.arange(n) / sr
    if rng.random() < 0.6:  # jackhammer: broadband bursts at 12-25 Hz, on and off
        rate = rng.uniform(12, 25)
        gate = (np.sin(2 * np.pi * rng.uniform(0.2, 0.5) * t + rng.uniform(0, 6)) > -0.3).astype(np.float32)
        hits = pulses(np.full(n, rate), sr) * gate
        m = int(0.012 * sr)
        burst = (rng.standard_normal(m) * np.exp(-np.arange(m) / (m / 4))).astype(np.float32)
        out += signal.fftconvolve(hits, burst)[:n].astype(np.float32) * 6.0
    # drill / grinder: a harmonic whine (a pulse train at the motor rate, band-limited) switching on and off
    f0 = rng.uniform(140, 400)
    whine = lowpass(pulses(np.full(n, f0), sr), sr, 8 * f0)
    whine *= np.float32(1.0 / (np.sqrt(np.mean(whine ** 2)) + 1e-9))
    gate = lowpass((np.sin(2 * np.pi * rng.uniform(0.15, 0.4) * t + rng.uniform(0, 6)) > 0).astype(np.float32),
                    sr, 20.0)
    out += 0.5 * whine * gate
    return out + 0.2 * shaped_noise(n, sr, rng, 200.0, 4000.0)


def _tractor(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    f0 = rng.uniform(22, 40) * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * np.arange(n) / sr))
    engine = lowpass(pulses(f0, sr), sr, rng.uniform(500, 900), order=2)
    engine /= np.sqrt(np.mean(engine ** 2)) + 1e-9
    return engine + 0.4 * shaped_noise(n, sr, rng, 40.0, 600.0, tilt=-3.0)


def _livestock(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n, np.float32)
    cow = rng.random() < 0.55
    for start in onsets(n, sr, rng, rng.uniform(0.2, 0.5), min_gap=0.8):
        m = int((rng.uniform(0.9, 1.8) if cow else rng.uniform(0.4, 0.9)) * sr)
        u = np.linspace(0, 1, m)
        if cow:
            f0 = rng.uniform(100, 150) * (1 + 0.5 * np.sin(np.pi * u) - 0.2 * u)
            lo, hi = 200.0, 900.0
        else:
            f0 = rng.uniform(250, 380) * (1 + 0.04 * np.sin(2 * np.pi * rng.uniform(6, 9) * u * m / sr))
            lo, hi = 600.0, 2500.0
        voiced = bandpass(pulses(f0, sr), sr, lo, hi)
        trem = 1.0 if cow else (0.6 + 0.4 * np.sin(2 * np.pi * 7 * u * m / sr))
        add_event(out, (voiced * window(m, 0.15, 0.3) * trem).astype(np.float32) * 8.0, start)
    return out


def _crowd(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    voiced = np.zeros(n, np.float32)
    t = np.arange(n, dtype=np.float32) / np.float32(sr)
    for _ in range(rng.integers(3, 7)):
        f0 = rng.uniform(95, 240) * (1 + 0.12 * tone(rng.uniform(0.5, 2), n, sr, rng.uniform(0, 6)))
        sr_, pr_, ph1, ph2, thr = (rng.uniform(3.0, 6.0), rng.uniform(0.15, 0.4), rng.uniform(0, 6), rng.uniform(0, 6),
                                   rng.uniform(-0.3, 0.3))

        def gate(tt, sr_=sr_, pr_=pr_, ph1=ph1, ph2=ph2, thr=thr):
            return (np.sin(2 * np.pi * sr_ * tt + ph1) > thr) & (np.sin(2 * np.pi * pr_ * tt + ph2) > -0.4)

        voiced += rng.uniform(0.4, 1.0) * pulses(f0, sr) * gate_env(n, sr, gate, smooth_s=0.02, rate=400)
    del t
    speech = bandpass(voiced, sr, 250.0, 1000.0) + 0.6 * bandpass(voiced, sr, 1000.0, 3200.0)
    speech /= np.sqrt(np.mean(speech ** 2)) + 1e-9
    murmur = shaped_noise(n, sr, rng, 200.0, 3000.0) * smooth_env(n, sr, rng, 4.0, 0.8)
    return speech + 0.4 * murmur


_BELL_PARTIALS = ((0.5, 0.6, 2.5), (1.0, 1.0, 1.6), (1.19, 0.5, 1.2), (1.5, 0.4, 0.9), (2.0, 0.7, 0.7),
                  (2.51, 0.3, 0.5))


def _bells(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n, np.float32)
    pitches = rng.uniform(250, 600) * np.array([1.0, 0.89, 0.79, 0.75])[: rng.integers(1, 5)]
    m = int(min(2.5, n / sr) * sr)
    u = np.arange(m, dtype=np.float32) / np.float32(sr)
    decays = [(ratio, (amp * np.exp(-u / decay)).astype(np.float32)) for ratio, amp, decay in _BELL_PARTIALS]
    strikes = {}
    for p in pitches:
        ev = np.zeros(m, np.float32)
        for ratio, env in decays:
            if ratio * p < fmax(sr):
                ev += env * tone(ratio * p, m, sr)
        strikes[p] = ev * window(m, 0.002, 0.05)
    t = rng.uniform(0, 0.5)
    gap = rng.uniform(0.6, 1.8)
    i = 0
    while t < n / sr:
        add_event(out, strikes[pitches[i % len(pitches)]], int(t * sr))
        t += gap
        i += 1
    return out


def _aircraft(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sr
    roar = shaped_noise(n, sr, rng, 40.0, rng.uniform(800, 2000), tilt=-4.0)
    centre, width = rng.uniform(0.2, 0.8) * n / sr, rng.uniform(1.5, 4.0)
    env = (0.25 + np.exp(-0.5 * ((t - centre) / width) ** 2)).astype(np.float32)
    whine = tone(np.minimum(rng.uniform(1500, 3000) * (1.05 - 0.1 * t / t[-1]), fmax(sr)), n, sr)
    return env * (roar + 0.12 * whine)


def _dogs(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n, np.float32)
    for start in onsets(n, sr, rng, rng.uniform(0.3, 0.7), min_gap=0.8):
        f_base = rng.uniform(350, 750)
        t0 = start
        for _ in range(rng.integers(2, 6)):
            m = int(rng.uniform(0.08, 0.2) * sr)
            u = np.linspace(0, 1, m)
            bark = bandpass(pulses(f_base * (1.2 - 0.4 * u), sr) + 0.3 * white_noise(m, rng), sr, 400.0, 2500.0)
            add_event(out, bark * window(m, 0.05, 0.6) * 6.0, t0)
            t0 += m + int(rng.uniform(0.12, 0.35) * sr)
    return out


def _frogs(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n, np.float32)
    for _ in range(rng.integers(2, 6)):
        carrier = min(rng.uniform(500, 2200), fmax(sr))
        pr, cr, ph1, ph2, thr = (rng.uniform(12, 40), rng.uniform(0.4, 1.5), rng.uniform(0, 6), rng.uniform(0, 6),
                                 rng.uniform(0.0, 0.6))

        def gate(t, pr=pr, cr=cr, ph1=ph1, ph2=ph2, thr=thr):
            return (np.sin(2 * np.pi * pr * t + ph1) > 0.5) & (np.sin(2 * np.pi * cr * t + ph2) > thr)

        env = gate_env(n, sr, gate, smooth_s=0.006)
        out += rng.uniform(0.4, 1.0) * env * (tone(carrier, n, sr) + 0.3 * tone(min(2 * carrier, fmax(sr)), n, sr))
    return out


def _gulls(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n, np.float32)
    for start in onsets(n, sr, rng, rng.uniform(0.4, 0.9), min_gap=0.5):
        t0 = start
        for _ in range(rng.integers(1, 5)):
            m = int(rng.uniform(0.2, 0.4) * sr)
            u = np.linspace(0, 1, m)
            f = rng.uniform(1200, 1900) * (1.0 - 0.45 * u)
            ev = sum(a * tone(np.minimum(k * f, fmax(sr)), m, sr) for k, a in ((1, 1.0), (2, 0.6), (3, 0.3)))
            ev = ev * (1 + 0.5 * white_noise(m, rng) * 0.3)
            add_event(out, (ev * window(m, 0.1, 0.4)).astype(np.float32), t0)
            t0 += m + int(rng.uniform(0.05, 0.2) * sr)
    return out


def _owl(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n, np.float32)
    f = rng.uniform(330, 480)
    t = rng.uniform(0.0, 0.8)
    while t < n / sr:
        for _ in range(rng.integers(1, 4)):
            m = int(rng.uniform(0.3, 0.6) * sr)
            u = np.linspace(0, 1, m)
            hoot = tone(f * (1.02 - 0.06 * u), m, sr) + 0.08 * tone(2 * f, m, sr)
            add_event(out, hoot * window(m, 0.25, 0.4), int(t * sr))
            t += m / sr + rng.uniform(0.15, 0.4)
        t += rng.uniform(1.0, 2.5)
    return out


SYNTHS: dict[str, Callable[[int, int, np.random.Generator], np.ndarray]] = {
    "birdsong": _birdsong, "insects": _insects, "wind": _wind, "leaves": _leaves, "surf": _surf, "stream": _stream,
    "rain": _rain, "traffic": _traffic, "horns": _horns, "siren": _siren, "train": _train,
    "construction": _construction, "tractor": _tractor, "livestock": _livestock, "crowd": _crowd, "bells": _bells,
    "aircraft": _aircraft, "dogs": _dogs, "frogs": _frogs, "gulls": _gulls, "owl": _owl,
}
assert set(SYNTHS) == set(SOURCES)
