"""Pydantic models that cross every boundary of followup: alerts, targets, requests, results.

These are the shapes the listener, the flows, the ledger, the sandbox and the CLI exchange. They
hold plain values (degrees, seconds, UTC datetimes, microjansky) so that they serialise to JSON for
Prefect parameters, artifacts and the ledger; science code converts to astropy Quantities inside.

Every status the ledger stores is a ``StrEnum`` here (:class:`MessageStatus`,
:class:`AlertDecision`, :class:`RequestStatus`, :class:`LcoState`, :class:`ReportStatus`): the
ledger keeps their string values, so the enums compare equal to the stored strings.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "Alert",
    "AlertDecision",
    "AlertKind",
    "AlertType",
    "Approval",
    "ErrorRegion",
    "ExternalCoincidence",
    "Frame",
    "LcoState",
    "Measurement",
    "MessageStatus",
    "ObservationRequest",
    "ObservationType",
    "ObservingStrategy",
    "Report",
    "ReportDestination",
    "ReportStatus",
    "RequestStatus",
    "SkyPosition",
    "Target",
    "TargetKind",
    "UtcDatetime",
    "VisibilityWindow",
    "content_hash",
    "utcnow",
]


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    """Read naive datetimes as UTC, as every service in this field does; convert others to UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_aware)]
"""A datetime that is always timezone-aware UTC (naive input is read as UTC)."""


def content_hash(payload: Any) -> str:
    """Return a stable SHA-256 hex digest of a JSON-able payload (keys sorted).

    Used for the exactly-once keys of reports and for deduplicating identical alerts.
    """
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, use_enum_values=False)


# --------------------------------------------------------------------------------------------
# Alerts
# --------------------------------------------------------------------------------------------


class AlertKind(StrEnum):
    """The messenger or family an alert belongs to."""

    GW = "gw"
    NEUTRINO = "neutrino"
    GAMMA_RAY = "gamma-ray"
    X_RAY = "x-ray"
    OPTICAL = "optical"
    RADIO = "radio"
    CIRCULAR = "circular"
    OTHER = "other"


class AlertType(StrEnum):
    """Where an alert stands in its event's sequence (LVK names; GCN's mapped onto them)."""

    EARLYWARNING = "EARLYWARNING"
    PRELIMINARY = "PRELIMINARY"
    INITIAL = "INITIAL"
    UPDATE = "UPDATE"
    RETRACTION = "RETRACTION"


