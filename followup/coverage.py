"""What was observed and how deep: frame depths, the coverage table per field and band, a sky plot.

"No counterpart brighter than X over Y % of the region" needs, for every observed field, the depth
its frames reached. A frame's depth is measured once (5 sigma from empty apertures,
:func:`followup.photometry.frame_depth`) and kept in the ledger; the coverage table and the sky
plot are remade from those depths whenever frames land.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CoverageRow",
    "FieldDepth",
    "FrameDepth",
    "coverage_rows",
    "covered_probability",
    "plot_coverage",
]


class FrameDepth(BaseModel):
    """How deep one frame reached.

    Attributes:
        frame: Frame basename.
        band: Filter code (``rp``, ``gp``...).
        mjd: Mid-exposure MJD.
        ra: Frame centre right ascension (deg).
        dec: Frame centre declination (deg).
        footprint: The frame's corners as (ra, dec) pairs in degrees, in order.
        depth_5sigma: AB magnitude of a point source at S/N 5, from the scatter of empty
            apertures over the frame (aperture-corrected to total flux).
        zero_point: The zero point it was computed with (AB mag of 1 e-/s).
        n_apertures: Empty apertures the noise was measured on.
        telescope: ``TELID`` of the frame, when given.
        instrument: ``INSTRUME`` of the frame, when given.
    """

    model_config = ConfigDict(frozen=True)

    frame: str
    band: str
    mjd: float
    ra: float
    dec: float
    footprint: list[tuple[float, float]] = Field(default_factory=list)
    depth_5sigma: float
    zero_point: float
    n_apertures: int
    telescope: str | None = None
    instrument: str | None = None


@dataclass(frozen=True)
class FieldDepth:
    """A frame's depth with the field (target) it observed.

    Attributes:
        field: The target's name.
        ra: The target's right ascension (deg).
        dec: The target's declination (deg).
        probability: The sky map's probability the target holds (0 for a point target).
        depth: The frame's depth.
    """

    field: str
    ra: float
    dec: float
    probability: float
    depth: FrameDepth


class CoverageRow(BaseModel):
    """One row of the coverage table: a field in a band.

    Attributes:
        field: The target's name.
        ra: Its right ascension (deg).
        dec: Its declination (deg).
        probability: Sky-map probability in the field.
        band: Filter code.
        frames: Frames of the field in the band with a depth.
        depth_5sigma: The deepest of their 5-sigma depths (AB mag).
        median_depth_5sigma: Their median 5-sigma depth (AB mag).
        first_mjd: Mid-exposure MJD of the first of them.
        last_mjd: Mid-exposure MJD of the last of them.
    """

    field: str
    ra: float
    dec: float
    probability: float
    band: str
    frames: int
    depth_5sigma: float
    median_depth_5sigma: float
    first_mjd: float
    last_mjd: float


def coverage_rows(depths: Iterable[FieldDepth]) -> list[CoverageRow]:
    """The coverage table: one row per field and band, most probable fields first.

    Frames without a finite depth are left out. Depths are single-frame depths: the deepest one
    is what the field was searched to in that band.
    """
    groups: dict[tuple[str, str], list[FieldDepth]] = {}
    for item in depths:
        if math.isfinite(item.depth.depth_5sigma):
            groups.setdefault((item.field, item.depth.band), []).append(item)
    rows = []
    for (name, band), items in groups.items():
        values = sorted(i.depth.depth_5sigma for i in items)
        mid = len(values) // 2
        median = values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])
        first = items[0]
        rows.append(
            CoverageRow(
                field=name,
                ra=first.ra,
                dec=first.dec,
                probability=first.probability,
                band=band,
                frames=len(items),
                depth_5sigma=values[-1],
                median_depth_5sigma=median,
                first_mjd=min(i.depth.mjd for i in items),
                last_mjd=max(i.depth.mjd for i in items),
            )
        )
    rows.sort(key=lambda r: (-r.probability, r.field, r.band))
    return rows


def covered_probability(rows: Sequence[CoverageRow]) -> float:
    """Sky-map probability of the distinct fields in the table (fields do not overlap)."""
    return float(sum({r.field: r.probability for r in rows}.values()))


def plot_coverage(
    depths: Sequence[FieldDepth],
    *,
    planned: Sequence[tuple[str, float, float]] = (),
    title: str = "",
) -> bytes:
    """A sky plot of the observed frames coloured by depth, as PNG bytes.

    Each frame is drawn as its footprint (the deepest frame on top); ``planned`` fields
    ``(name, ra, dec)`` without frames are marked with a cross. The right ascension grows to the
    left, as on the sky.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    try:
        observed = [d for d in depths if math.isfinite(d.depth.depth_5sigma)]
        observed.sort(key=lambda d: d.depth.depth_5sigma)
        centre_ra = _centre_ra([d.depth.ra for d in observed] + [p[1] for p in planned])
        polygons = []
        values = []
        for item in observed:
            corners = item.depth.footprint or [(item.depth.ra, item.depth.dec)] * 4
            polygons.append([(_wrap(ra, centre_ra), dec) for ra, dec in corners])
            values.append(item.depth.depth_5sigma)
        if polygons:
            collection = PolyCollection(
                polygons, array=values, cmap="viridis", edgecolors="k", linewidths=0.4, alpha=0.8
            )
            ax.add_collection(collection)
            fig.colorbar(collection, ax=ax, label="5σ depth (AB mag)")
        seen = {d.field for d in observed}
        todo = [p for p in planned if p[0] not in seen]
        if todo:
            ax.scatter(
                [_wrap(p[1], centre_ra) for p in todo],
                [p[2] for p in todo],
                marker="x",
                color="0.5",
                label="planned, not observed",
            )
            ax.legend(loc="best", fontsize="small")
        ax.autoscale_view()
        ax.invert_xaxis()
        ax.set_xlabel("RA (deg)")
        ax.set_ylabel("Dec (deg)")
        ax.set_title(title or "observed fields")
        ax.grid(alpha=0.3)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        return buf.getvalue()
    finally:
        plt.close(fig)


def _centre_ra(values: Sequence[float]) -> float:
    """A right ascension near the middle of ``values`` (circular mean), to unwrap around it."""
    if not values:
        return 180.0
    x = sum(math.cos(math.radians(v)) for v in values)
    y = sum(math.sin(math.radians(v)) for v in values)
    return math.degrees(math.atan2(y, x)) % 360.0


def _wrap(ra: float, centre: float) -> float:
    """``ra`` within 180 degrees of ``centre``, so fields across 0h stay together."""
    return centre + ((ra - centre + 180.0) % 360.0) - 180.0
