"""What the sky holds on one frame, as JSON-ready records (the control app's truth endpoint).

For tests and benchmarks: each transient's true magnitude and electrons with its host, each minor
planet's position at mid-exposure, the satellite trail, the frame's conditions and depth.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from sandbox.sky.model import CATALOG_BAND, mid_exposure
from sandbox.specs import FrameSpec

if TYPE_CHECKING:
    from sandbox.sky.synthetic import SyntheticSky

__all__ = ["frame_truth_record"]


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def frame_truth_record(sky: SyntheticSky, spec: FrameSpec) -> dict[str, Any]:
    """Everything true about a science frame.

    Returns:
        ``basename``, ``band``, ``mid_exposure`` (ISO), ``realistic``, ``conditions`` (the
        :class:`~sandbox.sky.model.FrameConditions` fields), ``depth_5sigma``,
        ``catalog_depth`` (r of the reference catalogue), ``transients`` (``name``, ``ra``,
        ``dec``, ``x``, ``y`` 0-based, ``mag``, ``flux_e``, ``flux_ujy``, ``host``: ``name``,
        ``ra``, ``dec``, ``mag`` in the band, ``separation_arcsec``, ``sersic_n``,
        ``r_eff_arcsec``, or None), ``minor_planets`` (``number``, ``name``, ``ra``, ``dec``,
        ``x``, ``y``, ``mag``) and ``satellite_trail`` (``x0``, ``y0``, ``angle_deg``,
        ``e_per_px``, or None).
    """
    truth = sky.frame_truth(spec)
    wcs = truth.wcs
    band = spec.filter or ""
    ny, nx = sky.shape
    transients = []
    by_name = {t.name: t for t in sky.transients}
    for row in truth.transients:
        transient = by_name[str(row["name"])]
        host = None
        if transient.host is not None and sky.realistic:
            hra, hdec = transient.host.position(transient)
            galaxies = sky.galaxies(hra, hdec, 1.0 / 3600.0)
            match = [
                g
                for g in galaxies
                if str(g["id"]) == (transient.host.name or f"{transient.name}-host")
            ]
            mag = float(match[0][f"{CATALOG_BAND.get(band, 'r')}mag"]) if match else None
            host = {
                "name": transient.host.name or f"{transient.name}-host",
                "ra": hra,
                "dec": hdec,
                "mag": mag,
                "separation_arcsec": math.hypot(*transient.host.offset_arcsec),
                "sersic_n": transient.host.sersic_n,
                "r_eff_arcsec": transient.host.r_eff_arcsec,
            }
        mag = float(row["mag"])
        transients.append(
            {
                "name": str(row["name"]),
                "ra": float(row["ra"]),
                "dec": float(row["dec"]),
                "x": float(row["x"]),
                "y": float(row["y"]),
                "mag": mag,
                "flux_e": float(row["flux_e"]),
                "flux_ujy": 10 ** (-0.4 * (mag - 23.9)),
                "host": host,
            }
        )
    planets = []
    mid = mid_exposure(spec)
    centre = wcs.wcs.crval
    radius = math.hypot(nx, ny) / 2 * sky.pixel_scale_arcsec / 3600.0
    if spec.configuration_type == "EXPOSE":
        for planet, ra, dec in sky.minor_planets_at(
            float(centre[0]), float(centre[1]), radius, mid
        ):
            x, y = wcs.all_world2pix(np.array([[ra, dec]]), 0)[0]
            if not (0 <= x < nx and 0 <= y < ny):
                continue
            planets.append(
                {
                    "number": planet.number,
                    "name": planet.name,
                    "ra": ra,
                    "dec": dec,
                    "x": float(x),
                    "y": float(y),
                    "mag": planet.magnitude(band),
                }
            )
    trail = sky.trail(spec)
    return {
        "basename": spec.basename,
        "band": spec.filter,
        "mid_exposure": mid.isoformat(),
        "realistic": sky.realistic,
        "conditions": asdict(truth.conditions),
        "depth_5sigma": _finite(truth.depth_5sigma),
        "catalog_depth": sky.catalog_depth,
        "transients": transients,
        "minor_planets": planets,
        "satellite_trail": asdict(trail) if trail is not None else None,
    }
