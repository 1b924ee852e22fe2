"""GCN Circulars of what was found and what was not, in the style of real follow-up Circulars.

Two drafts, for the two results a tiling ends with:

* :func:`no_counterpart_circular`: "no new source brighter than X in N fields covering Y% of
  the 90% credible region", from the fields observed (:class:`ObservedField`, what a coverage
  table gives: field, band, 5-sigma depth, probability inside the field, when and with what);
* :func:`candidates_circular`: each candidate with its position in degrees and sexagesimal,
  its TNS name and host when known, the Galactic extinction there, and its photometry with
  T-T0 from the event time, the telescope and camera of every point.

Both open with the authors "report on behalf of the <team>:", give times in UT and magnitudes
in AB, and stay under GCN's ~60 lines (a long field list is summarised in one line, never cut
silently). The subject names the event as GCN derives it
(:func:`~followup.reporting.gcn.gcn_event_name`).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from datetime import datetime

from pydantic import BaseModel, Field

from followup.models import Measurement
from followup.reporting.bands import band_label
from followup.reporting.circular_text import (
    calibration_sentence,
    cited,
    finish,
    listed,
    mag_text,
    observed_when,
    opening,
    table,
    team_phrase,
    wrap,
)
from followup.reporting.equipment import equipment_of
from followup.reporting.extinction import Extinction
from followup.reporting.gcn import Circular, checked_subject
from followup.reporting.hermes import HermesData, HermesMessage, HermesPhotometry, HermesTarget

__all__ = [
    "CandidateFinding",
    "Coverage",
    "ObservedField",
    "candidates_circular",
    "median_extinction",
    "no_counterpart_circular",
    "non_detection_message",
    "sexagesimal",
]


class ObservedField(BaseModel):
    """One field observed, as a coverage table gives it (one row per field and band).

    Attributes:
        name: Field name (the target name of the tiling).
        ra: Field centre, ICRS degrees.
        dec: Field centre, ICRS degrees.
        band: LCO filter code (``rp``).
        depth: 5-sigma limiting AB magnitude reached in the field (the deepest frame or stack).
        probability: Sky-map probability inside the field (0 to 1).
        date_obs: Start of the first frame of the field in this band (UTC).
        telescope: ``LCO 1-m``...
        camera: ``Sinistro``...
        exposure_time_s: Total exposure in seconds, when known.
    """

    name: str = Field(min_length=1)
    ra: float = Field(ge=0, lt=360)
    dec: float = Field(ge=-90, le=90)
    band: str = Field(min_length=1)
    depth: float
    probability: float = Field(ge=0, le=1)
    date_obs: datetime
    telescope: str = "LCO 1-m"
    camera: str = "Sinistro"
    exposure_time_s: float | None = None


class Coverage(BaseModel):
    """What a tiling covered: its fields and the region they were chosen from.

    Attributes:
        fields: One row per field and band observed.
        credible_level: The credible region tiled (0.9 for the 90% region).
        probability_covered: Probability covered inside that region, counting overlaps once;
            default the sum over fields (one band per field).
        skymap: The sky map's name, for the text (``bayestar.multiorder.fits,1``).
        area_deg2: Area observed in square degrees, when known.
    """

    fields: list[ObservedField] = Field(min_length=1)
    credible_level: float = Field(default=0.9, gt=0, le=1)
    probability_covered: float | None = Field(default=None, ge=0, le=1)
    skymap: str | None = None
    area_deg2: float | None = Field(default=None, ge=0)

    @property
    def covered(self) -> float:
        """Probability covered (0 to 1)."""
        if self.probability_covered is not None:
            return self.probability_covered
        best: dict[str, float] = {}
        for f in self.fields:
            best[f.name] = max(best.get(f.name, 0.0), f.probability)
        return min(sum(best.values()), 1.0)

    @property
    def fraction_of_region(self) -> float:
        """Share of the credible region's probability covered (0 to 1)."""
        return min(self.covered / self.credible_level, 1.0)


class CandidateFinding(BaseModel):
    """A candidate counterpart to report.

    Attributes:
        name: Internal name (the target name).
        ra: ICRS degrees.
        dec: ICRS degrees.
        tns_name: TNS designation (``AT 2025abc``), when reported.
        host_name: Host galaxy, when one is associated.
        host_redshift: Its redshift.
        host_offset_arcsec: Offset from the host's centre.
        extinction: Galactic reddening at the position.
        remark: One sentence more (vetting, nature), when there is one.
    """

    name: str = Field(min_length=1)
    ra: float = Field(ge=0, lt=360)
    dec: float = Field(ge=-90, le=90)
    tns_name: str | None = None
    host_name: str | None = None
    host_redshift: float | None = None
    host_offset_arcsec: float | None = Field(default=None, ge=0)
    extinction: Extinction | None = None
    remark: str | None = None