class AlertDecision(StrEnum):
    """What the trigger rules decided on a parsed alert (the ledger's ``alerts.decision``)."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    RETRACTION = "retraction"


class MessageStatus(StrEnum):
    """What became of a stored Kafka message (the ledger's ``messages.status``).

    ``received`` means processing has not finished (a new row, or an attempt that stopped between
    storing and deciding); every other status is final. An alert's message takes the status of
    its :class:`AlertDecision` (same values).
    """

    RECEIVED = "received"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    RETRACTION = "retraction"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"

    @property
    def is_final(self) -> bool:
        """True when the message was fully processed."""
        return self is not MessageStatus.RECEIVED


class ErrorRegion(_Model):
    """A simple error region around a position.

    Attributes:
        radius_deg: Circle radius in degrees (for an ellipse, the semi-major axis).
        semi_minor_deg: Ellipse semi-minor axis in degrees, None for a circle.
        position_angle_deg: Ellipse position angle east of north in degrees, None for a circle.
        containment: Probability enclosed by the region (GCN default 0.9).
    """

    radius_deg: float = Field(ge=0)
    semi_minor_deg: float | None = Field(default=None, ge=0)
    position_angle_deg: float | None = None
    containment: float = Field(default=0.9, gt=0, le=1)


class SkyPosition(_Model):
    """An ICRS position in degrees with an optional error region."""

    ra: float = Field(ge=0, lt=360, description="Right ascension, ICRS, degrees")
    dec: float = Field(ge=-90, le=90, description="Declination, ICRS, degrees")
    error: ErrorRegion | None = None

    @field_validator("ra", mode="before")
    @classmethod
    def _wrap_ra(cls, value: Any) -> Any:
        # 360.0 exactly is a legal way to write 0.0; anything else out of range is an error.
        if isinstance(value, int | float) and value == 360:
            return 0.0
        return value


class ExternalCoincidence(_Model):
    """LVK ``external_coinc``: a GRB found in coincidence, with its combined sky map."""

    observatory: str | None = None
    search: str | None = None
    gcn_notice_id: int | str | None = None
    ivorn: str | None = None
    time_difference_s: float | None = None
    time_coincidence_far: float | None = None
    time_sky_position_coincidence_far: float | None = None
    combined_skymap: bytes | None = Field(default=None, repr=False, exclude=True)


class Alert(_Model):
    """One alert, notice, VOEvent or circular, normalised across every format.

    Attributes:
        source: Who issued it: ``"LVK"``, ``"Swift"``, ``"Fermi"``, ``"IceCube"``, ...
        kind: The messenger family.
        format: The wire format that was parsed, e.g. ``"lvk-json"``, ``"lvk-avro"``,
            ``"gcn-json"``, ``"voevent"``, ``"circular-json"``, ``"circular-text"``.
        event_id: The event this alert is about (LVK superevent id, GRB trigger id, ...).
        alert_type: Its place in the event's alert sequence.
        issued_at: When the alert was created by its issuer (UTC).
        event_time: When the astrophysical event happened (UTC), if known.
        far_hz: False-alarm rate in Hz, if given.
        significant: LVK's significance flag, if given.
        classification: Source classification probabilities (BNS, NSBH, BBH, Terrestrial, GRB...).
        properties: LVK source properties (HasNS, HasRemnant, HasMassGap) or similar.
        position: Best position with its error region, for well-localised alerts.
        skymap: The sky map as FITS bytes (multi-order or flat HEALPix), if one came embedded.
        skymap_url: Where the sky map can be fetched, when it is not embedded.
        distance_mpc: Posterior mean luminosity distance in Mpc, when known.
        distance_err_mpc: Posterior standard deviation of the distance in Mpc.
        is_test: True for mock (MS...), test, drill or injection alerts.
        instruments: Detectors or instruments involved.
        group: LVK analysis group (CBC, Burst) or similar.
        pipeline: Detection pipeline.
        search: Search name (AllSky, BBH, EarlyWarning, MDC, ...).
        external_coinc: LVK external coincidence, if any.
        urls: Related links (GraceDB page, data archive page).
        title: A human title (circular subject, notice type name).
        extra: Format-specific values kept for inspection (never the sky map bytes).
    """

    source: str
    kind: AlertKind
    format: str
    event_id: str = Field(min_length=1)
    alert_type: AlertType
    issued_at: UtcDatetime
    event_time: UtcDatetime | None = None
    far_hz: float | None = Field(default=None, ge=0)
    significant: bool | None = None
    classification: dict[str, float] = Field(default_factory=dict)
    properties: dict[str, float] = Field(default_factory=dict)
    position: SkyPosition | None = None
    skymap: bytes | None = Field(default=None, repr=False, exclude=True)
    skymap_url: str | None = None
    distance_mpc: float | None = None
    distance_err_mpc: float | None = None
    is_test: bool = False
    instruments: list[str] = Field(default_factory=list)
    group: str | None = None
    pipeline: str | None = None
    search: str | None = None
    external_coinc: ExternalCoincidence | None = None
    urls: dict[str, str] = Field(default_factory=dict)
    title: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    @property
    def is_retraction(self) -> bool:
        """True when this alert withdraws its event."""
        return self.alert_type is AlertType.RETRACTION

    @property
    def skymap_to_fetch(self) -> bool:
        """True when the alert names its sky map by URL only (it has not been fetched)."""
        return bool(self.skymap_url) and not self.skymap

    @property
    def dedupe_key(self) -> tuple[str, str, str]:
        """The key two copies of one alert share: event id, alert type and issue time."""
        return (self.event_id, self.alert_type.value, self.issued_at.isoformat())


# --------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------


class TargetKind(StrEnum):
    """What a target is."""

    FIELD = "field"  # a telescope pointing tiling part of a sky map
    GALAXY = "galaxy"  # a catalogued galaxy inside the localisation volume
    POINT = "point"  # the position of a well-localised source
    CANDIDATE = "candidate"  # a transient found in our own images (what TNS reports are about)


class VisibilityWindow(_Model):
    """A span during which a target is observable from one LCO site.

    Attributes:
        site: LCO site code (coj, cpt, tfn, lsc, elp, ogg).
        start: Window start (UTC).
        end: Window end (UTC).
        min_airmass: Best airmass reached in the window.
    """

    site: str
    start: UtcDatetime
    end: UtcDatetime
    min_airmass: float | None = None


class Target(_Model):
    """Something to point a telescope at.

    Attributes:
        name: Unique within its event, at most 30 characters (goes into request group names).
        ra: Right ascension, ICRS, degrees.
        dec: Declination, ICRS, degrees.
        kind: Field, galaxy or point source.
        rank: 1 for the best target of its plan.
        probability: Enclosed (fields) or 3-D (galaxies) probability; 1 for a point source.
        cumulative_probability: Probability covered by this target and all better ranked ones.
        instrument_type: LCO instrument the field was tiled for, if a field.
        distance_mpc: Galaxy distance in Mpc, if a galaxy.
        windows: Visibility windows from LCO sites.
    """

    name: str = Field(min_length=1, max_length=30)
    ra: float = Field(ge=0, lt=360)
    dec: float = Field(ge=-90, le=90)
    kind: TargetKind
    rank: int = Field(ge=1)
    probability: float = Field(ge=0, le=1)
    cumulative_probability: float | None = Field(default=None, ge=0, le=1.000001)
    instrument_type: str | None = None
    distance_mpc: float | None = None
    windows: list[VisibilityWindow] = Field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Telescope requests
# --------------------------------------------------------------------------------------------


class LcoState(StrEnum):
    """States of an LCO request or request group (observation-portal state_changes.py)."""

    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    WINDOW_EXPIRED = "WINDOW_EXPIRED"
    FAILURE_LIMIT_REACHED = "FAILURE_LIMIT_REACHED"
    CANCELED = "CANCELED"

    @property
    def is_terminal(self) -> bool:
        """True for the states the portal calls terminal (a later COMPLETED is still possible)."""
        return self is not LcoState.PENDING

    @property
    def is_success(self) -> bool:
        """True when data were taken."""
        return self is LcoState.COMPLETED


class RequestStatus(StrEnum):
    """Our side of a request's exchange with the portal (the ledger's ``requests.local_status``).

    ``claimed``: the row is written, nothing known to be sent (after a crash the POST may or may
    not have reached the portal: look the group name up before sending again); ``submitted``: the
    portal answered with ids; ``declined``: a person said no, or a retraction came first;
    ``rejected``: the portal refused it. Declined and rejected requests are never sent.
    """

    CLAIMED = "claimed"
    SUBMITTED = "submitted"
    DECLINED = "declined"
    REJECTED = "rejected"


class ObservationType(StrEnum):
    """LCO observation types a science proposal can use."""

    NORMAL = "NORMAL"
    RAPID_RESPONSE = "RAPID_RESPONSE"
    TIME_CRITICAL = "TIME_CRITICAL"


class ObservingStrategy(_Model):
    """How to observe one class of alert: instrument, filters, exposures, cadence, priority.

    Attributes:
        name: Strategy name (for example ``"gw-bns-sinistro"``).
        instrument_type: LCO instrument type, e.g. ``1M0-SCICAM-SINISTRO``.
        filters: Filter codes, in order (``gp``, ``rp``, ``ip``, ``zs``...).
        exposure_time_s: Exposure time per frame in seconds.
        exposure_count: Frames per filter per epoch.
        max_airmass: Airmass limit (portal default 1.6).
        min_lunar_distance_deg: Minimum Moon distance in degrees (portal default 30).
        ipp_value: Intra-proposal priority, 0.5 to 2.0.
        observation_type: NORMAL, RAPID_RESPONSE or TIME_CRITICAL.
        window_hours: Length of each epoch's observing window in hours.
        epochs: Number of epochs (for example 3 for three nights).
        cadence_hours: Hours between epoch window starts.
        max_targets: At most this many targets are requested per alert.
        min_probability: A field or galaxy holding less sky-map probability is not requested,
            and a pending request whose field falls below it in a new map of the event is
            cancelled (0: any field holding probability is worth its time).
        exposure_time_per_filter_s: Per-filter exposure times in seconds overriding
            ``exposure_time_s`` (MuSCAT's per-channel times, or longer exposures in blue filters).
        acceptability_threshold: Percent of a request that counts as done; None leaves it to
            the portal's default for the instrument (100 for FLOYDS, 90 otherwise).
        rerequests: How many times an epoch whose window closed without frames is requested
            again, with a new window, while the event is live (0: never).
        followup_hours: How long after the event it is live (new windows may be requested);
            None: the cadence's span plus one more window
            (:func:`followup.strategies.live_until`).
    """

    name: str
    instrument_type: str = "1M0-SCICAM-SINISTRO"
    filters: list[str] = Field(default_factory=lambda: ["rp"], min_length=1)
    exposure_time_s: float = Field(default=300.0, gt=0)
    exposure_time_per_filter_s: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict
    )
    exposure_count: int = Field(default=1, ge=1)
    max_airmass: float = Field(default=1.6, ge=1, le=25)
    min_lunar_distance_deg: float = Field(default=30.0, ge=0, le=180)
    ipp_value: float = Field(default=1.05, ge=0.5, le=2.0)
    observation_type: ObservationType = ObservationType.NORMAL
    window_hours: float = Field(default=24.0, gt=0)
    epochs: int = Field(default=1, ge=1)
    cadence_hours: float = Field(default=24.0, gt=0)
    max_targets: int = Field(default=5, ge=1)
    min_probability: float = Field(default=0.0, ge=0, le=1)
    acceptability_threshold: float | None = Field(default=None, ge=0, le=100)
    rerequests: int = Field(default=1, ge=0, le=5)
    followup_hours: float | None = Field(default=None, gt=0)


class ObservationRequest(_Model):
    """One request group at LCO for one target and epoch, as the ledger knows it.

    Attributes:
        event_id: The event being followed.
        target_name: The target it observes.
        epoch: 0-based epoch number within the strategy's cadence.
        group_name: The request group name at LCO (unique; encodes event, target and plan).
        filters: Filters requested.
        observation_type: NORMAL, RAPID_RESPONSE or TIME_CRITICAL.
        group_id: LCO request group id, once submitted.
        request_id: LCO request id, once submitted.
        state: Last known state.
        window_start: Start of the observing window.
        window_end: End of the observing window.
        portal_url: Link to the request in the portal.
        attempt: 0 for the epoch's first request; n for its n-th request after windows that
            closed without frames (part of the ledger's key and of the group name).
    """

    event_id: str
    target_name: str
    epoch: int = Field(default=0, ge=0)
    group_name: str = Field(max_length=50)
    filters: list[str] = Field(default_factory=list)
    observation_type: ObservationType = ObservationType.NORMAL
    group_id: int | None = None
    request_id: int | None = None
    state: LcoState = LcoState.PENDING
    window_start: UtcDatetime | None = None
    window_end: UtcDatetime | None = None
    portal_url: str | None = None
    attempt: int = Field(default=0, ge=0)


class Approval(_Model):
    """A human decision on spending telescope time or sending a public report.

    Attributes:
        subject: What was decided on (a request group name, or ``report:<destination>:<event>``).
        approved: The decision; a timed-out wait is recorded as ``approved=False``.
        decided_by: Who decided (from the approval form), or ``"timeout"``.
        comment: Free text from the form.
        decided_at: When the decision was recorded (UTC).
    """

    subject: str
    approved: bool
    decided_by: str = ""
    comment: str = ""
    decided_at: UtcDatetime = Field(default_factory=utcnow)


# --------------------------------------------------------------------------------------------
# Frames and measurements
# --------------------------------------------------------------------------------------------


class Frame(_Model):
    """One archive frame of a request.

    Attributes:
        frame_id: Archive frame id.
        basename: File name without extension.
        filename: File name with the extension of the latest version.
        url: Signed download URL (valid for a limited time).
        request_id: LCO request id it belongs to.
        reduction_level: 0 raw, 91 BANZAI-reduced.
        filter: Filter code.
        observation_date: Exposure start (UTC).
        exposure_time_s: Exposure time in seconds.
        configuration_type: EXPOSE, BIAS, DARK, SKYFLAT...
        md5: Checksum of the latest version, when the archive gives one.
        version_id: Id of the latest version (part of the cache key).
        local_path: Where the file was saved, once downloaded.
    """

    frame_id: int
    basename: str
    filename: str
    url: str = Field(repr=False)
    request_id: int | None = None
    reduction_level: int = 91
    filter: str | None = None
    observation_date: UtcDatetime | None = None
    exposure_time_s: float | None = None
    configuration_type: str | None = None
    site_id: str | None = None
    telescope_id: str | None = None
    instrument_id: str | None = None
    md5: str | None = None
    version_id: int | None = None
    local_path: str | None = None


class Measurement(_Model):
    """Forced photometry of one target on one frame.

    Flux is always given; a magnitude only when S/N >= 5, else the 5-sigma limit stands alone.

    Attributes:
        target_name: The target measured.
        frame_basename: The frame it was measured on.
        date_obs: Exposure start (UTC).
        mjd: Modified Julian date of the exposure mid-point.
        band: Filter code (gp, rp, ip, zs...).
        flux_ujy: Flux density in microjansky.
        flux_err_ujy: 1-sigma uncertainty of the flux in microjansky.
        snr: Signal to noise ratio of the forced flux.
        mag: AB magnitude, only when ``snr >= 5``.
        mag_err: Uncertainty of ``mag`` (includes the zero point).
        limit_mag_5sigma: AB magnitude of a 5-sigma detection at this position.
        zero_point: AB zero point of the frame (magnitude of 1 e-/s).
        zero_point_err: Uncertainty of the zero point.
        n_ref_stars: Reference stars used for the zero point.
        method: ``aperture`` or ``psf``.
        telescope: Telescope id (e.g. ``1m0a``) or name.
        instrument: Instrument id.
        exposure_time_s: Exposure time in seconds.
        flags: Quality bit flags (see followup.photometry).
    """

    target_name: str
    frame_basename: str
    date_obs: UtcDatetime
    mjd: float
    band: str
    flux_ujy: float
    flux_err_ujy: float = Field(ge=0)
    snr: float
    mag: float | None = None
    mag_err: float | None = None
    limit_mag_5sigma: float
    zero_point: float
    zero_point_err: float = Field(ge=0)
    n_ref_stars: int = Field(ge=0)
    method: Literal["aperture", "psf"] = "aperture"
    telescope: str | None = None
    instrument: str | None = None
    exposure_time_s: float | None = None
    flags: int = 0

    @model_validator(mode="after")
    def _magnitude_only_when_detected(self) -> Measurement:
        if self.mag is not None and self.snr < 5:
            raise ValueError(f"a magnitude needs S/N >= 5, got S/N {self.snr:.2f}")
        return self

    @property
    def is_detection(self) -> bool:
        """True when the target was detected at S/N >= 5."""
        return self.mag is not None


# --------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------


class ReportDestination(StrEnum):
    """Where reports go."""

    HERMES = "hermes"
    TNS = "tns"
    GCN = "gcn"


class ReportStatus(StrEnum):
    """Where a report stands (the ledger's ``reports.status``); see :class:`Report`."""

    DRAFT = "draft"
    AWAITING_APPROVAL = "awaiting_approval"
    SENDING = "sending"
    SENT = "sent"
    UNCONFIRMED = "unconfirmed"
    CONFIRMED = "confirmed"
    DECLINED = "declined"
    FAILED = "failed"


class Report(_Model):
    """A report sent (or drafted) to one destination.

    Attributes:
        destination: HERMES, TNS or GCN.
        event_id: The event reported on.
        target_name: The target reported, when the report is about one target (TNS).
        content_hash: SHA-256 of the content sent; part of the exactly-once key.
        status: ``draft``, ``awaiting_approval``, ``sending`` (handed to the service, no answer
            recorded yet), ``sent`` (accepted, delivery not confirmed), ``unconfirmed`` (may or may
            not have arrived: never resent automatically), ``confirmed``, ``declined``, ``failed``
            (nothing arrived: may be tried again).
        remote_id: HERMES uuid, TNS report id / object name, GCN circular id.
        url: Link to the report where one exists.
        payload: What was (or would be) sent, secrets excluded.
    """

    destination: ReportDestination
    event_id: str
    target_name: str | None = None
    content_hash: str
    status: ReportStatus
    remote_id: str | None = None
    url: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
