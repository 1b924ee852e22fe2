"""HEALPix probability sky maps: read multi-order and flat maps, credible regions, distances.

Everything here is plain numpy + astropy + astropy-healpix (no healpy, no ligo.skymap). A
:class:`SkyMap` always holds the map in multi-order (NUNIQ) form: flat maps are converted on
read, merging sibling pixels that carry identical values (lossless, which recovers the original
multi-order map of a rasterised BAYESTAR map) and, optionally, the faint tail. Positions are ICRS
degrees; densities are given per square degree to users and kept per steradian inside.

Example:
    >>> sky = SkyMap.from_fits("bayestar.multiorder.fits")  # doctest: +SKIP
    >>> round(sky.area(0.9), 3)  # doctest: +SKIP
    30.975

The package splits by concern: :mod:`.sky` (the map), :mod:`.reading` (FITS input),
:mod:`.distance` (the distance ansatz), :mod:`.synthetic` (Gaussian test maps) and
:mod:`.pixels` (HEALPix constants and index helpers).
"""

from followup.skymap.distance import DistanceAlongSight, ansatz_moments, ansatz_parameters
from followup.skymap.pixels import MAX_ORDER, SR_PER_DEG2
from followup.skymap.reading import MAX_FLAT_NSIDE, MAX_SKYMAP_BYTES, read_skymap
from followup.skymap.sky import SkyMap, SkymapSource
from followup.skymap.synthetic import gaussian_skymap, make_gaussian_skymap

__all__ = [
    "MAX_FLAT_NSIDE",
    "MAX_ORDER",
    "MAX_SKYMAP_BYTES",
    "SR_PER_DEG2",
    "DistanceAlongSight",
    "SkyMap",
    "SkymapSource",
    "ansatz_moments",
    "ansatz_parameters",
    "gaussian_skymap",
    "make_gaussian_skymap",
    "read_skymap",
]