def sexagesimal(ra: float, dec: float) -> str:
    """``10:00:29.63 -20:39:15.6``: RA in hours and Dec in degrees (J2000/ICRS)."""
    ra = ra % 360.0
    total = ra / 15.0 * 3600.0
    h, rem = divmod(round(total, 2), 3600.0)
    m, s = divmod(rem, 60.0)
    sign = "-" if dec < 0 else "+"
    d_total = round(abs(dec) * 3600.0, 1)
    d, d_rem = divmod(d_total, 3600.0)
    dm, ds = divmod(d_rem, 60.0)
    return f"{int(h) % 24:02d}:{int(m):02d}:{s:05.2f} {sign}{int(d):02d}:{int(dm):02d}:{ds:04.1f}"


def no_counterpart_circular(
    event_id: str,
    coverage: Coverage,
    *,
    name: str,
    observers: Sequence[str],
    team: str,
    event_time: datetime | None = None,
    catalog: str | None = None,
    references: Sequence[str] = (),
    extinction: Extinction | None = None,
    closing: str | None = "Further observations are planned.",
    acknowledgement: str | None = None,
    max_rows: int = 25,
) -> Circular:
    """The Circular saying no counterpart was found in the fields observed.

    Args:
        event_id: The event (ledger id, the Circular's ``eventId``).
        coverage: The fields observed, their depths and the probability they cover.
        name: The event as GCN names it (:func:`~followup.reporting.gcn.gcn_event_name`).
        observers: Author list entries.
        team: The team the authors report for (with or without a leading "the").
        event_time: T0 (UTC), for T-T0.
        catalog: Reference catalog of the zero points.
        references: Circulars to cite, e.g. ``"LIGO/Virgo/KAGRA Collaboration, GCN Circ. 40001"``.
        extinction: Median Galactic reddening over the fields, when known.
        closing: Closing sentence (None for none).
        acknowledgement: Acknowledgement sentence (None for none).
        max_rows: Most field rows to list.

    Returns:
        The Circular (plain text).

    Raises:
        ValueError: No authors or team, or a subject GCN would refuse.
    """
    lines = opening(observers, team)
    subject = checked_subject(name, "optical upper limits")
    fields = sorted(coverage.fields, key=lambda f: (f.date_obs, f.name, f.band))
    n_fields = len({f.name for f in fields})
    bands = sorted({f.band for f in fields}, key=band_label)
    cameras = sorted({f"{f.telescope} {f.camera}" for f in fields})
    region = f"{coverage.credible_level * 100:.0f}% credible region"
    of_map = f" of the {coverage.skymap} sky map" if coverage.skymap else ""
    area = f" ({coverage.area_deg2:.1f} deg2 observed)" if coverage.area_deg2 else ""
    lines += wrap(
        f"We observed {n_fields} field{'s' if n_fields != 1 else ''} in the localization of "
        f"{name}{cited(references)} with the {listed(cameras)} of the Las Cumbres Observatory "
        f"network {observed_when(fields[0].date_obs, fields[-1].date_obs, event_time)}, in the "
        f"{listed([band_label(b) for b in bands])} filter{'s' if len(bands) != 1 else ''}. "
        f"The fields cover {coverage.fraction_of_region * 100:.0f}% of the probability in the "
        f"{region}{of_map}{area}."
    )
    lines.append("")
    limits = []
    for band in bands:
        depths = [f.depth for f in fields if f.band == band]
        text = f"{band_label(band)} = {statistics.median(depths):.1f}"
        if len(depths) > 1:
            text += f" (median; {min(depths):.1f} to {max(depths):.1f})"
        limits.append(text)
    lines += wrap(
        "Comparing the images with reference catalogs and earlier images, we find no new "
        f"source brighter than the 5-sigma limits of the fields: {'; '.join(limits)} AB mag. "
        "The fields and their limits are:"
    )
    lines.append("")
    header = ["Field", "RA (deg)", "Dec (deg)", "Date (UT)"]
    if event_time is not None:
        header.append("T-T0 (h)")
    header += ["Filter", "Prob", "Limit"]
    rows = []
    for f in fields[:max_rows]:
        row = [f.name, f"{f.ra:.4f}", f"{f.dec:+.4f}", f"{f.date_obs:%Y-%m-%d %H:%M}"]
        if event_time is not None:
            row.append(f"{(f.date_obs - event_time).total_seconds() / 3600.0:.2f}")
        row += [band_label(f.band), f"{f.probability:.3f}", f"> {f.depth:.1f}"]
        rows.append(row)
    lines += table(rows, header)
    if len(fields) > max_rows:
        lines.append(f"({len(fields) - max_rows} further fields are not listed here.)")
    lines.append("")
    reddening = (
        f" (median over the fields {extinction.text(bands)}; {extinction.source})"
        if extinction is not None
        else ""
    )
    lines += wrap(calibration_sentence(catalog, reddening))
    body = finish(lines, closing, acknowledgement)
    return Circular(subject=subject, body=body, event_id=event_id)


