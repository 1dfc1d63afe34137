"""A contact sheet of a world folder: tiles with their zoom boxes, what the clip holds and what the captions say.

For looking, not measuring: one PNG (tile at zoom 5 with the zoom-3 and zoom-1 crops outlined, then platform,
place, date, present sources, the audio caption and the zoom-1/zoom-5 image captions), plus a few clips exported
beside it as .ogg (as stored) and .wav (decoded) so they can be listened to.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import numpy as np

from contracts.errors import DataError
from contracts.schema import ZOOM_CROP_FRACTION
from world.cover_classes import crop_box
from world.shards import read_split, shard_paths

_COLUMNS = ["sample_id", "source", "audio", "bingmap_image", "audio_caption", "audio_caption_source",
            "llava_caption_bingmap_zl1", "llava_caption_bingmap_zl5", "latitude", "longitude", "date", "gt_present",
            "gt_plausible", "gt_region"]


def _rows(dataset_dir: Path, split: str | None) -> list[dict]:
    if split:
        return read_split(dataset_dir, split, columns=_COLUMNS).to_pylist()
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = shard_paths(dataset_dir)
    if not paths:
        raise DataError("no Parquet shards found (expected data/{split}-*.parquet)", path=Path(dataset_dir) / "data")
    return pa.concat_tables([pq.read_table(p, columns=_COLUMNS) for p in paths]).to_pylist()


def contact_sheet(dataset_dir: Path, out_png: Path, n: int = 24, *, split: str | None = None, clips: int = 6
                  ) -> Path:
    """Write the sheet of ``n`` evenly spread samples to ``out_png`` and ``clips`` clips to ``<stem>_clips/``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import soundfile as sf
    from matplotlib.patches import Rectangle
    from PIL import Image

    dataset_dir, out_png = Path(dataset_dir), Path(out_png)
    if n < 1:
        raise DataError(f"a contact sheet needs at least one sample, got n={n}", field="n")
    if out_png.exists() and out_png.is_dir():
        raise DataError("the output path is a folder; give a .png file name", path=out_png)
    rows = _rows(dataset_dir, split)
    pick = np.unique(np.linspace(0, len(rows) - 1, min(n, len(rows))).round().astype(int))
    rows = [rows[i] for i in pick]
    cols = 2
    nrows = (len(rows) + cols - 1) // cols
    fig = plt.figure(figsize=(cols * 8.0, nrows * 2.9), dpi=90)
    for k, row in enumerate(rows):
        r, c = divmod(k, cols)
        img = np.asarray(Image.open(io.BytesIO(row["bingmap_image"]["bytes"])).convert("RGB"))
        px = img.shape[0]
        ax = fig.add_axes((c / cols + 0.005, 1 - (r + 1) / nrows + 0.01, 0.32 / cols * 2 * 0.45, 1 / nrows - 0.02))
        ax.imshow(img)
        for zoom, colour in ((3, "yellow"), (1, "red")):
            start, side = crop_box(px, ZOOM_CROP_FRACTION["bingmap"][zoom])
            ax.add_patch(Rectangle((start - 0.5, start - 0.5), side, side, fill=False, lw=1.2, ec=colour))
        ax.set_xticks([])
        ax.set_yticks([])
        wrap = textwrap.TextWrapper(width=88, max_lines=3, placeholder=" ...")
        lines = [
            f"{row['sample_id']}  [{row['source']}]  {row['latitude']:.3f}, {row['longitude']:.3f}  "
            f"{row['date']}  ({row['gt_region']})",
            "present: " + ", ".join(row["gt_present"]),
            "plausible: " + ", ".join(row["gt_plausible"]),
            *wrap.wrap(f"audio ({row['audio_caption_source']}): {row['audio_caption']}"),
            *wrap.wrap(f"zoom 1: {row['llava_caption_bingmap_zl1']}"),
            *wrap.wrap(f"zoom 5: {row['llava_caption_bingmap_zl5']}"),
        ]
        fig.text(c / cols + 0.15, 1 - r / nrows - 0.012, "\n".join(lines), va="top", ha="left", fontsize=7.2,
                 family="DejaVu Sans")
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
    plt.close(fig)

    clip_dir = out_png.parent / f"{out_png.stem}_clips"
    clip_dir.mkdir(exist_ok=True)
    for row in rows[:clips]:
        audio = row["audio"]
        ext = Path(audio.get("path") or "clip.ogg").suffix or ".ogg"
        (clip_dir / f"{row['sample_id']}{ext}").write_bytes(audio["bytes"])
        wave, sr = sf.read(io.BytesIO(audio["bytes"]), dtype="float32")
        sf.write(clip_dir / f"{row['sample_id']}.wav", wave, sr, subtype="PCM_16")
        caption = f"{row['audio_caption']}\npresent: {', '.join(row['gt_present'])}\n"
        (clip_dir / f"{row['sample_id']}.txt").write_text(caption)
    return out_png
