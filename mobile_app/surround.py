"""The soundscape around a listener: the places near them, each sounding from its own direction (AR field audio).

``SpatialScene(engine)`` lays a fixed grid over the bundle's region whose cells are the model's view at the chosen
zoom (180 m at zoom 1), so every cell is one place the model can look at and the places stay put as the listener
walks. For a listener position and heading it mixes

- the **centre**: the soundscape of the exact place the listener stands on (what field mode always played),
  centred in both ears at full level: the loudest source;
- the **neighbours**: every grid cell whose centre lies within ``radius`` cells, each its gallery's top playable
  clip, placed by its true bearing and distance (``mobile_app.spatial``: 1/d loudness, equal-power pan, ITD, a
  little rear shadow). Standing on a cell's centre that is 8 places at two distances (4 at one cell, 4 at 1.4).

``move(lat, lon)`` and ``turn(heading)`` only retarget the mixer's gains (short ramps: no clicks); a neighbour
cell is asked of the model and the gallery once (its hits and its decoded clip are cached, LRU), and the centre
is asked again only after ``requery_m`` metres. When the centre's top clip changes it crossfades. A clip that does
not decode is skipped for the next hit (recorded in ``skipped``); a place with no playable clip stays silent.

Device-side: numpy and the app's engine; soundfile when the device has it (else only WAV clips decode). Never torch.
"""

from __future__ import annotations

import io
import math
import time
import wave as wavemod
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from contracts.errors import ConfigError, Sat2SoundError
from gallery.query import Hit
from mobile_app import mercator
from mobile_app.engine import Answer, Soundscape
from mobile_app.errors import PlaybackError
from mobile_app.place import When
from mobile_app.spatial import EarCues, Mixer, distance_gain, ear_cues, wrap_deg

M_PER_DEG = mercator.EQUATOR_M / 360.0
CENTRE = "centre"


def check_heading(value: object) -> float:
    """A compass heading in degrees (0 = north, 90 = east), folded to [0, 360); ConfigError when it is not a finite
    number between 0 and 360."""
    try:
        h = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"a heading must be a number of degrees between 0 and 360, got {value!r}") from None
    if not math.isfinite(h) or not 0.0 <= h <= 360.0:
        raise ConfigError(f"a heading must be a number of degrees between 0 and 360, got {value!r}")
    return h % 360.0


def offset_m(origin: tuple[float, float], to: tuple[float, float]) -> tuple[float, float]:
    """(east, north) metres from ``origin`` to ``to`` (both lat, lon); equirectangular, fine for a few km."""
    lat = math.radians((origin[0] + to[0]) / 2.0)
    return (to[1] - origin[1]) * math.cos(lat) * M_PER_DEG, (to[0] - origin[0]) * M_PER_DEG


def bearing_deg(east: float, north: float) -> float:
    """Compass bearing of an (east, north) offset, [0, 360)."""
    return math.degrees(math.atan2(east, north)) % 360.0


def decode_pcm(data: bytes, fmt: str, name: str = "clip") -> tuple[np.ndarray, int]:
    """Clip bytes -> (mono float32, sample rate). soundfile decodes every format; without it (a phone without a
    libsndfile recipe) WAV still decodes with the standard library. PlaybackError when it does not decode."""
    try:
        import soundfile  # noqa: F401
    except (ImportError, OSError):
        if fmt != "wav":
            raise PlaybackError(f"{name} is {fmt}, which this device cannot decode without soundfile") from None
        return _decode_wav(data, name)
    from gallery.clips import decode_clip
    from gallery.errors import GalleryError

    try:
        return decode_clip(data, fmt, name=name)
    except GalleryError as exc:
        raise PlaybackError(str(exc)) from None


