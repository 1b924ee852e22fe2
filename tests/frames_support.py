"""Helpers shared by the frames tests: frame specs and isolated positions on a synthetic sky."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from astropy.wcs import WCS

from sandbox.sky import SyntheticSky
from sandbox.specs import FrameSpec

START = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)
RA, DEC = 150.0, 2.2  # COSMOS-like high-latitude field


def spec(
    number: int,
    *,
    kind: str = "EXPOSE",
    level: int = 91,
    band: str | None = "rp",
    exptime: float = 300.0,
    ra: float = RA,
    dec: float = DEC,
    seed: int = 0,
    when: datetime | None = None,
) -> FrameSpec:
    """A frame spec with an LCO-like basename."""
    code = {"EXPOSE": "e", "BIAS": "b", "DARK": "d", "SKYFLAT": "f"}[kind]
    return FrameSpec(
        basename=f"cpt1m010-fa16-20250301-{number:04d}-{code}{level:02d}",
        frame_number=number,
        reduction_level=level,
        configuration_type=kind,  # type: ignore[arg-type]
        ra=ra,
        dec=dec,
        filter=band if kind in ("EXPOSE", "SKYFLAT") else None,
        exposure_time_s=0.0 if kind == "BIAS" else exptime,
        date_obs=when or START + timedelta(minutes=number),
        request_id=1234 if kind == "EXPOSE" else None,
        group_id=99 if kind == "EXPOSE" else None,
        group_name="S250301ab-field01" if kind == "EXPOSE" else None,
        target_name="S250301ab-field01" if kind == "EXPOSE" else "",
        seed=seed,
    )


def isolated_positions(
    sky: SyntheticSky,
    wcs: WCS,
    n: int,
    *,
    rng: np.random.Generator,
    min_separation_px: float = 25.0,
    border_px: float = 40.0,
    faintest: float = 23.5,
) -> np.ndarray:
    """(n, 2) sky positions (deg) at least ``min_separation_px`` from every star and each other."""
    ny, nx = sky.shape
    centre = wcs.wcs.crval
    stars = sky.stars(
        float(centre[0]),
        float(centre[1]),
        0.5 * np.hypot(nx, ny) * sky.pixel_scale_arcsec / 3600 + 0.01,
    )
    stars = stars[np.asarray(stars["rmag"]) < faintest]
    sx, sy = wcs.all_world2pix(np.asarray(stars["ra"]), np.asarray(stars["dec"]), 0)
    chosen: list[tuple[float, float]] = []
    for _ in range(20000):
        x = rng.uniform(border_px, nx - border_px)
        y = rng.uniform(border_px, ny - border_px)
        if len(sx) and np.min(np.hypot(sx - x, sy - y)) < min_separation_px:
            continue
        if chosen and min(np.hypot(cx - x, cy - y) for cx, cy in chosen) < 2 * min_separation_px:
            continue
        chosen.append((x, y))
        if len(chosen) == n:
            break
    assert len(chosen) == n, f"only {len(chosen)} isolated positions found"
    xy = np.array(chosen)
    ra, dec = wcs.all_pix2world(xy[:, 0], xy[:, 1], 0)
    return np.column_stack([ra, dec])
