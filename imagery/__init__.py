"""Bring your own imagery: real aerial and satellite scenes read with rasterio (GDAL) and seen as the model saw
its training views.

``imagery.scene`` opens a GeoTIFF / COG / JPEG 2000 file, a folder of per-band files (a Sentinel-2 granule's
B04/B03/B02) or an MBTiles file, checks its georeference, band mapping, bit depth and no-data, and works out the
stretch that turns the data into 8-bit RGB. ``imagery.views`` cuts the model's view of a place out of it: a square of
ground of the zoom's extent, north up, reprojected and resampled to the model's input size with windowed reads (a
scene is never read whole). ``imagery.tiles`` turns scenes into a map tile source (``sat2sound map --imagery``) and a
bundle renderer (``sat2sound bundle --imagery``).

A build-side room (it needs rasterio and GDAL, which a phone has not): the device side reads the bundle's MBTiles,
never this room. It must not import torch or any room but ``contracts``, so that ``core`` (maps), ``gallery``
(queries) and ``bundle`` can all stand on it.
"""