def _point_row(
    m: Measurement, event_time: datetime | None, instrument_type: str | None
) -> list[str]:
    row = [f"{m.date_obs:%Y-%m-%d %H:%M:%S}"]
    if event_time is not None:
        row.append(f"{(m.date_obs - event_time).total_seconds() / 3600.0:.2f}")
    row += [
        equipment_of(m, instrument_type=instrument_type).label,
        band_label(m.band),
        "-" if m.exposure_time_s is None else f"{m.exposure_time_s:g}",
        mag_text(m),
    ]
    return row


def candidates_circular(
    event_id: str,
    candidates: Sequence[CandidateFinding],
    measurements: Sequence[Measurement],
    *,
    name: str,
    observers: Sequence[str],
    team: str,
    event_time: datetime | None = None,
    coverage: Coverage | None = None,
    instrument_type: str | None = None,
    catalog: str | None = None,
    references: Sequence[str] = (),
    closing: str | None = "Further observations are planned.",
    acknowledgement: str | None = None,
    max_rows_per_candidate: int = 8,
) -> Circular:
    """The Circular reporting candidate counterparts: positions, names, host, extinction, photometry.

    Args:
        event_id: The event (ledger id, the Circular's ``eventId``).
        candidates: The candidates to report, in the order to list them.
        measurements: Their photometry (points of other targets are ignored).
        name: The event as GCN names it.
        observers: Author list entries.
        team: The team the authors report for.
        event_time: T0 (UTC), for T-T0.
        coverage: The fields searched, when the candidates come from a tiling.
        instrument_type: The strategy's instrument type, naming cameras headers do not.
        catalog: Reference catalog of the zero points.
        references: Circulars to cite.
        closing: Closing sentence (None for none).
        acknowledgement: Acknowledgement sentence (None for none).
        max_rows_per_candidate: Most photometry rows per candidate.

    Returns:
        The Circular (plain text).

    Raises:
        ValueError: No candidates, a candidate without photometry, no authors, or a subject GCN
            would refuse.
    """
    if not candidates:
        raise ValueError("a candidates Circular needs at least one candidate")
    by_target: dict[str, list[Measurement]] = {}
    for m in sorted(measurements, key=lambda m: m.date_obs):
        by_target.setdefault(m.target_name, []).append(m)
    missing = [c.name for c in candidates if c.name not in by_target]
    if missing:
        raise ValueError(f"candidates without photometry: {missing}")
    lines = opening(observers, team)
    plural = len(candidates) != 1
    subject = checked_subject(name, f"optical candidate counterpart{'s' if plural else ''}")
    points = [m for c in candidates for m in by_target[c.name]]
    first = min(m.date_obs for m in points)
    last = max(m.date_obs for m in points)
    cameras = sorted({equipment_of(m, instrument_type=instrument_type).label for m in points})
    if coverage is not None:
        n_fields = len({f.name for f in coverage.fields})
        searched = (
            f"In {n_fields} field{'s' if n_fields != 1 else ''} covering "
            f"{coverage.fraction_of_region * 100:.0f}% of the probability in the "
            f"{coverage.credible_level * 100:.0f}% credible region of {name}{cited(references)}"
        )
    else:
        searched = f"In the localization of {name}{cited(references)}"
    lines += wrap(
        f"{searched}, observed with the {listed(cameras)} of the Las Cumbres Observatory network "
        f"{observed_when(first, last, event_time)}, we find {len(candidates)} "
        f"candidate counterpart{'s' if plural else ''}:"
    )
    for c in candidates:
        lines.append("")
        title = c.name + (f" ({c.tns_name})" if c.tns_name else "")
        lines.append(title)
        lines.append(
            f"  RA, Dec (J2000) = {c.ra:.5f}, {c.dec:+.5f} deg = {sexagesimal(c.ra, c.dec)}"
        )
        if c.host_name:
            host = f"  Host: {c.host_name}"
            if c.host_redshift is not None:
                host += f" (z = {c.host_redshift:.4f})"
            if c.host_offset_arcsec is not None:
                host += f", offset {c.host_offset_arcsec:.1f} arcsec"
            lines.append(host)
        own = by_target[c.name]
        if c.extinction is not None:
            bands = sorted({m.band for m in own}, key=band_label)
            lines.append(f"  Galactic extinction: {c.extinction.text(bands)}")
        if c.remark:
            lines += ["  " + line for line in wrap(c.remark)]
        lines.append("")
        header = ["Date (UT)"]
        if event_time is not None:
            header.append("T-T0 (h)")
        header += ["Telescope", "Filter", "Exp (s)", "AB mag"]
        rows = [_point_row(m, event_time, instrument_type) for m in own[:max_rows_per_candidate]]
        lines += ["  " + line for line in table(rows, header)]
        if len(own) > max_rows_per_candidate:
            lines.append(
                f"  ({len(own) - max_rows_per_candidate} further points are not listed here.)"
            )
    lines.append("")
    lines += wrap(calibration_sentence(catalog, "; limits are 5-sigma"))
    body = finish(lines, closing, acknowledgement)
    return Circular(subject=subject, body=body, event_id=event_id)


