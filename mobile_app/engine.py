"""The app without its screen: bundle -> (tap a place) -> the nearest soundscapes of the gallery.

``Soundscape.open(bundle_dir)`` checks the bundle, opens the map, the gallery and the model; ``listen(lon, lat,
zoom, ...)`` cuts the model's view out of the map, runs the on-device tower and searches the gallery, timing each
step. The Kivy app, the benchmark and the tests all drive this one object, so what the tests measure is what the
app does.

Device-side: numpy, onnxruntime / ai_edge_litert, usearch or hnswlib (optional), sqlite3, Pillow. Never torch.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gallery.errors import GalleryError
from gallery.query import Gallery, Hit
from mobile_app import place as placemod
from mobile_app.bundle import Bundle, load_bundle
from mobile_app.closing import Closing
from mobile_app.errors import BundleError, PlaceError, PlaybackError
from mobile_app.mbtiles import MBTiles
from mobile_app.runtime import Tower, open_tower


@dataclass
class Answer:
    """What one tap heard: the place, the view the model saw, the hits (best first) and how long each step took."""

    lon: float
    lat: float
    zoom: int
    audio_source: str | None
    when: placemod.When | None
    hits: list[Hit]
    embedding: np.ndarray
    view: np.ndarray  # RGB uint8 (S, S, 3) the model saw
    ms: dict[str, float] = field(default_factory=dict)

    @property
    def top(self) -> Hit:
        return self.hits[0]


class Soundscape(Closing):
    """A bundle opened for listening. Use ``Soundscape.open``; ``close()`` when done (or a ``with`` block)."""

    def __init__(self, bundle: Bundle, mbtiles: MBTiles, gallery: Gallery, tower: Tower, runtime: str,
                 open_ms: dict[str, float]):
        self.bundle = bundle
        self.map = mbtiles
        self.gallery = gallery
        self.tower = tower
        self.runtime = runtime
        self.open_ms = open_ms

    @classmethod
    def open(cls, path: str | os.PathLike, *, runtime: str = "onnx", verify: bool = True,
             hash_cache: str | Path | None = None, threads: int = 2, exact: bool = False) -> Soundscape:
        """Check and open a bundle; every failure is a BundleError / RuntimeChoiceError with one clear line."""
        t0 = time.perf_counter()
        bundle = load_bundle(path, verify=verify, hash_cache=hash_cache)
        t1 = time.perf_counter()
        mbtiles = MBTiles(bundle.map_path)
        try:
            # The bundle check hashed the gallery's files against its manifest already: the gallery need not again.
            gallery = Gallery.open(bundle.gallery_dir, expect_fingerprint=bundle.model.space_fingerprint, exact=exact,
                                   verify="header" if verify else "quick")
        except GalleryError as exc:
            mbtiles.close()
            raise BundleError(f"bundle {bundle.root}: {exc}") from None
        t2 = time.perf_counter()
        try:
            tower = open_tower(bundle.model_file(runtime), runtime, bundle.model.inputs, bundle.model.output, threads)
        except Exception:
            gallery.close()
            mbtiles.close()
            raise
        t3 = time.perf_counter()
        ms = {"verify": (t1 - t0) * 1e3, "open_map_gallery": (t2 - t1) * 1e3, "load_model": (t3 - t2) * 1e3}
        return cls(bundle, mbtiles, gallery, tower, runtime, ms)

    def close(self) -> None:
        self.gallery.close()
        self.map.close()

    # ------------------------------------------------------------------------------------------------ facts

    @property
    def zooms(self) -> tuple[int, ...]:
        return tuple(sorted(self.bundle.views))

    def check_place(self, lon: float, lat: float) -> None:
        """PlaceError when (lon, lat) lies outside the bundle's region (the map has no imagery to look at there)."""
        r = self.bundle.region
        if not r.contains(lon, lat):
            raise PlaceError(f"{lat:.5f}, {lon:.5f} is outside this bundle's region (lat {r.south:.4f} to "
                             f"{r.north:.4f}, lon {r.west:.4f} to {r.east:.4f}); tap inside the highlighted area")

    # ------------------------------------------------------------------------------------------------ listening

    def embed(self, lon: float, lat: float, zoom: int = 1, *, audio_source: str | None = None,
              when: placemod.When | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        """(embedding (d,), the view (S, S, 3) uint8, timings) of a place."""
        self.check_place(lon, lat)
        view = self.bundle.views.get(int(zoom))
        if view is None:
            raise PlaceError(f"zoom {zoom} is not one of this model's zooms {self.zooms}")
        t0 = time.perf_counter()
        pixels = placemod.view_pixels(self.map, view, lon, lat, self.bundle.model.image_size)
        t1 = time.perf_counter()
        feed = placemod.model_inputs(pixels, self.bundle.model, zoom=int(zoom), lon=lon, lat=lat, when=when,
                                     audio_source=audio_source)
        emb = np.asarray(self.tower.run(feed), dtype=np.float32)[0]
        t2 = time.perf_counter()
        return emb, pixels, {"view": (t1 - t0) * 1e3, "model": (t2 - t1) * 1e3}

    def listen(self, lon: float, lat: float, zoom: int = 1, *, audio_source: str | None = None,
               when: placemod.When | None = None, k: int = 5) -> Answer:
        """The gallery's k nearest soundscapes (by caption) for a place, best first."""
        emb, pixels, ms = self.embed(lon, lat, zoom, audio_source=audio_source, when=when)
        t0 = time.perf_counter()
        try:
            hits = self.gallery.search(emb, k=k)
        except GalleryError as exc:
            raise BundleError(f"gallery search failed: {exc}") from None
        ms["search"] = (time.perf_counter() - t0) * 1e3
        if not hits:
            raise BundleError("the bundle's gallery is empty; rebuild the bundle with a gallery that has clips")
        return Answer(lon, lat, int(zoom), audio_source, when, hits, emb, pixels, ms)

    def clip(self, item_id: str) -> tuple[bytes, str]:
        """(bytes, format) of an item's clip; a damaged or missing clip is a PlaybackError."""
        try:
            return self.gallery.clip(item_id)
        except GalleryError as exc:
            raise PlaybackError(str(exc)) from None
