"""Sound sources of the embedded world, synthesised in numpy, and the words captions use for them.

Each source is built from the acoustic ingredients that make the real thing recognisable (FM chirps for birds,
pulse-gated carriers for crickets, lowpass noise with gust envelopes for wind, inharmonic decaying partials for
bells, pulse trains through formant filters for voices and animals ...), randomised per event from the rng, so
two clips of the same source differ while the sources stay apart in spectrum and rhythm. Nothing here imports
torch: the gallery's procedural renderer runs it on the build side, and it is cheap enough to run anywhere.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence

import numpy as np
import scipy.fft as sfft
from scipy import signal

from contracts.errors import DataError

SOURCES: tuple[str, ...] = (
    "birdsong", "insects", "wind", "leaves", "surf", "stream", "rain", "traffic", "horns", "siren", "train",
    "construction", "tractor", "livestock", "crowd", "bells", "aircraft", "dogs", "frogs", "gulls", "owl",
)

# Caption phrases per source (used by the audio and image captions; every phrase names exactly its own source
# under sources_in_text, which a test checks).
SOURCE_PHRASES: dict[str, list[str]] = {
    "birdsong": ["birds chirping", "birdsong", "birds singing", "a chorus of songbirds", "bird calls",
                 "songbirds twittering"],
    "insects": ["crickets chirping", "insects buzzing", "the buzz of insects", "cicadas droning", "chirping crickets"],
    "wind": ["wind blowing", "the wind", "gusts of wind", "a breeze", "wind noise"],
    "leaves": ["leaves rustling", "rustling leaves", "the rustle of foliage", "branches swaying"],
    "surf": ["waves crashing", "the surf", "ocean waves", "waves breaking on the shore", "the roar of the sea"],
    "stream": ["water flowing", "a babbling brook", "a stream trickling", "a river flowing", "running water"],
    "rain": ["rain falling", "raindrops pattering", "rainfall", "a steady rain"],
    "traffic": ["cars passing by", "traffic noise", "vehicles driving by", "the hum of traffic", "a car driving past"],
    "horns": ["car horns honking", "a horn honking", "honking", "beeping horns"],
    "siren": ["a siren wailing", "sirens", "an ambulance siren", "a police siren"],
    "train": ["a train passing", "the rumble of a train", "train wheels on the tracks", "a locomotive"],
    "construction": ["construction noise", "a jackhammer", "drilling", "machinery at a construction site",
                     "power tools"],
    "tractor": ["a tractor engine", "farm machinery", "a combine harvester", "agricultural machinery"],
    "livestock": ["cows mooing", "sheep bleating", "farm animals", "cattle lowing", "a cow mooing"],
    "crowd": ["people talking", "a crowd chattering", "voices", "chatter", "people chatting"],
    "bells": ["church bells ringing", "a bell tolling", "bells chiming", "chimes"],
    "aircraft": ["an airplane flying overhead", "a plane passing", "jet engine noise", "an aircraft overhead"],
    "dogs": ["dogs barking", "a dog barking", "barking"],
    "frogs": ["frogs croaking", "a chorus of frogs", "croaking", "toads calling"],
    "gulls": ["seagulls calling", "gulls crying", "seabirds", "squawking gulls"],
    "owl": ["an owl hooting", "owls", "the hoot of an owl"],
}

# Keywords (regular expressions, case-insensitive, word-bounded at the start) that name each source in free text.
_KEYWORDS: dict[str, str] = {
    "birdsong": r"\bbird(?:s|song|songs|call|calls)?\b|\bsongbirds?\b|\btweet|\bwarbl|\bdawn chorus",
    "insects": r"\binsects?\b|\bcrickets?\b|\bcicadas?\b|\bgrasshoppers?\b|\bbees?\b|\bbuzz of insects",
    "wind": r"\bwind(?:s|y)?\b|\bbreezes?\b|\bgusts?\b|\bgusty\b",
    "leaves": r"\bleaves\b|\bleaf\b|\brustl|\bfoliage\b|\bbranches\b",
    "surf": r"\bwaves?\b|\bsurf\b|\bocean\b|\bsea\b|\bseashore\b",
    "stream": r"\bstreams?\b|\bbrooks?\b|\brivers?\b|\bcreeks?\b|\brunning water\b|\bwater flowing\b"
              r"|\bwater is flowing\b|\bflowing water\b|\btrickl|\bbabbl|\bwaterfalls?\b",
    "rain": r"\brain(?:s|ing|fall|drops?|y)?\b|\bdrizzl|\bdownpour",
    "traffic": r"\btraffic\b|\bcars?\b(?!\s+horns?)|\bvehicles?\b|\btrucks?\b|\bbus(?:es)?\b|\bmotorcycles?\b"
               r"|\bmotorbikes?\b|\bmotorway\b|\bhighway noise",
    "horns": r"\bhorns?\b|\bhonk|\bbeep",
    "siren": r"\bsirens?\b|\bambulance|\bpolice\b|\bfire engine",
    "train": r"\btrains?\b|\blocomotive|\brailway noise|\btram\b",
    "construction": r"\bconstruction\b|\bjackhammer|\bdrill|\bhammering\b|\bpower tools?\b",
    "tractor": r"\btractors?\b|\bfarm machinery\b|\bagricultural machinery\b|\bcombine harvester|\bharvester",
    "livestock": r"\bcows?\b|\bcattle\b|\bmoo|\bsheep\b|\bbleat|\blivestock\b|\bfarm animals?\b|\bgoats?\b",
    "crowd": r"\bpeople\b|\bcrowds?\b|\bchatter|\bvoices?\b|\btalking\b|\bconversations?\b|\bpedestrians?\b"
             r"|\bchildren playing",
    "bells": r"\bbells?\b|\bchimes?\b|\bchiming\b|\btolling\b",
    "aircraft": r"\bairplanes?\b|\baeroplanes?\b|\bplanes?\b|\baircraft\b|\bjets?\b|\bhelicopters?\b",
    "dogs": r"\bdogs?\b|\bbark(?:s|ing)\b|\bpupp(?:y|ies)\b",
    "frogs": r"\bfrogs?\b|\bcroak|\btoads?\b|\bribbit",
    "gulls": r"\bgulls?\b|\bseagulls?\b|\bseabirds?\b",
    "owl": r"\bowls?\b|\bhoot",
}
_KEYWORD_RES = {name: re.compile(rx, re.IGNORECASE) for name, rx in _KEYWORDS.items()}


def sources_in_text(text: str) -> list[str]:
    """The sources a free caption names (by keywords and synonyms), in SOURCES order."""
    return [name for name in SOURCES if _KEYWORD_RES[name].search(text or "")]


def check_source(name: str) -> str:
    if name not in SOURCES:
        raise DataError(f"unknown sound source {name!r}; known sources: {', '.join(SOURCES)}", field="source")
    return name


# --------------------------------------------------------------------------------------------- building blocks

_TARGET_RMS = 0.1


@functools.lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """Four million samples of white Gaussian noise, drawn once per process from a fixed seed. Clips take random
    windows of it (the window start comes from the clip's rng), which is much cheaper than fresh draws."""
    bank = np.random.default_rng(0x5A75).standard_normal(1 << 22, dtype=np.float32)
    bank.setflags(write=False)
    return bank


def _noise(n: int, rng: np.random.Generator) -> np.ndarray:
    bank = _noise_bank()
    if n > len(bank) // 2:
        return rng.standard_normal(n, dtype=np.float32)
    start = int(rng.integers(0, len(bank) - n))
    return bank[start:start + n].copy()


def _shaped_noise(n: int, sr: int, rng: np.random.Generator, lo: float, hi: float, tilt: float = 0.0) -> np.ndarray:
    """Noise with a raised-cosine band lo..hi Hz and a spectral tilt (dB per octave above lo), RMS 1."""
    spec = sfft.rfft(_noise(n, rng))
    f = np.fft.rfftfreq(n, 1.0 / sr).astype(np.float32)
    hi = min(hi, 0.48 * sr)
    lo = min(lo, 0.5 * hi)
    width_lo, width_hi = max(lo * 0.3, 5.0), max(hi * 0.15, 5.0)
    gain = np.clip((f - (lo - width_lo)) / width_lo, 0.0, 1.0) * np.clip(((hi + width_hi) - f) / width_hi, 0.0, 1.0)
    if tilt:
        gain = gain * (np.maximum(f, lo) / max(lo, 1.0)) ** (tilt / 6.02)
    x = sfft.irfft(spec * gain.astype(np.float32), n).astype(np.float32)
    return x / (np.sqrt(np.mean(x * x)) + 1e-9)


def _smooth_env(n: int, sr: int, rng: np.random.Generator, rate_hz: float, depth: float, floor: float = 0.0
                ) -> np.ndarray:
    """A slowly varying positive envelope in [floor, 1]: random knots every 1/rate s, smoothstep-interpolated."""
    knots = max(int(n / sr * rate_hz) + 1, 1)
    vals = (1.0 - depth * rng.random(knots + 1)).astype(np.float32)
    pos = np.arange(n, dtype=np.float32) * np.float32(knots / n)
    i = pos.astype(np.int64)
    f = pos - i
    f = f * f * (3.0 - 2.0 * f)
    env = vals[i] + (vals[i + 1] - vals[i]) * f
    return np.maximum(env, np.float32(floor))


def _gate_env(n: int, sr: int, gate: Callable[[np.ndarray], np.ndarray], smooth_s: float = 0.004,
              rate: int = 1000) -> np.ndarray:
    """An on/off envelope evaluated at a low control rate (``gate(t)`` -> bool), softened, then stretched to n."""
    m = int(n / sr * rate) + 2
    t = np.arange(m) / rate
    g = gate(t).astype(np.float32)
    k = max(int(smooth_s * rate), 1)
    if k > 1:
        g = np.convolve(g, np.ones(k, np.float32) / k, mode="same")
    return np.interp(np.arange(n, dtype=np.float32) * np.float32(rate / sr), np.arange(m, dtype=np.float32),
                     g).astype(np.float32)


def _bandpass(x: np.ndarray, sr: int, lo: float, hi: float, order: int = 2) -> np.ndarray:
    nyq = 0.5 * sr
    hi = min(hi, 0.95 * nyq)
    lo = min(max(lo, 10.0), 0.9 * hi)
    sos = signal.butter(order, [lo / nyq, hi / nyq], btype="band", output="sos")
    return signal.sosfilt(sos, x).astype(np.float32)


def _lowpass(x: np.ndarray, sr: int, fc: float, order: int = 2) -> np.ndarray:
    sos = signal.butter(order, min(fc, 0.45 * sr) / (0.5 * sr), btype="low", output="sos")
    return signal.sosfilt(sos, x).astype(np.float32)


def _tone(freq: np.ndarray | float, n: int, sr: int, phase0: float = 0.0) -> np.ndarray:
    """Sine following an instantaneous-frequency track (Hz), phase-continuous."""
    if np.ndim(freq) == 0:
        phase = np.arange(n, dtype=np.float64) * (2.0 * np.pi * float(freq) / sr) + phase0
    else:
        phase = np.cumsum(np.asarray(freq, np.float64)) * (2.0 * np.pi / sr) + phase0
    return np.sin(np.mod(phase, 2.0 * np.pi).astype(np.float32))


def _pulses(f0: np.ndarray, sr: int) -> np.ndarray:
    """A unit pulse at every period of a (time-varying) f0 track: the glottal/striking source of voices and engines."""
    phase = np.cumsum(np.asarray(f0, np.float64)) / sr
    out = np.zeros(len(phase), np.float32)
    out[1:][np.floor(phase[1:]) > np.floor(phase[:-1])] = 1.0
    return out


def _window(n: int, attack: float = 0.1, release: float = 0.3) -> np.ndarray:
    """Attack/release envelope over n samples (fractions of n), raised-cosine edges."""
    env = np.ones(n, np.float32)
    a = max(int(n * attack), 1)
    r = max(int(n * release), 1)
    env[:a] = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, a))
    env[n - r:] *= 0.5 + 0.5 * np.cos(np.linspace(0, np.pi, r))
    return env


