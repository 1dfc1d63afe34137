"""A tapped place -> the image tower's inputs: the model's view cut from the map, plus the metadata fields.

The view for model zoom z is the square of ground that zoom's centre crop covered in training (``View.ground_m``),
read at the map level whose pixels match it, then resized to the model's input size with the same Pillow bicubic
resize and ImageNet normalisation training used (contracts.image_prep, numpy + Pillow only).

Metadata follows the model's layout (contracts.schema.META_FIELDS order in ``meta_mask``): position from the tap, month
and hour from the device clock, the recording style the user chose as the audio source; the caption source is not
something a listener chooses, so it is left out (masked), which the model was trained to accept.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from contracts.image_prep import normalise, resize
from contracts.schema import AUDIO_SOURCES, META_FIELDS
from mobile_app.bundle import ModelSpec, View
from mobile_app.mbtiles import MBTiles


@dataclass(frozen=True)
class When:
    """The device clock's month (1-12) and hour (0-23) that the model hears."""

    month: int
    hour: int

    @staticmethod
    def now() -> When:
        t = dt.datetime.now()
        return When(t.month, t.hour)


def view_pixels(mbtiles: MBTiles, view: View, lon: float, lat: float, image_size: int) -> np.ndarray:
    """RGB uint8 (image_size, image_size, 3): the model's view of (lon, lat) at one zoom."""
    return resize(mbtiles.read_view(lon, lat, view.ground_m, view.level), image_size)


def model_inputs(image: np.ndarray, spec: ModelSpec, *, zoom: int, lon: float, lat: float, when: When | None,
                 audio_source: str | None) -> dict[str, np.ndarray]:
    """Named batch-1 inputs of the image tower (dtypes as exported: float32, int64 for the source indices)."""
    if audio_source is not None and audio_source not in AUDIO_SOURCES:
        raise ValueError(f"unknown recording style {audio_source!r}; expected one of {', '.join(AUDIO_SOURCES)}")
    given = {"latlon": True, "month": when is not None, "hour": when is not None,
             "audio_source": audio_source is not None, "caption_source": False}
    f32 = np.float32
    feed = {
        "image": normalise(image, spec.mean, spec.std)[None].astype(f32),
        "zoom": np.array([zoom], dtype=f32),
        "gsd": np.array([spec.gsd_m], dtype=f32),
        "lat": np.array([lat], dtype=f32),
        "lon": np.array([lon], dtype=f32),
        "month": np.array([when.month if when else 1], dtype=f32),
        "hour": np.array([when.hour if when else 0], dtype=f32),
        "audio_source": np.array([AUDIO_SOURCES.index(audio_source) if audio_source else 0], dtype=np.int64),
        "caption_source": np.array([0], dtype=np.int64),
        "meta_mask": np.array([[1.0 if given[k] else 0.0 for k in META_FIELDS]], dtype=f32),
    }
    return {k: feed[k] for k in spec.inputs}
