"""An IRSA Galactic Dust Reddening and Extinction stand-in, as astroquery's ``IrsaDust`` asks.

``astroquery.ipac.irsa.irsa_dust.IrsaDust.get_query_table(coord)`` (and ``get_extinction_table``,
``get_image_list``) POST a form to ``https://irsa.ipac.caltech.edu/cgi-bin/DUST/nph-dust`` with
``locstr="<ra> <dec>"`` (degrees, or an object name) and optionally ``regSize`` (deg), and parse
an XML ``<results status="ok">`` with ``<input>`` and three ``<result>`` sections (E(B-V)
Reddening, 100 Micron Emission, Dust Temperature), each with ``<statistics>``. The E(B-V) section
gives ``refPixelValueSFD`` (Schlegel et al. 1998) and ``refPixelValueSandF`` (Schlafly and
Finkbeiner 2011, 0.86 of SFD) and a ``<table>`` URL to the per-filter extinction table this app
also serves.

The sandbox's dust is smooth and deterministic: E(B-V)_SFD = 0.025 / sin|b| (capped at 3 mag near
the plane), modulated by 30 % with Galactic longitude and latitude.
"""

from __future__ import annotations

import math
from xml.sax.saxutils import escape

from astropy import units as u
from astropy.coordinates import SkyCoord
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import PlainTextResponse, Response

__all__ = ["DUST_PATH", "create_app", "ebv_sfd"]

DUST_PATH = "/cgi-bin/DUST/nph-dust"

# A/E(B-V) per filter: (name, effective wavelength in microns, SandF ratio, SFD ratio).
_FILTERS = (
    ("SDSS u", 0.3587, 4.239, 5.155),
    ("SDSS g", 0.4717, 3.303, 3.793),
    ("SDSS r", 0.6165, 2.285, 2.751),
    ("SDSS i", 0.7476, 1.698, 2.086),
    ("SDSS z", 0.8923, 1.263, 1.479),
    ("PS1 g", 0.4810, 3.172, 3.688),
    ("PS1 r", 0.6170, 2.271, 2.641),
    ("PS1 i", 0.7520, 1.682, 1.956),
    ("PS1 z", 0.8660, 1.322, 1.537),
)


def ebv_sfd(ra: float, dec: float) -> float:
    """The sandbox's SFD E(B-V) at an ICRS position (mag)."""
    gal = SkyCoord(ra * u.deg, dec * u.deg, frame="icrs").galactic
    b = math.radians(float(gal.b.deg))
    ell = math.radians(float(gal.l.deg))
    base = min(0.025 / max(abs(math.sin(b)), 0.025 / 3.0), 3.0)
    return round(base * (1.0 + 0.3 * math.sin(3.0 * ell) * math.cos(2.0 * b)), 4)


def _parse_locstr(locstr: str) -> tuple[float, float]:
    parts = locstr.replace(",", " ").split()
    try:
        return float(parts[0]) % 360.0, float(parts[1])
    except (IndexError, ValueError):
        message = f"the sandbox reads locstr as '<ra> <dec>' in degrees, got {locstr!r}"
        raise ValueError(message) from None


def _stat(tag: str, value: float, unit: str) -> str:
    return f"<{tag}>\n  {value:.4f} ({unit})\n</{tag}>"


def _result(desc: str, stats: list[str], coord: str, extra: str = "") -> str:
    return (
        f"<result>\n<desc>\n{desc}\n</desc>\n<data>\n{extra}</data>\n<statistics>\n"
        + "\n".join(stats[:2])
        + f"\n<refCoordinate>\n{coord}\n</refCoordinate>\n"
        + "\n".join(stats[2:])
        + "\n</statistics>\n</result>"
    )


def create_app() -> FastAPI:
    """The stand-in for ``https://irsa.ipac.caltech.edu/cgi-bin/DUST/nph-dust``."""
    app = FastAPI(title="IRSA dust (followup sandbox)")

    @app.api_route(DUST_PATH, methods=["GET", "POST"])
    async def dust(request: Request) -> Response:
        form = dict(await request.form()) if request.method == "POST" else {}
        form |= dict(request.query_params)
        try:
            ra, dec = _parse_locstr(str(form.get("locstr", "")))
        except ValueError as exc:
            body = f'<results status="error"><message>{exc}</message></results>'
            return Response(body, media_type="text/xml")
        if not -90 <= dec <= 90:
            raise HTTPException(400, "dec must be within [-90, 90]")
        size = float(form.get("regSize", 5.0))
        sfd = ebv_sfd(ra, dec)
        sandf = round(0.86 * sfd, 4)
        coord = f"{ra:.6f} {dec:.6f} equ J2000"
        base = str(request.base_url).rstrip("/")
        table_url = f"{base}/workspace/sandbox/extinction.tbl?ra={ra:.6f}&dec={dec:.6f}"
        ext_stats = []
        for kind in ("refPixelValue", "meanValue", "std", "maxValue", "minValue"):
            for system, value in (("SandF", sandf), ("SFD", sfd)):
                number = 0.02 * value if kind == "std" else value
                ext_stats.append(_stat(f"{kind}{system}", number, "mag"))
        em = 0.8 + 60.0 * sfd
        em_stats = [_stat(k, em, "MJy/sr") for k in ("refPixelValue",)]
        em_stats += [_stat(k, em, "MJy/sr") for k in ("meanValue", "std", "maxValue", "minValue")]
        t_stats = [_stat(k, 17.6, "K") for k in ("refPixelValue",)]
        t_stats += [_stat(k, 17.6, "K") for k in ("meanValue", "std", "maxValue", "minValue")]
        body = "\n".join(
            [
                '<?xml version="1.0"?>',
                '<results status="ok">',
                f"<input>\n<objname>{coord}</objname>\n<regSize>\n{size} deg\n</regSize>\n</input>",
                _result(
                    "E(B-V) Reddening",
                    ext_stats,
                    coord,
                    f"<image>\n{base}/workspace/sandbox/ebv.fits\n</image>\n"
                    f"<table>\n{escape(table_url)}\n</table>\n",
                ),
                _result(
                    "100 Micron Emission",
                    em_stats,
                    coord,
                    f"<image>\n{base}/workspace/sandbox/i100.fits\n</image>\n",
                ),
                _result(
                    "Dust Temperature",
                    t_stats,
                    coord,
                    f"<image>\n{base}/workspace/sandbox/temp.fits\n</image>\n",
                ),
                "</results>",
            ]
        )
        return Response(body, media_type="text/xml")

    @app.get("/workspace/sandbox/extinction.tbl")
    def extinction_table(ra: float, dec: float) -> PlainTextResponse:
        sfd = ebv_sfd(ra, dec)
        lines = [
            f"\\Coordinates = sandbox (  {ra:.9f}    {dec:.9f} equ J2000)",
            f"\\E(B-V)_SFD_1998 =     {sfd:.3f} (mag)",
            "|Filter_name         |LamEff      |A_over_E_B_V_SandF      |A_SandF                 "
            "|A_over_E_B_V_SFD        |A_SFD                   |",
            "|char                |float       |float                   |float                   "
            "|float                   |float                   |",
            "|                    |microns     |                        |mags                    "
            "|                        |mags                    |",
        ]
        for name, lam, r_sandf, r_sfd in _FILTERS:
            lines.append(
                f" {name:<20} {lam:<12.4f} {r_sandf:<24.3f} {r_sandf * sfd:<24.3f} "
                f"{r_sfd:<24.3f} {r_sfd * sfd:<24.3f}"
            )
        return PlainTextResponse("\n".join(lines) + "\n")

    return app