def _place(out: np.ndarray, event: np.ndarray, start: int) -> None:
    """Add an event into out at sample ``start`` (clipped at both ends)."""
    n = len(out)
    if start >= n or start + len(event) <= 0:
        return
    s0 = max(start, 0)
    e0 = s0 - start
    m = min(len(event) - e0, n - s0)
    out[s0:s0 + m] += event[e0:e0 + m]


def _onsets(n: int, sr: int, rng: np.random.Generator, rate: float, min_gap: float = 0.0) -> np.ndarray:
    """Poisson event start times (samples) at ``rate`` per second, at least one, optionally with a minimum gap."""
    count = max(1, rng.poisson(rate * n / sr))
    times = np.sort(rng.random(count)) * n
    if min_gap > 0 and count > 1:
        keep = np.concatenate([[True], np.diff(times) > min_gap * sr])
        times = times[keep]
    return times.astype(np.int64)


def _fmax(sr: int) -> float:
    return 0.45 * sr


# ----------------------------------------------------------------------------------------------- the sources


def _birdsong(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n, np.float32)
    for _ in range(rng.integers(1, 4)):
        base = min(rng.uniform(2200, 5200), _fmax(sr) * 0.8)
        syl = rng.uniform(0.04, 0.14)
        kind = rng.integers(0, 3)  # 0 down-sweep, 1 up-sweep, 2 trill
        gain = rng.uniform(0.4, 1.0)
        for start in _onsets(n, sr, rng, rng.uniform(0.4, 1.2)):
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
                f = np.minimum(f, _fmax(sr))
                ev = _tone(f, m, sr) + 0.2 * _tone(np.minimum(2 * f, _fmax(sr)), m, sr)
                _place(out, gain * ev * np.sin(np.pi * u).astype(np.float32) ** 2, t0)
                t0 += m + int(rng.uniform(0.02, 0.08) * sr)
    return out


