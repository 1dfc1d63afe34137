"""Pictures of maps: the soundscape heat map beside the MODIS land-cover reference of the same region."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.maps.grid import BBox

# IGBP colours close to the MODIS land-cover legend.
IGBP_COLOURS = np.array([
    (70, 107, 159), (28, 82, 38), (34, 139, 34), (60, 160, 60), (90, 170, 80), (50, 130, 70), (190, 150, 100),
    (220, 200, 140), (150, 170, 80), (200, 210, 120), (180, 210, 120), (80, 160, 200), (240, 220, 90),
    (230, 30, 30), (200, 190, 80), (240, 250, 255), (200, 200, 200),
], dtype=np.uint8)


def landcover_image(bbox: BBox, width: int = 480) -> tuple[np.ndarray, np.ndarray]:
    """MODIS IGBP classes of the bbox sampled on a width-wide grid -> (RGB uint8, class indices)."""
    from world.landcover import landcover_class

    mid = np.radians((bbox.lat0 + bbox.lat1) / 2)
    height = max(1, int(round(width * (bbox.lat1 - bbox.lat0) / ((bbox.lon1 - bbox.lon0) * np.cos(mid)))))
    lats = bbox.lat1 - (np.arange(height) + 0.5) * (bbox.lat1 - bbox.lat0) / height
    lons = bbox.lon0 + (np.arange(width) + 0.5) * (bbox.lon1 - bbox.lon0) / width
    la, lo = np.meshgrid(lats, lons, indexing="ij")
    classes = np.asarray(landcover_class(la.ravel(), lo.ravel())).reshape(height, width)
    return IGBP_COLOURS[np.clip(classes, 0, len(IGBP_COLOURS) - 1)], classes


def save_map_png(path: Path, scores: np.ndarray, bbox: BBox, title: str, subtitle: str = "",
                 picture: np.ndarray | None = None) -> Path:
    """The MODIS reference beside the soundscape scores (no-data tiles grey); with ``picture`` (a real scene's
    imagery as the model's views see it) a third panel in front of them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    from world.landcover import IGBP_NAMES

    ref, classes = landcover_image(bbox)
    extent = (bbox.lon0, bbox.lon1, bbox.lat0, bbox.lat1)
    aspect = 1 / np.cos(np.radians((bbox.lat0 + bbox.lat1) / 2))
    panels = 2 if picture is None else 3
    fig, axes = plt.subplots(1, panels, figsize=(13 if panels == 2 else 16, 5.4), layout="constrained")
    if picture is not None:
        axes[0].imshow(picture, extent=extent, aspect=aspect)
        axes[0].set_title("the imagery (as the model's views are stretched)")
    axes[-2].imshow(ref, extent=extent, aspect=aspect, interpolation="nearest")
    axes[-2].set_title("MODIS MCD12C1 2019 land cover " + ("(reference)" if picture is None else "(0.05 degree)"))
    present = [c for c in np.unique(classes) if np.mean(classes == c) > 0.01]
    fig.legend(handles=[Patch(color=IGBP_COLOURS[c] / 255, label=IGBP_NAMES[c]) for c in present],
               loc="outside lower center", ncol=min(6, len(present)), fontsize=7, frameon=False)
    cmap = matplotlib.colormaps["magma"].copy()
    cmap.set_bad("#d9d9d9")
    im = axes[-1].imshow(np.ma.masked_invalid(scores), extent=extent, aspect=aspect, cmap=cmap,
                         interpolation="nearest")
    axes[-1].set_title(f"“{title}”" + (f"\n{subtitle}" if subtitle else ""), fontsize=10 if panels == 2 else 8)
    fig.colorbar(im, ax=axes[-1], shrink=0.8, label="cosine similarity")
    for ax in axes:
        ax.set_xlabel("longitude")
        ax.set_ylabel("latitude")
        if picture is not None:
            ax.xaxis.set_major_locator(MaxNLocator(4))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
