"""An IMCCE SkyBoT stand-in: the synthetic sky's minor planets, as astroquery asks for them.

``astroquery.imcce.Skybot.cone_search(coord, rad, epoch)`` sends ``GET`` to
``https://ssp.imcce.fr/webservices/skybot/api/conesearch.php`` with ``-ra``, ``-dec`` (deg),
``-rd`` (deg), ``-ep`` (Julian date), ``-loc`` (observer code), ``-filter`` (arcsec),
``-objFilter`` (``111``), ``-refsys=EQJ2000``, ``-output=all``, ``-mime=votable``, and reads the
VOTable's fields by ID (``num``, ``name``, ``ra`` as h:m:s, ``de`` as d:m:s, ``class``,
``magV``, ``errpos``, ``angdist``, ``dracosdec``, ``ddec``, ``dgeo``, ``dhelio``, ``_raj2000``,
``_decj2000``, ``externallink``). Point astroquery's ``conf.skybot_server`` at this app's
``/webservices/skybot/api/conesearch.php``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from xml.sax.saxutils import escape

import numpy as np
from astropy import units as u
from astropy.coordinates import Angle
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import Response

from sandbox.sky import SyntheticSky
from sandbox.sky.model import angular_separation_deg

__all__ = ["CONE_SEARCH_PATH", "create_app", "jd_to_datetime"]

CONE_SEARCH_PATH = "/webservices/skybot/api/conesearch.php"

_FIELDS = (
    ("num", "Num", 'datatype="char" arraysize="6"'),
    ("name", "Name", 'datatype="char" arraysize="32"'),
    ("ra", "RA", 'datatype="char" arraysize="13" unit="h:m:s"'),
    ("de", "DEC", 'datatype="char" arraysize="13" unit="d:m:s"'),
    ("class", "Class", 'datatype="char" arraysize="24"'),
    ("magV", "Mv", 'datatype="float"'),
    ("errpos", "ErrPos", 'datatype="float" unit="arcsec"'),
    ("angdist", "d", 'datatype="float" unit="arcsec"'),
    ("dracosdec", "dRAcosDec", 'datatype="double" unit="arcsec/h"'),
    ("ddec", "dDEC", 'datatype="double" unit="arcsec/h"'),
    ("dgeo", "Dgeo", 'datatype="double" unit="AU"'),
    ("dhelio", "Dhelio", 'datatype="double" unit="AU"'),
    ("_raj2000", "_RAJ2000", 'datatype="double" unit="deg"'),
    ("_decj2000", "_DECJ2000", 'datatype="double" unit="deg"'),
    ("externallink", "ExternalLink", 'datatype="char" arraysize="*"'),
)


def jd_to_datetime(jd: float) -> datetime:
    """UTC datetime of a Julian date."""
    return datetime(2000, 1, 1, 12, tzinfo=UTC) + timedelta(days=jd - 2451545.0)


def _votable(rows: list[list[str]], ra: float, dec: float, radius_arcsec: float) -> str:
    fields = "\n".join(f'<FIELD ID="{fid}" name="{name}" {attrs}/>' for fid, name, attrs in _FIELDS)
    data = "\n".join(
        "<TR>" + "".join(f"<TD>{escape(v)}</TD>" for v in row) + "</TR>" for row in rows
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<VOTABLE version="1.3" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">
<INFO name="QUERY_STATUS" value="OK"/>
<RESOURCE name="Skybot.ConeSearch">
<PARAM ID="fovRA" name="RA" datatype="double" unit="deg" value="{ra}"/>
<PARAM ID="fovDEC" name="DEC" datatype="double" unit="deg" value="{dec}"/>
<PARAM ID="fovSR" name="FOV" datatype="double" unit="arcsec" value="{radius_arcsec}"/>
<TABLE ID="SkybotConeSearch_results" name="SkybotConeSearch" nrows="{len(rows)}">
{fields}
<DATA><TABLEDATA>
{data}
</TABLEDATA></DATA>
</TABLE>
</RESOURCE>
</VOTABLE>
"""


def create_app(sky: SyntheticSky) -> FastAPI:
    """The stand-in for ``https://ssp.imcce.fr/webservices/skybot/api/conesearch.php``."""
    app = FastAPI(title="IMCCE SkyBoT (followup sandbox)")

    @app.get(CONE_SEARCH_PATH)
    def cone_search(
        ra: float = Query(alias="-ra"),
        dec: float = Query(alias="-dec", ge=-90, le=90),
        rd: float = Query(alias="-rd", gt=0, le=10),
        ep: str = Query(alias="-ep"),
        position_filter: float = Query(120.0, alias="-filter"),
    ) -> Response:
        try:
            when = jd_to_datetime(float(ep))
        except ValueError:
            raise HTTPException(400, "-ep must be a Julian date") from None
        rows = []
        for planet, pra, pdec in sky.minor_planets_at(ra % 360.0, dec, rd, when):
            distance = float(angular_separation_deg(ra, dec, np.array([pra]), np.array([pdec]))[0])
            rows.append(
                [
                    str(planet.number),
                    planet.name,
                    Angle(pra, u.deg).to_string(unit=u.hourangle, sep=" ", precision=4, pad=True),
                    Angle(pdec, u.deg).to_string(
                        unit=u.deg, sep=" ", precision=3, pad=True, alwayssign=True
                    ),
                    "MB>Middle",
                    f"{planet.v_mag:.2f}",
                    f"{min(position_filter, 0.05):.3f}",
                    f"{distance * 3600.0:.3f}",
                    f"{planet.dra_arcsec_h:.4f}",
                    f"{planet.ddec_arcsec_h:.4f}",
                    "1.812",
                    "2.731",
                    f"{pra:.9f}",
                    f"{pdec:.9f}",
                    f"https://ssp.imcce.fr/webservices/ssodnet/api/ssocard/{planet.number}",
                ]
            )
        body = _votable(rows, ra, dec, rd * 3600.0)
        return Response(body, media_type="application/x-votable+xml")

    return app
