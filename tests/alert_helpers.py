"""Helpers of the alert tests: tiny multi-order sky maps and the project's own alert fixtures.

Run ``python tests/alert_helpers.py`` to regenerate the LVK fixtures under tests/data/alerts/.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data" / "alerts"


def make_multiorder_skymap(
    ra_deg: float = 150.0,
    dec_deg: float = -30.0,
    sigma_deg: float = 15.0,
    *,
    order: int = 1,
    distmean: float = 120.0,
    diststd: float = 30.0,
    object_name: str = "MS250101ab",
) -> bytes:
    """A multi-order (NUNIQ) HEALPix FITS map of a Gaussian blob, as BAYESTAR writes them.

    Every pixel is at ``order`` (nside 2**order); the columns are UNIQ, PROBDENSITY (1/sr) and the
    distance ansatz DISTMU, DISTSIGMA (Mpc), DISTNORM (1/Mpc2).
    """
    import astropy_healpix as ah
    from astropy import units as u
    from astropy.io import fits
    from astropy.table import Table

    nside = 2**order
    npix = 12 * nside**2
    ipix = np.arange(npix)
    lon, lat = ah.healpix_to_lonlat(ipix, nside, order="nested")
    ra, dec = np.deg2rad(ra_deg), np.deg2rad(dec_deg)
    cos_d = np.sin(lat.to_value(u.rad)) * np.sin(dec) + np.cos(lat.to_value(u.rad)) * np.cos(
        dec
    ) * np.cos(lon.to_value(u.rad) - ra)
    dist = np.arccos(np.clip(cos_d, -1, 1))
    weight = np.exp(-0.5 * (dist / np.deg2rad(sigma_deg)) ** 2) + 1e-12
    pixel_area = 4 * np.pi / npix
    prob = weight / weight.sum()
    table = Table(
        {
            "UNIQ": (4 * nside**2 + ipix).astype(np.int64),
            "PROBDENSITY": prob / pixel_area,
            "DISTMU": np.full(npix, distmean),
            "DISTSIGMA": np.full(npix, diststd),
            "DISTNORM": np.full(npix, 1.0 / (distmean**2 + diststd**2)),
        }
    )
    table["PROBDENSITY"].unit = u.sr**-1
    table["DISTMU"].unit = u.Mpc
    table["DISTSIGMA"].unit = u.Mpc
    table["DISTNORM"].unit = u.Mpc**-2
    hdu = fits.table_to_hdu(table)
    header = hdu.header
    header["PIXTYPE"] = "HEALPIX"
    header["ORDERING"] = "NUNIQ"
    header["COORDSYS"] = "C"
    header["MOCORDER"] = order
    header["INDXSCHM"] = "EXPLICIT"
    header["MOC"] = True
    header["OBJECT"] = object_name
    header["DATE-OBS"] = "2025-01-01T00:00:00.000000"
    header["DISTMEAN"] = distmean
    header["DISTSTD"] = diststd
    header["CREATOR"] = "followup tests"
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buffer)
    return buffer.getvalue()


def write_lvk_fixtures() -> None:
    """Write the LVK JSON fixtures (tiny sky maps) under tests/data/alerts/."""
    from followup.alerts.mock import make_lvk_alert

    skymap = make_multiorder_skymap(object_name="S250101ab")
    combined = make_multiorder_skymap(
        sigma_deg=5.0, distmean=100.0, diststd=20.0, object_name="MS250101cd"
    )
    issued = datetime(2025, 1, 1, 12, 1, 7, tzinfo=UTC)
    event = datetime(2025, 1, 1, 11, 57, 26, 395000, tzinfo=UTC)
    (DATA / "lvk-S250101ab-preliminary.json").write_bytes(
        make_lvk_alert(
            "S250101ab",
            "PRELIMINARY",
            skymap=skymap,
            issued_at=issued,
            event_time=event,
            far=3.2e-10,
        )
    )
    (DATA / "lvk-MS250101cd-update-extcoinc.json").write_bytes(
        make_lvk_alert(
            "MS250101cd",
            "UPDATE",
            skymap=skymap,
            issued_at=issued,
            event_time=event,
            external_coinc={
                "combined_skymap": combined,
                "observatory": "Swift",
                "time_coincidence_far": 1e-8,
                "time_sky_position_coincidence_far": 2e-9,
            },
        )
    )
    (DATA / "lvk-S250101ab-retraction.json").write_bytes(
        make_lvk_alert("S250101ab", "RETRACTION", issued_at=datetime(2025, 1, 1, 13, tzinfo=UTC))
    )
    # The first 1500 bytes of a real-format alert: what a cut connection leaves.
    preliminary = (DATA / "lvk-S250101ab-preliminary.json").read_bytes()
    (DATA / "invalid-lvk-truncated.json").write_bytes(preliminary[:1500])


if __name__ == "__main__":
    write_lvk_fixtures()