def _insects(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n, np.float32)
    if rng.random() < 0.6:  # crickets: pulse-gated carrier in chirps
        for _ in range(rng.integers(2, 5)):
            carrier = min(rng.uniform(3500, 5500), _fmax(sr) * 0.9)
            pr, cr, ph1, ph2, thr = (rng.uniform(25, 50), rng.uniform(1.0, 3.5), rng.uniform(0, 6), rng.uniform(0, 6),
                                     rng.uniform(-0.2, 0.5))

            def gate(t, pr=pr, cr=cr, ph1=ph1, ph2=ph2, thr=thr):
                return (np.sin(2 * np.pi * pr * t + ph1) > 0.2) & (np.sin(2 * np.pi * cr * t + ph2) > thr)

            out += rng.uniform(0.3, 1.0) * _gate_env(n, sr, gate) * _tone(carrier, n, sr, rng.uniform(0, 6))
    else:  # cicadas: a dense buzz, slowly swelling
        centre = min(rng.uniform(4000, 6500), _fmax(sr) * 0.85)
        buzz = _shaped_noise(n, sr, rng, centre * 0.8, centre * 1.15)
        am = 0.6 + 0.4 * _tone(rng.uniform(80, 160), n, sr)
        out = buzz * am * _smooth_env(n, sr, rng, 0.5, 0.7)
    return out


