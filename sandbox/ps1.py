"""A Pan-STARRS1 image cutout stand-in (``ps1images.stsci.edu``): references without transients.

The real service is used in two steps:

1. ``GET /cgi-bin/ps1filenames.py?ra=<deg>&dec=<deg>&filters=<grizy>&type=stack`` answers a
   space-separated table with the header line
   ``projcell subcell ra dec filter mjd type filename shortname badflag`` and one row per filter;
2. ``GET /cgi-bin/fitscut.cgi?ra=<deg>&dec=<deg>&size=<pixels>&format=fits&red=<filename>``
   answers the FITS cutout (0.25 arcsec pixels, ``size`` up to 6000).

Here the cutout is :func:`sandbox.sky.survey.survey_cutout`: the synthetic sky's stars and
galaxies without any transient, with a TAN WCS and PS1's stack zero point
``25 + 2.5 log10(EXPTIME)`` (linear pixels; no ``BSOFTEN``/``BOFFSET`` asinh scaling). As the
real survey, it covers only dec > -30 deg.
"""

from __future__ import annotations

import math
import re

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import PlainTextResponse, Response

from sandbox.sky import SyntheticSky
from sandbox.sky.survey import PS1_BANDS, survey_cutout

__all__ = ["FILENAMES_PATH", "FITSCUT_PATH", "SOUTH_LIMIT_DEG", "create_app"]

FILENAMES_PATH = "/cgi-bin/ps1filenames.py"
FITSCUT_PATH = "/cgi-bin/fitscut.cgi"
SOUTH_LIMIT_DEG = -30.0
_FILENAME = re.compile(r"rings\.v3\.skycell\.(\d{4})\.(\d{3})\.stk\.([grizy])\.unconv\.fits$")


def _skycell(ra: float, dec: float) -> tuple[int, int]:
    """A projection cell and sky cell number of a position (a stand-in for PS1's tessellation)."""
    projcell = 635 + int((dec + 90.0) // 4.0) * 90 + int((ra % 360.0) // 4.0)
    subcell = int(((dec + 90.0) % 4.0) // 0.4) * 10 + int(((ra % 360.0) % 4.0) // 0.4)
    return projcell, subcell


def create_app(sky: SyntheticSky) -> FastAPI:
    """The stand-in for ``https://ps1images.stsci.edu/cgi-bin/{ps1filenames.py,fitscut.cgi}``."""
    app = FastAPI(title="PS1 image cutouts (followup sandbox)")

    @app.get(FILENAMES_PATH)
    def filenames(
        ra: float,
        dec: float = Query(ge=-90, le=90),
        filters: str = "grizy",
        type: str = "stack",
    ) -> PlainTextResponse:
        if type != "stack":
            raise HTTPException(400, "the sandbox serves stacks only (type=stack)")
        lines = ["projcell subcell ra dec filter mjd type filename shortname badflag"]
        if dec > SOUTH_LIMIT_DEG:
            projcell, subcell = _skycell(ra, dec)
            for band in filters:
                if band not in PS1_BANDS:
                    continue
                short = f"rings.v3.skycell.{projcell:04d}.{subcell:03d}.stk.{band}.unconv.fits"
                path = f"/rings.v3.skycell/{projcell:04d}/{subcell:03d}/{short}"
                lines.append(
                    f"{projcell} {subcell:03d} {ra:.6f} {dec:.6f} {band} 56575.0 stack "
                    f"{path} {short} 0"
                )
        return PlainTextResponse("\n".join(lines) + "\n")

    @app.get(FITSCUT_PATH)
    def fitscut(
        ra: float,
        dec: float = Query(ge=-90, le=90),
        size: int = Query(240, ge=8, le=6000),
        format: str = "fits",
        red: str = "",
    ) -> Response:
        if format != "fits":
            raise HTTPException(400, "the sandbox serves format=fits only")
        match = _FILENAME.search(red)
        if match is None:
            raise HTTPException(404, f"no such image {red!r}")
        if dec <= SOUTH_LIMIT_DEG or not math.isfinite(ra):
            raise HTTPException(404, "outside the PS1 3pi survey (dec > -30 deg)")
        data = survey_cutout(sky, ra % 360.0, dec, size, match.group(3))
        return Response(data, media_type="application/fits")

    return app
