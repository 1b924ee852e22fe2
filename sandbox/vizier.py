"""A Vizier stand-in serving ATLAS-REFCAT2 and GLADE+ from the synthetic sky, as astroquery asks.

astroquery's ``Vizier.query_region`` POSTs a newline-separated form to ``/viz-bin/votable``:
``-source=J/ApJ/867/105/refcat2``, ``-c=<ra><+|-><dec>`` (degrees), the radius as ``-c.rd``
(degrees), ``-c.rm`` (arcmin) or ``-c.rs`` (arcsec), ``-out=...`` columns, ``-out.max`` and column
filters such as ``rmag=<19.0``. The answer is a VOTable whose table is named after the catalogue.
With this stand-in the production catalogue code (``followup.catalogs.VizierCatalog``) runs
unchanged against the sandbox, and the stars it returns are the ones the frames were made from.
``-source=VII/291/gladep`` answers with the sky's GLADE+-like galaxies (``GLADE+``, ``RAJ2000``,
``DEJ2000``, ``Bmag``, ``Kmag``, ``dL``, ``e_dL``, ``M*``; filters such as ``dL=<80``), so
``followup.galaxies.VizierGladeCatalog`` targets the galaxies the realistic sky renders.
"""

from __future__ import annotations

import io
import re

import numpy as np
from astropy.io.votable import from_table
from astropy.table import Table
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response

from sandbox.sky import SyntheticSky

__all__ = ["GLADE", "REFCAT2", "create_app", "parse_query"]

REFCAT2 = "J/ApJ/867/105/refcat2"
GLADE = "VII/291/gladep"
_CENTRE = re.compile(r"^\s*([0-9.]+)\s*([+-][0-9.]+)\s*$")
_RADIUS_UNITS = {"-c.rd": 1.0, "-c.rm": 1 / 60.0, "-c.rs": 1 / 3600.0}
_FILTER = re.compile(r"^\s*([<>]=?|=)?\s*([-+0-9.eE]+)\s*$")


def parse_query(body: str) -> dict[str, str]:
    """The ``key=value`` lines of a Vizier form (astroquery joins them with newlines)."""
    fields: dict[str, str] = {}
    for line in re.split(r"[\n&]", body):
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def _apply_filter(table: Table, column: str, condition: str) -> Table:
    match = _FILTER.match(condition)
    if match is None or column not in table.colnames:
        raise HTTPException(400, f"cannot apply the constraint {column}={condition}")
    op, value = match.group(1) or "=", float(match.group(2))
    data = np.asarray(table[column], dtype=float)
    keep = {
        "<": data < value,
        "<=": data <= value,
        ">": data > value,
        ">=": data >= value,
        "=": data == value,
    }[op]
    return table[keep & np.isfinite(data)]


def create_app(sky: SyntheticSky) -> FastAPI:
    """The stand-in for ``https://vizier.cds.unistra.fr/viz-bin/votable`` (REFCAT2, GLADE+)."""
    app = FastAPI(title="Vizier (followup sandbox)")

    @app.post("/viz-bin/votable")
    async def votable(request: Request) -> Response:
        fields = parse_query((await request.body()).decode("utf-8", "replace"))
        source = fields.get("-source", "")
        if source not in (REFCAT2, GLADE):
            raise HTTPException(
                404, f"the sandbox serves only {REFCAT2} and {GLADE}, not {source!r}"
            )
        match = _CENTRE.match(fields.get("-c", ""))
        if match is None:
            raise HTTPException(400, "-c must be '<ra><+|-><dec>' in degrees")
        ra, dec = float(match.group(1)), float(match.group(2))
        radius = next(
            (float(fields[k]) * scale for k, scale in _RADIUS_UNITS.items() if k in fields), None
        )
        if radius is None:
            raise HTTPException(400, "a radius (-c.rd, -c.rm or -c.rs) is required")
        query = sky.reference_catalog if source == REFCAT2 else sky.glade_catalog
        table = query(ra % 360.0, dec, radius)
        for key, value in fields.items():
            if not key.startswith("-") and key in table.colnames:
                table = _apply_filter(table, key, value)
        wanted = [c for c in fields.get("-out", "").split(",") if c and c in table.colnames]
        if wanted:
            table = table[wanted]
        limit = fields.get("-out.max", "unlimited")
        if limit != "unlimited":
            table = table[: int(limit)]
        table.meta.clear()
        vot = from_table(table)
        vot.resources[0].tables[0].ID = source.replace("/", "_")
        vot.resources[0].tables[0].name = source
        buffer = io.BytesIO()
        vot.to_xml(buffer)
        return Response(buffer.getvalue(), media_type="text/xml")

    return app
