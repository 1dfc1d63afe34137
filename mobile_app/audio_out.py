"""Where the spatial mix goes: a stream to the speakers (Android's AudioTrack, or sounddevice on a desktop that has
it) or, headless, a buffer that keeps what was rendered so tests can listen to it.

Kivy's Sound plays files, not a stream of samples that changes as the listener turns, so the AR mix needs its own
output. Each output pulls ``render(n) -> (n, 2) float32`` from the scene:

- ``AudioTrackOutput``: ``android.media.AudioTrack`` in stream mode through pyjnius (python-for-android has it), fed
  16-bit blocks of ``block_s`` by a writer thread; the track's own buffer is the output latency.
- ``SoundDeviceOutput``: a PortAudio callback stream (``sounddevice``, optional on desktops).
- ``BufferOutput``: renders, when pumped, as many samples as wall-clock time has passed and keeps the last
  ``keep_s`` seconds (headless runs and the tests: the dummy SDL driver plays nothing).
``open_output`` picks the first that exists; None when none does (a desktop without sounddevice: the app then plays
the place's own soundscape without directions, as before).

Device-side: numpy, the standard library; jnius / sounddevice when present. Never torch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

Render = Callable[[int], np.ndarray]


def to_pcm16(block: np.ndarray) -> bytes:
    """(n, 2) float in [-1, 1] -> interleaved little-endian 16-bit PCM."""
    return (np.clip(block, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


class BufferOutput:
    """Renders in step with the wall clock when ``pump()`` is called (the app's Clock does, ~30 times a second)."""

    kind = "buffer"

    def __init__(self, render: Render, sample_rate: int, *, keep_s: float = 30.0, max_block_s: float = 0.5):
        self.render = render
        self.sample_rate = int(sample_rate)
        self.keep = int(keep_s * self.sample_rate)
        self.max_block = int(max_block_s * self.sample_rate)
        self._chunks: list[np.ndarray] = []
        self._kept = 0
        self.rendered = 0
        self.render_ms = 0.0  # time spent mixing, all blocks together
        self._t0: float | None = None

    def start(self) -> None:
        self._t0 = time.monotonic()
        self.rendered = 0

    def pump(self) -> int:
        """Render the samples due since the last pump (at most ``max_block_s``: a stalled app skips, not floods)."""
        if self._t0 is None:
            return 0
        due = int((time.monotonic() - self._t0) * self.sample_rate) - self.rendered
        if due <= 0:
            return 0
        if due > self.max_block:  # the app stalled: drop the backlog instead of rendering it in one go
            self.rendered += due - self.max_block
            due = self.max_block
        return self.write(due)

    def write(self, n: int) -> int:
        """Render exactly ``n`` samples into the buffer."""
        t0 = time.perf_counter()
        block = self.render(n)
        self.render_ms += (time.perf_counter() - t0) * 1e3
        self._chunks.append(block)
        self._kept += len(block)
        self.rendered += len(block)
        while self._kept > self.keep:  # drop the oldest samples beyond keep_s
            excess = self._kept - self.keep
            if len(self._chunks[0]) <= excess:
                self._kept -= len(self._chunks.pop(0))
            else:
                self._chunks[0] = self._chunks[0][excess:]
                self._kept -= excess
        return len(block)

    def audio(self, last_s: float | None = None) -> np.ndarray:
        """The kept audio, (n, 2) float32 (the last ``last_s`` seconds of it when given)."""
        x = np.concatenate(self._chunks) if self._chunks else np.zeros((0, 2), np.float32)
        if last_s is not None:
            x = x[-max(1, int(last_s * self.sample_rate)):]
        return x

    def stop(self) -> None:
        self._t0 = None

    def stats(self) -> dict[str, float | str]:
        last = self.audio(0.5)
        rms = np.sqrt(np.mean(last.astype(np.float64) ** 2, axis=0)) if len(last) else np.zeros(2)
        return {"kind": self.kind, "rendered_s": self.rendered / self.sample_rate, "rms_left": float(rms[0]),
                "rms_right": float(rms[1]), "render_ms": self.render_ms}


class _ThreadOutput:
    """A writer thread that renders ``block_s`` blocks and hands them to a blocking ``_write``."""

    kind = "thread"

    def __init__(self, render: Render, sample_rate: int, *, block_s: float = 0.02):
        self.render = render
        self.sample_rate = int(sample_rate)
        self.block = max(16, int(block_s * self.sample_rate))
        self.rendered = 0
        self.render_ms = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="sat2sound-audio", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            t0 = time.perf_counter()
            block = self.render(self.block)
            self.render_ms += (time.perf_counter() - t0) * 1e3
            self._write(block)
            self.rendered += len(block)

    def _write(self, block: np.ndarray) -> None:
        raise NotImplementedError

    def pump(self) -> int:
        return 0  # the thread feeds itself

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None

    def stats(self) -> dict[str, float | str]:
        return {"kind": self.kind, "rendered_s": self.rendered / self.sample_rate, "render_ms": self.render_ms}


class AudioTrackOutput(_ThreadOutput):
    """Android: a stereo 16-bit AudioTrack in stream mode (pyjnius); ``write`` blocks while the track is full."""

    kind = "audiotrack"

    def __init__(self, render: Render, sample_rate: int, *, block_s: float = 0.02):
        super().__init__(render, sample_rate, block_s=block_s)
        from jnius import autoclass  # type: ignore[import-not-found]  # python-for-android only

        track_cls = autoclass("android.media.AudioTrack")
        fmt = autoclass("android.media.AudioFormat")
        manager = autoclass("android.media.AudioManager")
        minimum = track_cls.getMinBufferSize(self.sample_rate, fmt.CHANNEL_OUT_STEREO, fmt.ENCODING_PCM_16BIT)
        size = max(int(minimum), 4 * self.block * 2)
        self.track = track_cls(manager.STREAM_MUSIC, self.sample_rate, fmt.CHANNEL_OUT_STEREO,
                               fmt.ENCODING_PCM_16BIT, size, track_cls.MODE_STREAM)
        self.buffer_s = size / 4 / self.sample_rate

    def start(self) -> None:
        self.track.play()
        super().start()

    def _write(self, block: np.ndarray) -> None:
        data = to_pcm16(block)
        self.track.write(data, 0, len(data))

    def stop(self) -> None:
        super().stop()
        self.track.stop()
        self.track.release()


class SoundDeviceOutput:
    """A desktop's PortAudio output stream (``sounddevice``), whose callback pulls the mix."""

    kind = "sounddevice"

    def __init__(self, render: Render, sample_rate: int, *, block_s: float = 0.02):
        import sounddevice  # type: ignore[import-not-found]  # optional: only where installed

        self.render = render
        self.sample_rate = int(sample_rate)
        self.rendered = 0
        self.render_ms = 0.0
        self.stream = sounddevice.OutputStream(samplerate=self.sample_rate, channels=2, dtype="float32",
                                               blocksize=max(16, int(block_s * self.sample_rate)),
                                               callback=self._callback)

    def _callback(self, outdata, frames, _time, _status) -> None:
        t0 = time.perf_counter()
        outdata[:] = self.render(frames)
        self.render_ms += (time.perf_counter() - t0) * 1e3
        self.rendered += frames

    def start(self) -> None:
        self.stream.start()

    def pump(self) -> int:
        return 0

    def stop(self) -> None:
        self.stream.stop()
        self.stream.close()

    def stats(self) -> dict[str, float | str]:
        return {"kind": self.kind, "rendered_s": self.rendered / self.sample_rate, "render_ms": self.render_ms}


Output = BufferOutput | AudioTrackOutput | SoundDeviceOutput


def open_output(render: Render, sample_rate: int, *, headless: bool) -> Output | None:
    """The output this device has: a buffer when headless, else AudioTrack (Android), else sounddevice; None when
    there is no way to stream samples to the speakers."""
    if headless:
        return BufferOutput(render, sample_rate)
    for cls in (AudioTrackOutput, SoundDeviceOutput):
        try:
            return cls(render, sample_rate)
        except Exception:  # not this platform (no jnius / no sounddevice / no audio device): try the next
            continue
    return None
