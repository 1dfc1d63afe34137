"""The five metadata fields of a sample (location, month, hour, audio source, caption source) and their mask.

Sources write dates in many ways (the authors list 'June 26th, 2010' for Freesound, '2021/10/31 3:11 PM EDT'
for iNaturalist, '2011-07-26 12:46:19.0' for YFCC, '1/29/09 10:28' for aporee; the published Parquet uses
'YYYY-MM-DD HH:MM:SS'); a value we cannot read is a missing field, not an error, because the model treats
a missing field as dropped. Clock times are taken as written (local time); epochs are read as UTC.
Coordinates out of range and sources outside the vocabulary are errors: they mean the file is not what it
claims to be. SoundingEarth has no ``source`` column: every clip there is from radio aporee.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from contracts.errors import DataError
from contracts.schema import (
    AUDIO_SOURCES,
    CAPTION_SOURCES,
    META_FIELDS,
    normalise_audio_source,
    normalise_caption_source,
)

# Spellings seen in the authors' metadata that the shared schema does not list yet ('iNat' in the PSM loader).
_EXTRA_AUDIO_SOURCE_ALIASES: dict[str, str] = {"inat": "inaturalist", "inaturalist.org": "inaturalist"}

_MONTHS = {name: i + 1 for i, name in enumerate(
    ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
     "november", "december"])}
_MONTHS.update({name[:3]: num for name, num in list(_MONTHS.items())})
_MONTHS["sept"] = 9

_TIME = r"(?:[ T,]+(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:[.,]\d+)?)?\s*(?P<ampm>[ap]\.?m\.?)?)?"
_ZONE = r"(?:\s*(?:z|utc|gmt|[+-]\d{2}(?::?\d{2})?|[a-z]{2,5}))?"
_YMD = re.compile(r"^(?P<y>\d{4})[-/.](?P<mo>\d{1,2})[-/.](?P<d>\d{1,2})" + _TIME + _ZONE + r"$", re.I)
_MDY = re.compile(r"^(?P<mo>\d{1,2})/(?P<d>\d{1,2})/(?P<y>\d{2}|\d{4})" + _TIME + _ZONE + r"$", re.I)
_NAMED = re.compile(
    r"^(?:(?P<mname>[a-z]+)\.?\s+(?P<d>\d{1,2})(?:st|nd|rd|th)?|(?P<d2>\d{1,2})(?:st|nd|rd|th)?\s+(?P<mname2>[a-z]+)\.?)"
    r",?\s+(?P<y>\d{4})" + _TIME + _ZONE + r"$", re.I)


@dataclass(frozen=True)
class SampleMeta:
    """Metadata of one sample as the model consumes it. Missing fields hold 0 and have mask 0."""

    lat: float
    lon: float
    month: float  # 1-12
    hour: float  # 0-23
    audio_source: int  # index into AUDIO_SOURCES
    caption_source: int  # index into CAPTION_SOURCES
    meta_mask: np.ndarray  # (5,) float32 in META_FIELDS order, 1 = present


def parse_month_hour(value: object) -> tuple[int | None, int | None]:
    """(month 1-12, hour 0-23) of a date in any of the accepted forms; None for what is absent or unreadable.

    Accepts 'YYYY-MM-DD HH:MM:SS', 'YYYY-MM-DD', ISO with T/Z/offset/fractions, 'YYYY/MM/DD h:mm PM TZ',
    'M/D/YY HH:MM' (US order), 'June 26th, 2010', an int/float Unix epoch (s, or ms when > 1e11), and
    datetime/date objects. A date without a time gives a month and no hour.
    """
    if value is None:
        return None, None
    if isinstance(value, dt.datetime):
        return value.month, value.hour
    if isinstance(value, dt.date):
        return value.month, None
    if isinstance(value, np.datetime64):
        return parse_month_hour(value.astype("datetime64[s]").item())
    if isinstance(value, bool):
        return None, None
    if isinstance(value, int | float | np.integer | np.floating):
        return _from_epoch(float(value))
    text = str(value).strip()
    if not text:
        return None, None
    if re.fullmatch(r"[+-]?\d{9,}(?:\.\d+)?", text):
        return _from_epoch(float(text))
    for pattern in (_YMD, _MDY, _NAMED):
        m = pattern.match(text)
        if m:
            return _from_match(m)
    return None, None


def _from_epoch(seconds: float) -> tuple[int | None, int | None]:
    if not math.isfinite(seconds):
        return None, None
    if abs(seconds) > 1e11:  # milliseconds
        seconds /= 1000.0
    if abs(seconds) < 1e8:  # before 1973: a bare year or a count, not a recording time
        return None, None
    try:
        t = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None, None
    return t.month, t.hour


def _from_match(m: re.Match) -> tuple[int | None, int | None]:
    parts = m.groupdict()
    year = int(parts["y"])
    if year < 100:  # two-digit years ('1/29/09'): 70-99 -> 1900s, else 2000s
        year += 1900 if year >= 70 else 2000
    name = parts.get("mname") or parts.get("mname2")
    month = _MONTHS.get(name.lower()) if name else int(parts["mo"])
    day = int(parts.get("d") or parts.get("d2"))
    if not month:
        return None, None
    try:
        dt.date(year, month, day)
    except ValueError:
        return None, None
    hour = None
    if parts.get("h") is not None:
        h, minute = int(parts["h"]), int(parts["mi"])
        ampm = (parts.get("ampm") or "").lower().replace(".", "")
        if ampm:
            h = (h % 12) + (12 if ampm == "pm" else 0) if 1 <= h <= 12 else -1
        hour = h if 0 <= h <= 23 and 0 <= minute <= 59 else None
    return month, hour


def _coordinate(value: object, name: str, limit: float, sample: object, path: object) -> float | None:
    if value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{name} is not a number: {value!r}", path=path, field=name, sample=sample) from None
    if math.isnan(x):
        return None
    if not -limit <= x <= limit:
        raise DataError(f"{name} {x:g} is out of range [-{limit:g}, {limit:g}]", path=path, field=name,
                        sample=sample)
    return x


def audio_source_index(name: object, *, sample: object = None, path: object = None,
                       field: str = "source") -> int | None:
    """Index into AUDIO_SOURCES (yfcc 0, inaturalist 1, aporee 2, freesound 3); None/'' -> None; unknown: DataError."""
    if name is None or (isinstance(name, str) and not name.strip()):
        return None
    key = str(name).strip()
    key = _EXTRA_AUDIO_SOURCE_ALIASES.get(key.lower(), key)
    try:
        return AUDIO_SOURCES.index(normalise_audio_source(key))
    except ValueError as exc:
        raise DataError(str(exc), path=path, field=field, sample=sample) from None


def caption_source_index(name: object, *, sample: object = None, path: object = None,
                         field: str = "audio_caption_source") -> int | None:
    """Index into CAPTION_SOURCES (metadata 0, qwen 1, pengi 2); None/'' -> None; unknown -> DataError."""
    if name is None or (isinstance(name, str) and not name.strip()):
        return None
    try:
        return CAPTION_SOURCES.index(normalise_caption_source(str(name)))
    except ValueError as exc:
        raise DataError(str(exc), path=path, field=field, sample=sample) from None


def sample_metadata(row: Mapping[str, object], *, kind: str = "geosound", sample: object = None,
                    path: object = None) -> SampleMeta:
    """The metadata fields of one raw row (GeoSound or SoundingEarth columns) with their presence mask."""
    lat = _coordinate(row.get("latitude"), "latitude", 90.0, sample, path)
    lon = _coordinate(row.get("longitude"), "longitude", 180.0, sample, path)
    date_field = "date_recorded" if kind == "soundingearth" and "date_recorded" in row else "date"
    if date_field not in row and "date_recorded" in row:
        date_field = "date_recorded"
    month, hour = parse_month_hour(row.get(date_field))
    if kind == "soundingearth" and "source" not in row:
        audio = AUDIO_SOURCES.index("aporee")  # SoundingEarth has one audio source, Radio Aporee
    else:
        audio = audio_source_index(row.get("source"), sample=sample, path=path)
    caption = caption_source_index(row.get("audio_caption_source"), sample=sample, path=path)
    present = {
        "latlon": lat is not None and lon is not None,
        "month": month is not None,
        "hour": hour is not None,
        "audio_source": audio is not None,
        "caption_source": caption is not None,
    }
    mask = np.array([1.0 if present[f] else 0.0 for f in META_FIELDS], dtype=np.float32)
    return SampleMeta(
        lat=float(lat) if present["latlon"] else 0.0,
        lon=float(lon) if present["latlon"] else 0.0,
        month=float(month) if month is not None else 0.0,
        hour=float(hour) if hour is not None else 0.0,
        audio_source=int(audio) if audio is not None else 0,
        caption_source=int(caption) if caption is not None else 0,
        meta_mask=mask,
    )