def median_extinction(values: Mapping[str, Extinction]) -> Extinction | None:
    """The median E(B-V) of several positions (None for none)."""
    if not values:
        return None
    ebv = statistics.median(e.ebv for e in values.values())
    return Extinction(ebv=ebv, source=next(iter(values.values())).source)


def non_detection_message(
    event_id: str,
    coverage: Coverage,
    *,
    name: str,
    authors: str,
    team: str,
    topic: str,
    submitter: str = "followup",
    catalog: str | None = None,
) -> HermesMessage:
    """A HERMES message of the non-detections: every field as a target with its 5-sigma limit.

    Each field is a target at its centre; each field and band a ``limiting_brightness`` point
    (AB mag) with the probability it covers in the comments. The text says the result in one
    paragraph, as the Circular does.

    Raises:
        ValueError: The message breaks HERMES's rules.
    """
    fields = sorted(coverage.fields, key=lambda f: (f.date_obs, f.name, f.band))
    targets: dict[str, HermesTarget] = {}
    for f in fields:
        targets.setdefault(
            f.name,
            HermesTarget(
                name=f.name,
                ra=round(f.ra, 6),
                dec=round(f.dec, 6),
                comments=f"field centre; sky-map probability {f.probability:.4f}",
            ),
        )
    photometry = [
        HermesPhotometry(
            target_name=f.name,
            date_obs=f.date_obs.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
            telescope=f.telescope,
            instrument=f.camera,
            bandpass=band_label(f.band),
            limiting_brightness=round(f.depth, 2),
            limiting_brightness_unit="AB mag",
            exposure_time=f.exposure_time_s,
            catalog=catalog,
            comments="5-sigma limit of the field; no new source brighter",
        )
        for f in fields
    ]
    limits = "; ".join(
        f"{band_label(b)} > {statistics.median(f.depth for f in fields if f.band == b):.1f} (median)"
        for b in sorted({f.band for f in fields}, key=band_label)
    )
    text = (
        f"{team_phrase(team)[0].upper()}{team_phrase(team)[1:]} observed {len(targets)} "
        f"field{'s' if len(targets) != 1 else ''} covering "
        f"{coverage.fraction_of_region * 100:.0f}% of the probability in the "
        f"{coverage.credible_level * 100:.0f}% credible region of {name} with the Las Cumbres "
        f"Observatory network and find no new source brighter than the 5-sigma limits of the "
        f"fields: {limits}, AB mag."
    )
    return HermesMessage(
        title=f"{name}: LCO optical upper limits",
        topic=topic,
        submitter=submitter,
        authors=authors,
        message_text=text,
        data=HermesData(event_id=event_id, targets=list(targets.values()), photometry=photometry),
    )