def _decode_wav(data: bytes, name: str) -> tuple[np.ndarray, int]:
    try:
        with wavemod.open(io.BytesIO(data)) as w:
            width, channels, sr, frames = w.getsampwidth(), w.getnchannels(), w.getframerate(), w.readframes(-1)
    except (wavemod.Error, EOFError) as exc:
        raise PlaybackError(f"{name} does not decode as wav: {exc}") from None
    if width != 2 or not frames:
        raise PlaybackError(f"{name} is not 16-bit PCM audio")
    x = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    return x.reshape(-1, channels).mean(axis=1), sr


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Linear-interpolation resampling (enough for ambient soundscapes; the gallery's clips share one rate)."""
    if sr_in == sr_out:
        return x.astype(np.float32, copy=False)
    n = max(1, int(round(x.size * sr_out / sr_in)))
    return np.interp(np.arange(n) * (sr_in / sr_out), np.arange(x.size), x).astype(np.float32)


def _sounds(hit: Hit) -> str:
    return ", ".join(hit.sources) if hit.sources else hit.caption


@dataclass
class Place:
    """A place the scene asked about: its hits and the clip chosen to sound there (None: silent)."""

    key: str
    lat: float
    lon: float
    hits: list[Hit]
    item_id: str | None = None
    caption: str = ""
    wave: np.ndarray | None = None
    sounds: str = ""  # the clip's sound sources in a few words ("birdsong, stream"), or ""
    reason: str = ""  # why it is silent


@dataclass(frozen=True)
class Sounding:
    """A source in the mix now, for the map and the tests."""

    key: str
    lat: float
    lon: float
    item_id: str
    caption: str
    sounds: str  # a few words for a map label: the clip's sources, else its caption
    distance_m: float
    bearing_deg: float
    azimuth_deg: float  # relative to the heading, (-180, 180]: negative = left
    gain: float
    left: float
    right: float

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


class ClipBank:
    """Decoded clips at the mixer's rate, LRU by bytes; a clip that failed to decode is remembered as failed."""

    def __init__(self, engine: Soundscape, sample_rate: int, max_bytes: int = 48 << 20):
        self.engine = engine
        self.sample_rate = int(sample_rate)
        self.max_bytes = int(max_bytes)
        self._waves: OrderedDict[str, np.ndarray] = OrderedDict()
        self._failed: dict[str, str] = {}
        self.decoded = 0

    def get(self, item_id: str) -> np.ndarray:
        if item_id in self._failed:
            raise PlaybackError(self._failed[item_id])
        w = self._waves.get(item_id)
        if w is not None:
            self._waves.move_to_end(item_id)
            return w
        try:
            data, fmt = self.engine.clip(item_id)
            x, sr = decode_pcm(data, fmt, name=f"the clip of item {item_id[:12]}")
        except PlaybackError as exc:
            self._failed[item_id] = str(exc)
            raise
        w = resample(np.asarray(x, np.float32), int(sr), self.sample_rate)
        self.decoded += 1
        self._waves[item_id] = w
        while sum(v.nbytes for v in self._waves.values()) > self.max_bytes and len(self._waves) > 1:
            self._waves.popitem(last=False)
        return w


class SpatialScene:
    """The listener's surroundings as a stereo mix. ``render(n)`` gives the next n samples (float32, (n, 2))."""

    def __init__(self, engine: Soundscape, *, zoom: int = 1, audio_source: str | None = "aporee",
                 when: When | None = None, sample_rate: int | None = None, radius_cells: float = 2.0,
                 ramp_s: float = 0.05, fade_s: float = 1.5, requery_m: float = 25.0, k: int = 3,
                 width: float = 0.5, rear_db: float = 3.0, max_places: int = 512):
        self.engine = engine
        self.sample_rate = int(sample_rate or engine.gallery.meta.get("sample_rate") or 16000)
        self.mixer = Mixer(self.sample_rate, ramp_s=ramp_s)
        self.clips = ClipBank(engine, self.sample_rate)
        self.radius_cells = float(radius_cells)
        self.fade_s = float(fade_s)
        self.requery_m = float(requery_m)
        self.k = max(1, int(k))
        self.width, self.rear_db = float(width), float(rear_db)
        self.max_places = int(max_places)
        self.listener: tuple[float, float] | None = None
        self.heading = 0.0
        self.centre: Place | None = None
        self.skipped: list[dict[str, str]] = []  # clips that did not decode, once each: {"where", "item", "reason"}
        self.last_ms: dict[str, float] = {}
        self._places: OrderedDict[tuple[int, int], Place] = OrderedDict()
        self._centre_at: tuple[float, float] | None = None
        self._active: dict[str, Place] = {}
        self.configure(zoom=zoom, audio_source=audio_source, when=when)

    # ------------------------------------------------------------------------------------------------ set-up

    def configure(self, *, zoom: int, audio_source: str | None, when: When | None) -> None:
        """What the model is asked (zoom sets the grid: one cell per view); forgets every cached answer."""
        if int(zoom) not in self.engine.bundle.views:
            raise ConfigError(f"zoom {zoom} is not one of this model's zooms {self.engine.zooms}")
        self.zoom, self.audio_source, self.when = int(zoom), audio_source, when
        self.spacing_m = float(self.engine.bundle.views[self.zoom].ground_m)
        r = self.engine.bundle.region
        self._origin = (r.south, r.west)
        self._dlat = self.spacing_m / M_PER_DEG
        self._dlon = self.spacing_m / (M_PER_DEG * math.cos(math.radians(r.center[1])))
        self._places.clear()
        self._centre_at = None
        self._generation = getattr(self, "_generation", -1) + 1  # voice keys of older answers never collide
        for key in [k for k in self._active if k != CENTRE]:  # the centre crossfades at the next move
            self.mixer.fade_out(key, self.fade_s)
            del self._active[key]

    def cell_centre(self, i: int, j: int) -> tuple[float, float]:
        """(lat, lon) of grid cell (row i from the region's south edge, column j from its west edge)."""
        return self._origin[0] + (i + 0.5) * self._dlat, self._origin[1] + (j + 0.5) * self._dlon

    def cells_near(self, lat: float, lon: float) -> list[tuple[int, int]]:
        """Cells whose centres lie within the scene's radius of (lat, lon)."""
        reach = self.radius_cells + 1
        i0 = int(math.floor((lat - self._origin[0]) / self._dlat))
        j0 = int(math.floor((lon - self._origin[1]) / self._dlon))
        out = []
        for i in range(i0 - int(reach), i0 + int(reach) + 1):
            for j in range(j0 - int(reach), j0 + int(reach) + 1):
                e, n = offset_m((lat, lon), self.cell_centre(i, j))
                if math.hypot(e, n) < self.radius_cells * self.spacing_m:
                    out.append((i, j))
        return out

    # ------------------------------------------------------------------------------------------------ asking

    def _ask(self, key: str, lat: float, lon: float, answer: Answer | None = None) -> Place:
        """The place's hits and the first of them whose clip decodes."""
        if answer is None:
            try:
                self.engine.check_place(lon, lat)
                answer = self.engine.listen(lon, lat, self.zoom, audio_source=self.audio_source, when=self.when,
                                            k=self.k)
            except Sat2SoundError as exc:
                return Place(key, lat, lon, [], reason=str(exc))
        place = Place(key, lat, lon, list(answer.hits))
        for hit in answer.hits:
            try:
                place.wave = self.clips.get(hit.id)
            except PlaybackError as exc:
                if all(s["item"] != hit.id for s in self.skipped):  # each bad clip is reported once
                    self.skipped.append({"where": key, "item": hit.id, "reason": str(exc)})
                continue
            place.item_id, place.caption, place.sounds = hit.id, hit.caption, _sounds(hit)
            return place
        place.reason = "none of its clips can be played"
        return place

    def _cell(self, ij: tuple[int, int]) -> Place:
        place = self._places.get(ij)
        if place is None:
            lat, lon = self.cell_centre(*ij)
            place = self._ask(f"cell{self._generation}:{ij[0]},{ij[1]}", lat, lon)
            self._places[ij] = place
            while len(self._places) > self.max_places:
                self._places.popitem(last=False)
        else:
            self._places.move_to_end(ij)
        return place

    # ------------------------------------------------------------------------------------------------ moving

    def move(self, lat: float, lon: float, *, centre: Answer | None = None) -> dict[str, float]:
        """The listener is now at (lat, lon). ``centre``: the answer for this exact place when the caller has one
        (the app asks it to show the view). Returns timings in ms."""
        if not (math.isfinite(lat) and math.isfinite(lon)):
            raise ConfigError(f"a position must be finite, got {lat}, {lon}")
        t0 = time.perf_counter()
        self.listener = (float(lat), float(lon))
        far = self._centre_at is None or math.hypot(*offset_m(self._centre_at, self.listener)) >= self.requery_m
        if centre is not None or far:
            self._set_centre(self._ask(CENTRE, lat, lon, centre))
            self._centre_at = self.listener
        t1 = time.perf_counter()
        asked = len(self._places)
        wanted: dict[str, Place] = {}
        for ij in self.cells_near(lat, lon):
            place = self._cell(ij)
            if place.wave is not None:
                wanted[place.key] = place
        t2 = time.perf_counter()
        for key in [k for k in self._active if k != CENTRE and k not in wanted]:
            self.mixer.fade_out(key, self.mixer.ramp_n / self.sample_rate)
            del self._active[key]
        for key, place in wanted.items():
            if key not in self._active:
                self.mixer.add(key, place.wave, *self._cues(place), item_id=place.item_id or "",
                               offset=zlib.crc32(key.encode()), fade_s=self.mixer.ramp_n / self.sample_rate)
                self._active[key] = place
        self._retarget()
        t3 = time.perf_counter()
        self.last_ms = {"centre": (t1 - t0) * 1e3, "neighbours": (t2 - t1) * 1e3, "mix": (t3 - t2) * 1e3,
                        "total": (t3 - t0) * 1e3, "new_places": float(max(0, len(self._places) - asked))}
        return self.last_ms

    def _set_centre(self, place: Place) -> None:
        old = self.centre
        self.centre = place
        if place.wave is None:
            if old is not None and old.wave is not None:
                self.mixer.fade_out(CENTRE, self.fade_s)
            self._active.pop(CENTRE, None)
            return
        self._active[CENTRE] = place
        if old is not None and old.item_id == place.item_id and CENTRE in self.mixer.voices:
            return  # same soundscape here: it keeps playing
        cues, gain = self._cues(place)
        if CENTRE in self.mixer.voices:
            self.mixer.crossfade(CENTRE, place.wave, cues, gain, item_id=place.item_id or "", fade_s=self.fade_s)
        else:
            self.mixer.add(CENTRE, place.wave, cues, gain, item_id=place.item_id or "", fade_s=0.1)

    def play_centre(self, hit: Hit) -> None:
        """Make ``hit`` the centre's clip (a listener's choice among the place's hits); PlaybackError if undecodable."""
        if self.centre is None:
            return
        wave = self.clips.get(hit.id)
        place = Place(CENTRE, self.centre.lat, self.centre.lon, self.centre.hits, hit.id, hit.caption, wave,
                      sounds=_sounds(hit))
        self._set_centre(place)

    def turn(self, heading: object) -> float:
        """The listener now faces ``heading`` degrees (ConfigError when it is NaN or outside 0-360). Returns ms."""
        t0 = time.perf_counter()
        self.heading = check_heading(heading)
        self._retarget()
        return (time.perf_counter() - t0) * 1e3

    def _geometry(self, place: Place) -> tuple[float, float]:
        """(distance m, bearing deg) of a place from the listener; the centre is at distance 0."""
        if place.key == CENTRE or self.listener is None:
            return 0.0, 0.0
        e, n = offset_m(self.listener, (place.lat, place.lon))
        return math.hypot(e, n), bearing_deg(e, n)

    def _cues(self, place: Place) -> tuple[EarCues, float]:
        dist, bearing = self._geometry(place)
        if place.key == CENTRE:
            return ear_cues(0.0, width=self.width, rear_db=self.rear_db), 1.0
        az = wrap_deg(bearing - self.heading)
        return (ear_cues(az, width=self.width, rear_db=self.rear_db),
                distance_gain(dist, self.spacing_m, self.radius_cells))

    def _retarget(self) -> None:
        for key, place in self._active.items():
            cues, gain = self._cues(place)
            self.mixer.set_target(key, cues, gain)

    # ------------------------------------------------------------------------------------------------ output

    def render(self, n: int) -> np.ndarray:
        return self.mixer.render(int(n))

    def stop(self, fade_s: float = 0.2) -> None:
        """Fade everything out (a Stop button); the next ``move`` starts the sound again."""
        for key in self.mixer.voice_keys():
            self.mixer.fade_out(key, fade_s)
        self._active.clear()
        self.centre = None
        self._centre_at = None

    def sounding(self, min_gain: float = 1e-3) -> list[Sounding]:
        """The sources in the mix now (target gains), the centre first, then by loudness."""
        out = []
        for key, place in self._active.items():
            cues, gain = self._cues(place)
            if gain < min_gain:
                continue
            dist, bearing = self._geometry(place)
            az = 0.0 if key == CENTRE else wrap_deg(bearing - self.heading)
            out.append(Sounding(key, place.lat, place.lon, place.item_id or "", place.caption, place.sounds, dist,
                                bearing, az, gain, cues.left * gain, cues.right * gain))
        return sorted(out, key=lambda s: (s.key != CENTRE, -s.gain))

    def snapshot(self) -> dict[str, Any]:
        return {"listener": list(self.listener) if self.listener else None, "heading": self.heading,
                "zoom": self.zoom, "spacing_m": self.spacing_m, "sample_rate": self.sample_rate,
                "sounding": [s.as_dict() for s in self.sounding()], "places_cached": len(self._places),
                "clips_decoded": self.clips.decoded, "skipped": list(self.skipped), "last_ms": dict(self.last_ms),
                "rendered_s": self.mixer.rendered / self.sample_rate, "clipped": self.mixer.clipped}
