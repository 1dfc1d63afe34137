"""The one dataset schema: the fields GeoSound and SoundingEarth ship, and their vocabularies.

The embedded world writes exactly these columns (plus ground-truth columns prefixed ``gt_``), and the one
loader reads them from the real datasets' published layouts and from the world alike.
"""

from __future__ import annotations

ZOOMS: tuple[int, ...] = (1, 3, 5)

# Audio source index as the paper's metadata embedding uses it.
AUDIO_SOURCES: tuple[str, ...] = ("yfcc", "inaturalist", "aporee", "freesound")
AUDIO_SOURCE_ALIASES: dict[str, str] = {
    "flickr": "yfcc", "inat": "inaturalist", "radio aporee": "aporee", "aporee:radio": "aporee",
}

# Caption source index: human/metadata 0, qwen 1, pengi 2.
CAPTION_SOURCES: tuple[str, ...] = ("metadata", "qwen", "pengi")
CAPTION_SOURCE_ALIASES: dict[str, str] = {"human": "metadata", "meta": "metadata"}

# Order of the metadata fields in every `meta_mask` vector (1 = given, 0 = missing/dropped).
META_FIELDS: tuple[str, ...] = ("latlon", "month", "hour", "audio_source", "caption_source")

# Ground resolution (metres per pixel) of each imagery kind at its native resolution.
IMAGERY_GSD_M: dict[str, float] = {"bingmap": 0.6, "sentinel": 10.0, "googleearth": 0.2}

# Centre-crop fraction of the native tile for each zoom level (Bing: 300/900/1500 px of 1500).
ZOOM_CROP_FRACTION: dict[str, dict[int, float]] = {
    "bingmap": {1: 0.2, 3: 0.6, 5: 1.0},
    "sentinel": {1: 0.2, 3: 0.6, 5: 1.0},
    "googleearth": {1: 0.25},
}

# Columns of the GeoSound layout. SoundingEarth uses googleearth_image, date_recorded, short_id.
GEOSOUND_FIELDS: tuple[str, ...] = (
    "sample_id", "source", "audio", "bingmap_image", "sentinel_image", "audio_caption", "audio_caption_source",
    "mel_features", "llava_caption_bingmap_zl1", "llava_caption_bingmap_zl3", "llava_caption_bingmap_zl5",
    "llava_caption_sentinel_zl1", "llava_caption_sentinel_zl3", "llava_caption_sentinel_zl5",
    "latitude", "longitude", "date", "description", "tags", "title",
)
SOUNDINGEARTH_FIELDS: tuple[str, ...] = (
    "sample_id", "short_id", "audio", "googleearth_image", "audio_caption", "audio_caption_source",
    "mel_features", "llava_caption_googleearth_zl1", "latitude", "longitude", "date_recorded",
)
# Columns without which a folder is not in the schema at all.
REQUIRED_FIELDS: tuple[str, ...] = ("sample_id", "audio", "audio_caption", "latitude", "longitude")

SPLITS: tuple[str, ...] = ("train", "validation", "test")
SPLIT_ALIASES: dict[str, str] = {"val": "validation", "valid": "validation", "dev": "validation"}


def normalise_audio_source(name: str | None) -> str | None:
    """Map a dataset's audio-source spelling onto AUDIO_SOURCES; None stays None; unknown raises ValueError."""
    if name is None:
        return None
    key = str(name).strip().lower()
    key = AUDIO_SOURCE_ALIASES.get(key, key)
    if key not in AUDIO_SOURCES:
        raise ValueError(f"unknown audio source {name!r}; expected one of {', '.join(AUDIO_SOURCES)} (or flickr)")
    return key


def normalise_caption_source(name: str | None) -> str | None:
    if name is None:
        return None
    key = str(name).strip().lower()
    key = CAPTION_SOURCE_ALIASES.get(key, key)
    if key not in CAPTION_SOURCES:
        raise ValueError(f"unknown caption source {name!r}; expected one of {', '.join(CAPTION_SOURCES)} (or human)")
    return key


def normalise_split(name: str) -> str:
    key = SPLIT_ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in SPLITS:
        raise ValueError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
    return key
