"""TNS AT reports of new transients: the payload of one candidate, built from two models.

:class:`AtDiscovery` says what is reported (the candidate, its first detection, the last
non-detection before it or archival information, remarks); :class:`TnsReporter` says who reports
and how (the reporting group's TNS ids, the camera's instrument id, the field-name dialect, the
proprietary period). :func:`build_at_report` turns the two into the ``{"at_report": {"0": ...}}``
JSON that :meth:`followup.reporting.tns.TnsClient.send_at_report` sends. Each photometry point
carries the TNS id of the camera that took it (:func:`~followup.reporting.equipment.equipment_of`)
and of its filter (:mod:`~followup.reporting.bands`).

Example:
    >>> first, last = discovery_points(measurements, "S250101ab-C1")  # doctest: +SKIP
    >>> report = build_at_report(
    ...     AtDiscovery(target=candidate, first_detection=first, last_non_detection=last),
    ...     TnsReporter(reporter="A. Author (LCO)", reporting_group_id=82,
    ...                 discovery_data_source_id=48),
    ... )  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from followup.models import Measurement, Target
from followup.reporting.bands import tns_filter_id
from followup.reporting.equipment import equipment_of

__all__ = [
    "AT_TYPES",
    "FLUX_UNIT_AB_MAG",
    "AtDiscovery",
    "Dialect",
    "ReportIdentity",
    "TnsReporter",
    "build_at_report",
    "discovery_points",
    "report_identity",
]

AT_TYPES: Mapping[str, str] = {
    "0": "Other - Undefined",
    "1": "PSN - Possible SN",
    "2": "PNV - Possible Nova",
    "3": "AGN - Known AGN",
    "4": "NUC - Possibly nuclear",
    "5": "FRB - Fast Radio Burst event",
}
"""TNS ``at_types`` ids."""

FLUX_UNIT_AB_MAG = "1"
"""TNS ``units`` id of AB magnitudes."""

Dialect = Literal["new", "legacy"]

# Field names of the two dialects TNS accepts (reference/apis.md 4.3).
_DIALECT_FIELDS: Mapping[str, Mapping[str, str]] = {
    "new": {
        "reporting_group": "reporting_group_id",
        "data_source": "discovery_data_source_id",
        "flux_units": "flux_units",
        "filter": "filter_value",
        "instrument": "instrument_value",
    },
    "legacy": {
        "reporting_group": "reporting_groupid",
        "data_source": "data_source_groupid",
        "flux_units": "flux_unitid",
        "filter": "filterid",
        "instrument": "instrumentid",
    },
}


class TnsReporter(BaseModel):
    """Who reports to TNS, and how.

    Attributes:
        reporter: Reporter string, e.g. ``"A. Author (LCO), B. Author (UCSB)"``.
        reporting_group_id: TNS group id of the reporting group.
        discovery_data_source_id: TNS group id of the data source.
        instrument_ids: TNS instrument ids by camera name (``"MuSCAT3": 123``), overriding and
            completing the built-in ones (:data:`~followup.reporting.equipment.CAMERAS`).
        observer: Observer name for the photometry.
        filter_ids: TNS filter ids by LCO filter code, overriding the built-in Sloan ids.
        proprietary_period_days: Proprietary period in days (0 = public at once).
        proprietary_period_groups: Groups that see the report during the period (default: the
            reporting group).
        dialect: ``"new"`` field names (``reporting_group_id``, ``filter_value``...) or
            ``"legacy"`` (``reporting_groupid``, ``filterid``...). TNS accepts both.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    reporter: str
    reporting_group_id: str | int
    discovery_data_source_id: str | int
    instrument_ids: dict[str, str | int] | None = None
    observer: str = ""
    filter_ids: dict[str, str] | None = None
    proprietary_period_days: int = Field(default=0, ge=0)
    proprietary_period_groups: list[str | int] | None = None
    dialect: Dialect = "new"

    @field_validator("reporter")
    @classmethod
    def _names_someone(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("reporter must name the reporting authors")
        return value


class AtDiscovery(BaseModel):
    """What an AT report says: one candidate and the photometry of its discovery.

    TNS requires the discovery point and the last non-detection before it, or archival
    information instead (``archive_id``); magnitudes are AB.

    Attributes:
        target: The candidate (its position becomes the report's ra/dec).
        first_detection: The discovery point (S/N >= 5).
        last_non_detection: The last upper limit before the discovery, or None with
            ``archive_id``.
        more_detections: Further detections of the same target after the first.
        at_type: TNS AT type id (see :data:`AT_TYPES`); ``"1"`` = PSN.
        internal_name: The reporter's name for the object (default: the target name).
        remarks: Free text.
        host_name: Host galaxy name.
        host_redshift: Redshift of the host galaxy, when known.
        transient_redshift: Redshift of the transient itself, when known.
        position_error_arcsec: Position uncertainty in arcsec (each axis).
        instrument_type: The strategy's instrument type, naming the camera of points whose frame
            header does not.
        archive_id: TNS archive id (``"0"`` other, ``"1"`` SDSS, ``"2"`` DSS) when there is no
            non-detection.
        archival_remarks: Remarks for the archival non-detection.
    """

    model_config = ConfigDict(frozen=True)

    target: Target
    first_detection: Measurement
    last_non_detection: Measurement | None = None
    more_detections: list[Measurement] = Field(default_factory=list)
    at_type: str = "1"
    internal_name: str | None = None
    remarks: str = ""
    host_name: str = ""
    host_redshift: float | None = Field(default=None, ge=0)
    transient_redshift: float | None = Field(default=None, ge=0)
    position_error_arcsec: float | None = Field(default=None, gt=0)
    instrument_type: str | None = None
    archive_id: Literal["0", "1", "2"] | None = None
    archival_remarks: str = ""

    @field_validator("at_type", mode="before")
    @classmethod
    def _known_at_type(cls, value: Any) -> str:
        if str(value) not in AT_TYPES:
            raise ValueError(f"at_type must be one of {sorted(AT_TYPES)}, got {value!r}")
        return str(value)

    @model_validator(mode="after")
    def _photometry_fits(self) -> AtDiscovery:
        first, last = self.first_detection, self.last_non_detection
        if not first.is_detection:
            raise ValueError(
                f"first_detection of {first.target_name!r} is not a detection (S/N {first.snr:.1f})"
            )
        for m in (first, last, *self.more_detections):
            if m is not None and m.target_name != self.target.name:
                raise ValueError(
                    f"measurement of {m.target_name!r} given for target {self.target.name!r}"
                )
        for m in self.more_detections:
            if not m.is_detection or m.date_obs < first.date_obs:
                raise ValueError(
                    "more_detections must be detections taken after the first detection"
                )
        if last is not None:
            if last.is_detection:
                raise ValueError("last_non_detection is a detection; pass an upper limit")
            if last.date_obs >= first.date_obs:
                raise ValueError(
                    "the last non-detection must precede the discovery: "
                    f"{last.date_obs.isoformat()} >= {first.date_obs.isoformat()}"
                )
        elif self.archive_id is None:
            raise ValueError("TNS needs the last non-detection before the discovery, or archive_id")
        return self


class ReportIdentity(BaseModel):
    """What identifies the object of an AT report: its position and internal name.

    Attributes:
        ra_deg: Right ascension in degrees.
        dec_deg: Declination in degrees.
        internal_name: The reporter's internal name, if given.
    """

    ra_deg: float
    dec_deg: float
    internal_name: str | None = None


def _obsdate(m: Measurement) -> str:
    return m.date_obs.strftime("%Y-%m-%d %H:%M:%S")


def discovery_points(
    measurements: Sequence[Measurement], target_name: str | None = None
) -> tuple[Measurement, Measurement | None]:
    """The first detection of a target and the last non-detection before it.

    Args:
        measurements: Measurements of one target (or of several, with ``target_name``).
        target_name: Keep only this target's measurements.

    Returns:
        ``(first_detection, last_non_detection)``; the second is None when no non-detection
        precedes the first detection.

    Raises:
        ValueError: No measurement, several targets without ``target_name``, or no detection.
    """
    points = [m for m in measurements if target_name is None or m.target_name == target_name]
    if not points:
        raise ValueError(f"no measurements{f' of {target_name!r}' if target_name else ''}")
    names = {m.target_name for m in points}
    if len(names) > 1:
        raise ValueError(f"measurements of several targets {sorted(names)}; pass target_name")
    detections = sorted((m for m in points if m.is_detection), key=lambda m: m.date_obs)
    if not detections:
        raise ValueError(f"target {points[0].target_name!r} has no detection (S/N >= 5) to report")
    first = detections[0]
    earlier = sorted(
        (m for m in points if not m.is_detection and m.date_obs < first.date_obs),
        key=lambda m: m.date_obs,
    )
    return first, (earlier[-1] if earlier else None)


def _photometry(
    m: Measurement,
    reporter: TnsReporter,
    *,
    detected: bool,
    comments: str,
    instrument_type: str | None,
) -> dict[str, Any]:
    """One photometry entry (a detection, or the non-detection's upper limit)."""
    f = _DIALECT_FIELDS[reporter.dialect]
    equipment = equipment_of(
        m, instrument_type=instrument_type, tns_instrument_ids=reporter.instrument_ids
    )
    values: dict[str, Any] = {"obsdate": _obsdate(m)}
    if detected:
        values["flux"] = f"{m.mag:.3f}" if m.mag is not None else ""
        values["flux_error"] = f"{m.mag_err:.3f}" if m.mag_err is not None else ""
    values.update(
        {
            "limiting_flux": f"{m.limit_mag_5sigma:.3f}",
            f["flux_units"]: FLUX_UNIT_AB_MAG,
            f["filter"]: tns_filter_id(m.band, reporter.filter_ids),
            f["instrument"]: equipment.tns_instrument_id,
            "exptime": "" if m.exposure_time_s is None else f"{m.exposure_time_s:g}",
            "observer": reporter.observer,
            "comments": f"{comments}; {equipment.label}",
        }
    )
    return values


def build_at_report(discovery: AtDiscovery, reporter: TnsReporter) -> dict[str, Any]:
    """Build the ``data`` JSON of a TNS AT report for one candidate.

    Args:
        discovery: The candidate and its discovery photometry.
        reporter: Who reports, with which TNS ids and field names.

    Returns:
        ``{"at_report": {"0": {...}}}``, ready for
        :meth:`~followup.reporting.tns.TnsClient.send_at_report`.

    Raises:
        ValueError: A band without a TNS filter id.
    """
    f = _DIALECT_FIELDS[reporter.dialect]
    group = str(reporter.reporting_group_id)
    if discovery.last_non_detection is not None:
        non_detection = _photometry(
            discovery.last_non_detection,
            reporter,
            detected=False,
            comments="5-sigma upper limit, forced photometry at the position",
            instrument_type=discovery.instrument_type,
        )
    else:
        non_detection = {
            "archiveid": str(discovery.archive_id),
            "archival_remarks": discovery.archival_remarks,
        }
    detections = [
        discovery.first_detection,
        *sorted(discovery.more_detections, key=lambda m: m.date_obs),
    ]
    error = _number(discovery.position_error_arcsec)
    target = discovery.target
    entry: dict[str, Any] = {
        "ra": {"value": f"{target.ra:.6f}", "error": error, "units": "arcsec"},
        "dec": {"value": f"{target.dec:.6f}", "error": error, "units": "arcsec"},
        f["reporting_group"]: group,
        f["data_source"]: str(reporter.discovery_data_source_id),
        "reporter": reporter.reporter,
        "discovery_datetime": _obsdate(discovery.first_detection),
        "at_type": discovery.at_type,
        "internal_name": discovery.internal_name or target.name,
        "host_name": discovery.host_name,
        "host_redshift": _number(discovery.host_redshift),
        "transient_redshift": _number(discovery.transient_redshift),
        "remarks": discovery.remarks,
        "proprietary_period_groups": [
            str(g) for g in (reporter.proprietary_period_groups or [group])
        ],
        "proprietary_period": {
            "proprietary_period_value": str(reporter.proprietary_period_days),
            "proprietary_period_units": "days",
        },
        "non_detection": non_detection,
        "photometry": {
            "photometry_group": {
                str(i): _photometry(
                    m,
                    reporter,
                    detected=True,
                    comments=f"{m.method} forced photometry, S/N {m.snr:.1f}",
                    instrument_type=discovery.instrument_type,
                )
                for i, m in enumerate(detections)
            }
        },
    }
    return {"at_report": {"0": entry}}


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _angle_deg(value: Any, *, hours: bool) -> float:
    """Degrees from a TNS ra/dec value: decimal degrees or sexagesimal text."""
    try:
        deg = float(value)
    except (TypeError, ValueError):
        import astropy.units as u
        from astropy.coordinates import Angle  # only sexagesimal input needs astropy

        deg = Angle(str(value), unit=u.hourangle if hours else u.deg).deg
    if not math.isfinite(deg):
        raise ValueError(f"not a finite angle: {value!r}")
    return deg


def report_identity(report: Mapping[str, Any]) -> ReportIdentity:
    """Position and internal name of the single object of an AT report.

    Raises:
        ValueError: Not an ``{"at_report": {...}}`` payload, more than one report in it, or no
            readable ra/dec.
    """
    entries = report.get("at_report") if isinstance(report, Mapping) else None
    if not isinstance(entries, Mapping) or len(entries) != 1:
        raise ValueError('expected {"at_report": {"0": {...}}} holding exactly one AT report')
    entry = next(iter(entries.values()))
    try:
        ra = entry["ra"]["value"] if isinstance(entry["ra"], Mapping) else entry["ra"]
        dec = entry["dec"]["value"] if isinstance(entry["dec"], Mapping) else entry["dec"]
    except (KeyError, TypeError) as exc:
        raise ValueError("the AT report has no ra/dec value") from exc
    return ReportIdentity(
        ra_deg=_angle_deg(ra, hours=True) % 360.0,
        dec_deg=_angle_deg(dec, hours=False),
        internal_name=(entry.get("internal_name") or None),
    )
