"""Playing soundscape clips with Kivy's audio: temp files, hard switches, crossfades, and a state tests can read.

Kivy's SoundLoader takes file names only (and picks its decoder by extension), so each clip's bytes are written once
to a temp file named after the item with the right extension. Before a clip reaches the audio stack it is checked
to decode (soundfile, when the device has it), because on a machine without a sound card SDL still "loads" any
file, and a corrupt clip must be caught and skipped, not played as silence.

A plain play streams the file (SDL_mixer's music channel: ``MusicSDL2`` opens a 10 s clip in under a millisecond),
because loading it as a sample (``SoundLoader``: the whole clip decoded and resampled to the device's rate up front)
took ~19 ms of the app's 23 ms tap-to-sound. SDL_mixer has one music channel, so a crossfade, which needs two clips
sounding at once, loads the incoming clip as a sample. Clips already checked to decode are not checked again.

Headless machines (no sound card, SDL dummy driver) report ``length`` 0 for some loaded sounds; a sound on which
``play()`` was called counts as started, and ``state`` records it so tests can assert what the listener would hear.

Device-side: Kivy (imported lazily), soundfile optional. Never torch.
"""

from __future__ import annotations

import io
import math
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gallery.clips import sniff_format
from mobile_app.errors import PlaybackError

EXTENSIONS = {"ogg": ".ogg", "flac": ".flac", "wav": ".wav", "mp3": ".mp3"}


def _load_sound(path: Path, *, stream: bool):
    """A Kivy Sound for ``path``: streamed from the file by SDL_mixer's music channel when ``stream`` and the SDL2
    provider is there, else a sample loaded whole by SoundLoader. None when it cannot be loaded."""
    if stream:
        try:
            from kivy.core.audio.audio_sdl2 import MusicSDL2
        except ImportError:  # another audio provider (or none): the sample path below
            MusicSDL2 = None
        if MusicSDL2 is not None:
            sound = MusicSDL2(source=str(path))
            if sound.length >= 0:  # Kivy marks a file SDL_mixer could not open with -1
                return sound
            sound.unload()
            return None
    from kivy.core.audio import SoundLoader

    return SoundLoader.load(str(path))


def check_decodable(data: bytes, fmt: str, name: str = "clip") -> None:
    """PlaybackError when ``data`` does not decode as ``fmt`` (reads the header and the first second or so).

    Uses soundfile when installed; without it only the container signature is checked and the audio stack's own
    load failure is the last line of defence.
    """
    if not data:
        raise PlaybackError(f"{name} is empty")
    if fmt not in EXTENSIONS:
        raise PlaybackError(f"{name} has an unknown format {fmt!r}")
    found = sniff_format(data)
    if found is not None and found != fmt:
        raise PlaybackError(f"{name} says it is {fmt} but its bytes are {found}")
    if found is None and fmt != "mp3":
        raise PlaybackError(f"{name} is not a valid {fmt} file (unrecognised header)")
    try:
        import soundfile as sf
    except (ImportError, OSError):
        return
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            if f.frames == 0 or f.samplerate <= 0:
                raise PlaybackError(f"{name} holds no audio")
            block = f.read(min(f.frames, max(1024, f.samplerate)), dtype="float32")
            if len(block) == 0:
                raise PlaybackError(f"{name} decodes to no samples")
    except PlaybackError:
        raise
    except Exception as exc:  # libsndfile raises its own error types (and RuntimeError) for damaged streams
        raise PlaybackError(f"{name} does not decode as {fmt}: {str(exc).splitlines()[0] if str(exc) else exc}") \
            from None


@dataclass
class PlayerState:
    """What is playing, for the UI and for tests."""

    current: str | None = None  # item id of the clip the listener hears (the fading-in one during a crossfade)
    status: str = "idle"  # idle | playing | stopped | failed
    started: list[str] = field(default_factory=list)  # every item id play() was called on, in order
    failed: list[str] = field(default_factory=list)  # item ids that could not be played
    last_error: str | None = None
    crossfading: bool = False
    length_s: float = 0.0
    volumes: dict[str, float] = field(default_factory=dict)
    fade_trace: list[tuple[float, float, float]] = field(default_factory=list)  # (s, new volume, old volume)

    def as_dict(self) -> dict[str, Any]:
        return {"current": self.current, "status": self.status, "started": list(self.started),
                "failed": list(self.failed), "last_error": self.last_error, "crossfading": self.crossfading,
                "length_s": self.length_s, "volumes": dict(self.volumes),
                "fade_trace": [list(t) for t in self.fade_trace]}