def _wind(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    base = _shaped_noise(n, sr, rng, 20.0, rng.uniform(250, 700), tilt=-6.0)
    return base * _smooth_env(n, sr, rng, rng.uniform(0.3, 0.8), 0.85, 0.08)


def _leaves(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    hiss = _shaped_noise(n, sr, rng, 1800.0, 7000.0)
    crackle = np.zeros(n, np.float32)
    crackle[rng.integers(0, n, rng.poisson(rng.uniform(0.002, 0.01) * n))] = 1.0
    crackle = _lowpass(crackle, sr, 150.0)
    crackle /= crackle.max() + 1e-9
    gusts = _smooth_env(n, sr, rng, rng.uniform(0.4, 1.0), 0.9, 0.05)
    return hiss * (0.3 + crackle) * gusts


def _surf(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    body = _shaped_noise(n, sr, rng, 60.0, rng.uniform(700, 1400), tilt=-3.0)
    fizz = _shaped_noise(n, sr, rng, 1500.0, 6000.0)
    env = np.zeros(n, np.float32)
    period = rng.uniform(4.0, 9.0)
    t = rng.uniform(-period, 0.0)
    while t < n / sr:
        rise, decay = rng.uniform(0.8, 1.8), rng.uniform(2.0, 4.0)
        m = int((rise + decay) * sr)
        u = np.arange(m) / sr
        wave = np.where(u < rise, (u / rise) ** 2, np.exp(-(u - rise) / (decay / 3)))
        _place(env, (wave * rng.uniform(0.6, 1.0)).astype(np.float32), int(t * sr))
        t += period * rng.uniform(0.8, 1.2)
    return (body + 0.35 * fizz) * (0.15 + env)


def _stream(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    out = 0.5 * _shaped_noise(n, sr, rng, 300.0, 3000.0)
    for start in _onsets(n, sr, rng, rng.uniform(25, 60)):
        m = int(rng.uniform(0.006, 0.02) * sr)
        u = np.arange(m) / sr
        f0 = min(rng.uniform(400, 2200), _fmax(sr))
        f = np.minimum(f0 * (1 + 8 * u), _fmax(sr))
        _place(out, (rng.uniform(0.5, 2.0) * np.exp(-u * rng.uniform(150, 400)) * _tone(f, m, sr)), start)
    return out


def _rain(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    hiss = _shaped_noise(n, sr, rng, 400.0, 9000.0, tilt=-1.5)
    drops = np.zeros(n, np.float32)
    count = rng.poisson(rng.uniform(0.004, 0.02) * n)
    drops[rng.integers(0, n, count)] = rng.uniform(0.2, 1.0, count).astype(np.float32)
    kernel_n = max(int(0.004 * sr), 4)
    kernel = (rng.standard_normal(kernel_n) * np.exp(-np.arange(kernel_n) / (kernel_n / 4))).astype(np.float32)
    ticks = signal.fftconvolve(drops, kernel)[:n].astype(np.float32)
    ticks = _bandpass(ticks, sr, 1500.0, 8000.0)
    ticks /= np.sqrt(np.mean(ticks ** 2)) + 1e-9
    return 0.6 * hiss + 0.8 * ticks


def _traffic(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sr
    rumble = _shaped_noise(n, sr, rng, 30.0, 400.0, tilt=-3.0)
    tyres = _shaped_noise(n, sr, rng, 400.0, 2500.0)
    env = np.full(n, rng.uniform(0.15, 0.35), np.float32)
    for _ in range(rng.integers(2, 7)):
        centre, width = rng.uniform(-1.0, n / sr + 1.0), rng.uniform(0.8, 2.5)
        env += rng.uniform(0.5, 1.2) * np.exp(-0.5 * ((t - centre) / width) ** 2).astype(np.float32)
    engine = _lowpass(_pulses(np.full(n, rng.uniform(30, 60)), sr), sr, 300.0)
    engine /= np.sqrt(np.mean(engine ** 2)) + 1e-9
    return env * (rumble + 0.6 * tyres + 0.3 * engine)


def _horns(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n, np.float32)
    f1 = rng.uniform(350, 520)
    for start in _onsets(n, sr, rng, rng.uniform(0.3, 0.8), min_gap=0.4):
        m = int(rng.uniform(0.2, 0.9) * sr)
        ev = np.zeros(m, np.float32)
        for f in (f1, f1 * 1.26):
            for k in (1, 3, 5, 7):
                if k * f < _fmax(sr):
                    ev += _tone(k * f, m, sr) / k
        _place(out, ev * _window(m, 0.03, 0.08), start)
    return out


def _siren(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sr
    centre, dev = rng.uniform(750, 1100), rng.uniform(250, 450)
    period = rng.uniform(3.0, 6.0) if rng.random() < 0.6 else rng.uniform(0.2, 0.35)
    f = centre + dev * np.sin(2 * np.pi * t / period + rng.uniform(0, 6))
    out = np.zeros(n, np.float32)
    for k, a in ((1, 1.0), (2, 0.45), (3, 0.25)):
        out += a * _tone(np.minimum(k * f, _fmax(sr)), n, sr)
    approach = np.linspace(rng.uniform(0.2, 1.0), rng.uniform(0.2, 1.0), n).astype(np.float32)
    return out * approach


def _train(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    rumble = _shaped_noise(n, sr, rng, 25.0, 260.0, tilt=-2.0)
    clacks = np.zeros(n, np.float32)
    period = rng.uniform(0.5, 1.1)
    m = int(0.03 * sr)
    click = (np.exp(-np.arange(m) / (m / 5)) * rng.standard_normal(m)).astype(np.float32)
    click = _bandpass(click, sr, 800.0, 3500.0)
    t = rng.uniform(0, period)
    while t < n / sr:
        for dt in (0.0, rng.uniform(0.1, 0.16)):
            _place(clacks, 3.0 * click, int((t + dt) * sr))
        t += period
    out = rumble + 0.8 * clacks
    if rng.random() < 0.4:  # a horn chord
        m = int(rng.uniform(0.8, 1.6) * sr)
        chord = sum(_tone(f, m, sr) for f in (277.0, 349.0, 415.0)) * _window(m, 0.05, 0.1)
        _place(out, 1.2 * chord.astype(np.float32), int(rng.uniform(0, 0.7) * n))
    return out * np.linspace(rng.uniform(0.4, 1.0), rng.uniform(0.4, 1.0), n).astype(np.float32)


def _construction(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n, np.float32)
    t = np.arange(n) / sr
    if rng.random() < 0.6:  # jackhammer: broadband bursts at 12-25 Hz, on and off
        rate = rng.uniform(12, 25)
        gate = (np.sin(2 * np.pi * rng.uniform(0.2, 0.5) * t + rng.uniform(0, 6)) > -0.3).astype(np.float32)
        hits = _pulses(np.full(n, rate), sr) * gate
        m = int(0.012 * sr)
        burst = (rng.standard_normal(m) * np.exp(-np.arange(m) / (m / 4))).astype(np.float32)
        out += signal.fftconvolve(hits, burst)[:n].astype(np.float32) * 6.0
    # drill / grinder: a harmonic whine (a pulse train at the motor rate, band-limited) switching on and off
    f0 = rng.uniform(140, 400)
    whine = _lowpass(_pulses(np.full(n, f0), sr), sr, 8 * f0)
    whine *= np.float32(1.0 / (np.sqrt(np.mean(whine ** 2)) + 1e-9))
    gate = _lowpass((np.sin(2 * np.pi * rng.uniform(0.15, 0.4) * t + rng.uniform(0, 6)) > 0).astype(np.float32),
                    sr, 20.0)
    out += 0.5 * whine * gate
    return out + 0.2 * _shaped_noise(n, sr, rng, 200.0, 4000.0)


def _tractor(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    f0 = rng.uniform(22, 40) * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * np.arange(n) / sr))
    engine = _lowpass(_pulses(f0, sr), sr, rng.uniform(500, 900), order=2)
    engine /= np.sqrt(np.mean(engine ** 2)) + 1e-9
    return engine + 0.4 * _shaped_noise(n, sr, rng, 40.0, 600.0, tilt=-3.0)


def _livestock(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n, np.float32)
    cow = rng.random() < 0.55
    for start in _onsets(n, sr, rng, rng.uniform(0.2, 0.5), min_gap=0.8):
        m = int((rng.uniform(0.9, 1.8) if cow else rng.uniform(0.4, 0.9)) * sr)
        u = np.linspace(0, 1, m)
        if cow:
            f0 = rng.uniform(100, 150) * (1 + 0.5 * np.sin(np.pi * u) - 0.2 * u)
            lo, hi = 200.0, 900.0
        else:
            f0 = rng.uniform(250, 380) * (1 + 0.04 * np.sin(2 * np.pi * rng.uniform(6, 9) * u * m / sr))
            lo, hi = 600.0, 2500.0
        voiced = _bandpass(_pulses(f0, sr), sr, lo, hi)
        trem = 1.0 if cow else (0.6 + 0.4 * np.sin(2 * np.pi * 7 * u * m / sr))
        _place(out, (voiced * _window(m, 0.15, 0.3) * trem).astype(np.float32) * 8.0, start)
    return out


def _crowd(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    voiced = np.zeros(n, np.float32)
    t = np.arange(n, dtype=np.float32) / np.float32(sr)
    for _ in range(rng.integers(3, 7)):
        f0 = rng.uniform(95, 240) * (1 + 0.12 * _tone(rng.uniform(0.5, 2), n, sr, rng.uniform(0, 6)))
        sr_, pr_, ph1, ph2, thr = (rng.uniform(3.0, 6.0), rng.uniform(0.15, 0.4), rng.uniform(0, 6), rng.uniform(0, 6),
                                   rng.uniform(-0.3, 0.3))

        def gate(tt, sr_=sr_, pr_=pr_, ph1=ph1, ph2=ph2, thr=thr):
            return (np.sin(2 * np.pi * sr_ * tt + ph1) > thr) & (np.sin(2 * np.pi * pr_ * tt + ph2) > -0.4)

        voiced += rng.uniform(0.4, 1.0) * _pulses(f0, sr) * _gate_env(n, sr, gate, smooth_s=0.02, rate=400)
    del t
    speech = _bandpass(voiced, sr, 250.0, 1000.0) + 0.6 * _bandpass(voiced, sr, 1000.0, 3200.0)
    speech /= np.sqrt(np.mean(speech ** 2)) + 1e-9
    murmur = _shaped_noise(n, sr, rng, 200.0, 3000.0) * _smooth_env(n, sr, rng, 4.0, 0.8)
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
            if ratio * p < _fmax(sr):
                ev += env * _tone(ratio * p, m, sr)
        strikes[p] = ev * _window(m, 0.002, 0.05)
    t = rng.uniform(0, 0.5)
    gap = rng.uniform(0.6, 1.8)
    i = 0
    while t < n / sr:
        _place(out, strikes[pitches[i % len(pitches)]], int(t * sr))
        t += gap
        i += 1
    return out


def _aircraft(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sr
    roar = _shaped_noise(n, sr, rng, 40.0, rng.uniform(800, 2000), tilt=-4.0)
    centre, width = rng.uniform(0.2, 0.8) * n / sr, rng.uniform(1.5, 4.0)
    env = (0.25 + np.exp(-0.5 * ((t - centre) / width) ** 2)).astype(np.float32)
    whine = _tone(np.minimum(rng.uniform(1500, 3000) * (1.05 - 0.1 * t / t[-1]), _fmax(sr)), n, sr)
    return env * (roar + 0.12 * whine)


def _dogs(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n, np.float32)
    for start in _onsets(n, sr, rng, rng.uniform(0.3, 0.7), min_gap=0.8):
        f_base = rng.uniform(350, 750)
        t0 = start
        for _ in range(rng.integers(2, 6)):
            m = int(rng.uniform(0.08, 0.2) * sr)
            u = np.linspace(0, 1, m)
            bark = _bandpass(_pulses(f_base * (1.2 - 0.4 * u), sr) + 0.3 * _noise(m, rng), sr, 400.0, 2500.0)
            _place(out, bark * _window(m, 0.05, 0.6) * 6.0, t0)
            t0 += m + int(rng.uniform(0.12, 0.35) * sr)
    return out


def _frogs(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n, np.float32)
    for _ in range(rng.integers(2, 6)):
        carrier = min(rng.uniform(500, 2200), _fmax(sr))
        pr, cr, ph1, ph2, thr = (rng.uniform(12, 40), rng.uniform(0.4, 1.5), rng.uniform(0, 6), rng.uniform(0, 6),
                                 rng.uniform(0.0, 0.6))

        def gate(t, pr=pr, cr=cr, ph1=ph1, ph2=ph2, thr=thr):
            return (np.sin(2 * np.pi * pr * t + ph1) > 0.5) & (np.sin(2 * np.pi * cr * t + ph2) > thr)

        env = _gate_env(n, sr, gate, smooth_s=0.006)
        out += rng.uniform(0.4, 1.0) * env * (_tone(carrier, n, sr) + 0.3 * _tone(min(2 * carrier, _fmax(sr)), n, sr))
    return out


def _gulls(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n, np.float32)
    for start in _onsets(n, sr, rng, rng.uniform(0.4, 0.9), min_gap=0.5):
        t0 = start
        for _ in range(rng.integers(1, 5)):
            m = int(rng.uniform(0.2, 0.4) * sr)
            u = np.linspace(0, 1, m)
            f = rng.uniform(1200, 1900) * (1.0 - 0.45 * u)
            ev = sum(a * _tone(np.minimum(k * f, _fmax(sr)), m, sr) for k, a in ((1, 1.0), (2, 0.6), (3, 0.3)))
            ev = ev * (1 + 0.5 * _noise(m, rng) * 0.3)
            _place(out, (ev * _window(m, 0.1, 0.4)).astype(np.float32), t0)
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
            hoot = _tone(f * (1.02 - 0.06 * u), m, sr) + 0.08 * _tone(2 * f, m, sr)
            _place(out, hoot * _window(m, 0.25, 0.4), int(t * sr))
            t += m / sr + rng.uniform(0.15, 0.4)
        t += rng.uniform(1.0, 2.5)
    return out


_SYNTHS: dict[str, Callable[[int, int, np.random.Generator], np.ndarray]] = {
    "birdsong": _birdsong, "insects": _insects, "wind": _wind, "leaves": _leaves, "surf": _surf, "stream": _stream,
    "rain": _rain, "traffic": _traffic, "horns": _horns, "siren": _siren, "train": _train,
    "construction": _construction, "tractor": _tractor, "livestock": _livestock, "crowd": _crowd, "bells": _bells,
    "aircraft": _aircraft, "dogs": _dogs, "frogs": _frogs, "gulls": _gulls, "owl": _owl,
}
assert set(_SYNTHS) == set(SOURCES)


def _length(seconds: float, sample_rate: int) -> int:
    if not (seconds > 0 and np.isfinite(seconds)):
        raise DataError(f"clip length must be a positive number of seconds, got {seconds}", field="seconds")
    if int(sample_rate) != sample_rate or sample_rate < 2000:
        raise DataError(f"sample rate must be an integer of at least 2000 Hz, got {sample_rate}", field="sample_rate")
    return int(round(seconds * sample_rate))


def synthesize(source: str, seconds: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """One source, ``seconds`` long at ``sample_rate``: float32 mono, RMS about 0.1 (levels are set by the mix)."""
    check_source(source)
    n = _length(seconds, sample_rate)
    x = _SYNTHS[source](n, int(sample_rate), rng).astype(np.float32, copy=False)
    rms = float(np.sqrt(np.mean(x * x)))
    return x * np.float32(_TARGET_RMS / rms) if rms > 0 else x


def render_scene(sources: Sequence[str], seconds: float, sample_rate: int, rng: np.random.Generator,
                 levels: Sequence[float] | None = None) -> np.ndarray:
    """Mix sources at ``levels`` (dB, default: the first loudest, the rest 3-14 dB below) over a quiet noise floor
    (microphone hiss + distant hum); float32 in [-1, 1], peak at most 0.89 (headroom for lossy coding, whose
    decoded waveform can overshoot the original peaks by several percent)."""
    for s in sources:
        check_source(s)
    n = _length(seconds, sample_rate)
    if levels is None:  # no sources at all renders just the room: the noise floor
        levels = ([0.0] if sources else []) + [-float(rng.uniform(3.0, 14.0)) for _ in sources[1:]]
    if len(levels) != len(sources):
        raise DataError(f"got {len(levels)} levels for {len(sources)} sources", field="levels")
    mix = np.zeros(n, np.float32)
    for s, level in zip(sources, levels):
        mix += synthesize(s, seconds, sample_rate, rng) * np.float32(10.0 ** (level / 20.0))
    floor_db = rng.uniform(-42.0, -32.0)
    floor = _shaped_noise(n, sample_rate, rng, 30.0, 0.45 * sample_rate, tilt=-3.0) * _TARGET_RMS
    mix += floor * np.float32(10.0 ** (floor_db / 20.0))
    peak = float(np.max(np.abs(mix)))
    gain = np.float32(10.0 ** (rng.uniform(-8.0, 0.0) / 20.0))
    mix *= gain
    if peak * gain > 0.89:
        mix *= np.float32(0.89 / (peak * gain))
    return mix