class ClipPlayer:
    """One clip at a time, looping; ``play(..., crossfade=True)`` ramps the old one out and the new one in."""

    def __init__(self, tmp_dir: str | Path | None = None, *, fade_s: float = 2.5, loop: bool = True,
                 fade_step_s: float = 1 / 30, cleanup: bool | None = None):
        # The clip files are scratch: removed on close when the folder is ours (or when asked to).
        self._own_tmp = tmp_dir is None if cleanup is None else cleanup
        self.tmp = Path(tempfile.mkdtemp(prefix="sat2sound-clips-")) if tmp_dir is None else Path(tmp_dir)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.fade_s = float(fade_s)
        self.fade_step_s = float(fade_step_s)
        self.loop = loop
        self.state = PlayerState()
        self._sound = None
        self._old = None
        self._fade_event = None
        self._fade_t0 = 0.0
        self._checked: dict[str, str | None] = {}  # item id -> None (decodes) or why it does not
        self.last_ms: dict[str, float] = {}  # where the last play() spent its time

    def check(self, item_id: str, data: bytes, fmt: str) -> None:
        """check_decodable, remembered per item (a gallery's clips are verified by checksum, so they never change)."""
        if item_id not in self._checked:
            try:
                check_decodable(data, fmt, name=f"the clip of item {item_id[:12]}")
                self._checked[item_id] = None
            except PlaybackError as exc:
                self._checked[item_id] = str(exc)
        reason = self._checked[item_id]
        if reason is not None:
            raise PlaybackError(reason)

    # ------------------------------------------------------------------------------------------------ files

    def clip_path(self, item_id: str, data: bytes, fmt: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_-]", "_", item_id)[:40] or "clip"
        path = self.tmp / f"{safe}{EXTENSIONS[fmt]}"
        if not path.is_file() or path.stat().st_size != len(data):
            tmp = path.with_suffix(path.suffix + ".part")
            tmp.write_bytes(data)
            tmp.replace(path)
        return path

    # ------------------------------------------------------------------------------------------------ playing

    def play(self, item_id: str, data: bytes, fmt: str, *, crossfade: bool = False) -> None:
        """Start ``item_id``'s clip; PlaybackError (state records it) when it cannot be decoded or loaded."""
        t0 = time.perf_counter()
        old = self._sound
        fade = crossfade and old is not None and self.fade_s > 0
        try:
            self.check(item_id, data, fmt)
            t1 = time.perf_counter()
            path = self.clip_path(item_id, data, fmt)
            t2 = time.perf_counter()
            sound = _load_sound(path, stream=not fade)
            if sound is None:
                raise PlaybackError(f"the audio system cannot load the clip of item {item_id[:12]} ({fmt})")
        except PlaybackError as exc:
            self.state.failed.append(item_id)
            self.state.last_error = str(exc)
            raise
        except OSError as exc:
            self.state.failed.append(item_id)
            self.state.last_error = f"cannot write the clip of item {item_id[:12]}: {exc}"
            raise PlaybackError(self.state.last_error) from None
        t3 = time.perf_counter()
        sound.loop = self.loop
        self._cancel_fade()
        if fade:
            sound.volume = 0.0
            self._old = old
            self._sound = sound
            sound.play()
            self._start_fade()
        else:
            self._unload(old)
            self._sound = sound
            sound.volume = 1.0
            sound.play()
        self.state.current = item_id
        self.state.status = "playing"
        self.state.started.append(item_id)
        self.state.last_error = None
        self.state.length_s = max(0.0, float(getattr(sound, "length", 0.0) or 0.0))
        self._record_volumes()
        t4 = time.perf_counter()
        self.last_ms = {"check": (t1 - t0) * 1e3, "file": (t2 - t1) * 1e3, "load": (t3 - t2) * 1e3,
                        "start": (t4 - t3) * 1e3, "streamed": float(not fade)}

    def stop(self) -> None:
        self._cancel_fade()
        self._unload(self._old)
        self._old = None
        self._unload(self._sound)
        self._sound = None
        if self.state.status == "playing":
            self.state.status = "stopped"
        self.state.crossfading = False
        self._record_volumes()

    @property
    def sound(self):
        """The Kivy Sound the listener hears now (None when nothing plays)."""
        return self._sound

    # ------------------------------------------------------------------------------------------------ fading

    def _start_fade(self) -> None:
        from kivy.clock import Clock

        self._fade_t0 = time.monotonic()
        self.state.crossfading = True
        self.state.fade_trace = [(0.0, 0.0, 1.0)]
        self._fade_event = Clock.schedule_interval(self._fade_tick, self.fade_step_s)

    def _fade_tick(self, _dt: float) -> bool:
        t = min(1.0, (time.monotonic() - self._fade_t0) / self.fade_s)
        # Equal-power ramps: the sum of the two loudnesses stays about constant through the fade.
        if self._sound is not None:
            self._sound.volume = math.sin(t * math.pi / 2)
        if self._old is not None:
            self._old.volume = math.cos(t * math.pi / 2)
        self._record_volumes()
        self.state.fade_trace.append((round(t * self.fade_s, 3), round(math.sin(t * math.pi / 2), 4),
                                     round(math.cos(t * math.pi / 2), 4)))
        if t >= 1.0:
            self._unload(self._old)
            self._old = None
            self.state.crossfading = False
            self._fade_event = None
            self._record_volumes()
            return False
        return True

    def _cancel_fade(self) -> None:
        if self._fade_event is not None:
            self._fade_event.cancel()
            self._fade_event = None
        if self._old is not None:
            self._unload(self._old)
            self._old = None
        if self._sound is not None:
            self._sound.volume = 1.0
        self.state.crossfading = False

    def _record_volumes(self) -> None:
        vols = {}
        if self._sound is not None:
            vols["current"] = round(float(self._sound.volume), 4)
        if self._old is not None:
            vols["previous"] = round(float(self._old.volume), 4)
        self.state.volumes = vols

    @staticmethod
    def _unload(sound) -> None:
        if sound is None:
            return
        try:
            sound.stop()
            sound.unload()
        except Exception:  # an audio backend failing to stop a sound must not take the app down
            pass

    def close(self) -> None:
        self.stop()
        if self._own_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
