"""Trigger rules: which alerts start a follow-up on their own, and why (or why not).

:class:`TriggerRules` holds the thresholds an on-call team sets (significance, false-alarm rate,
HasNS/HasRemnant, classification, 90% area, distance, sources, notice and alert types, age, drills);
:func:`evaluate` applies them to one :class:`~followup.models.Alert` and returns a
:class:`Decision` whose ``reason`` names every rule that failed, or the checks that passed.

Rules about a quantity apply only to alerts that carry it: a GRB notice has no HasNS, so
``min_has_ns`` is not applied to it (the GW-specific rules apply to ``kind="gw"`` alerts only).
Retractions always pass: the listener sends them to the retraction flow, which cancels whatever
was requested for the event.

Example:
    >>> rules = TriggerRules(max_far_hz=1e-7, max_area90_deg2=1000, min_has_ns=0.5)
    >>> decision = evaluate(alert, rules, area90_deg2=31.0)  # doctest: +SKIP
    >>> decision.accepted, decision.reason  # doctest: +SKIP
    (True, 'significant; FAR 9.1e-14 Hz <= 1e-07 Hz; HasNS 0.95 >= 0.5; 90% area 31 deg2 <= 1000')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from followup.models import Alert, AlertKind, AlertType, utcnow

__all__ = ["Decision", "TriggerRules", "error_region_area_deg2", "evaluate"]

_SOURCE_KINDS = [
    AlertKind.GW,
    AlertKind.NEUTRINO,
    AlertKind.GAMMA_RAY,
    AlertKind.X_RAY,
    AlertKind.OPTICAL,
    AlertKind.RADIO,
    AlertKind.OTHER,
]


class TriggerRules(BaseModel):
    """Thresholds that decide whether an alert starts a follow-up.

    ``None`` switches a rule off. Lists are allow-lists (``None`` allows everything).

    Attributes:
        significant_only: Refuse alerts whose issuer marked them not significant (LVK).
        max_far_hz: Largest false-alarm rate in Hz (alerts without a FAR pass).
        min_has_ns: Smallest HasNS probability (GW alerts).
        min_has_remnant: Smallest HasRemnant probability (GW alerts).
        min_classification: Classes and their smallest probability; the alert passes when ANY
            listed class reaches its threshold, e.g. ``{"BNS": 0.5, "NSBH": 0.5}``.
        max_classification: Classes and their largest probability; ALL must hold, e.g.
            ``{"Terrestrial": 0.5}``.
        max_area90_deg2: Largest 90% credible area in deg2 (the sky map's, else the error
            region's area).
        max_error_radius_deg: Largest error radius of a position without a sky map, in degrees.
        max_distance_mpc: Largest posterior mean distance in Mpc (alerts without one pass).
        max_alert_age_s: Refuse alerts issued longer ago than this (protects a listener that
            starts from the earliest offset from triggering on stale alerts).
        max_event_age_s: Refuse alerts whose event happened longer ago than this.
        allowed_sources: Issuers (``LVK``, ``Swift``, ``Fermi``, ``IceCube``...), case-insensitive.
        allowed_kinds: Messenger families; circulars are not triggers by default.
        allowed_notice_types: Notice types as in ``Alert.extra["notice_type"]``
            (``igwn.gwalert``, ``gcn.notices.swift.bat.guano``,
            ``gcn.classic.voevent.SWIFT_BAT_GRB_POS_ACK``...).
        allowed_alert_types: Alert types (retractions always pass).
        allow_test: Accept mock, test and injection alerts (drills only).
        require_localization: Refuse alerts with neither a sky map, a sky-map URL nor a position.
    """

    model_config = ConfigDict(extra="forbid")

    significant_only: bool = Field(
        default=True, description="Refuse alerts the issuer marked not significant (LVK)."
    )
    max_far_hz: float | None = Field(
        default=None, gt=0, description="Largest false-alarm rate in Hz; empty: any."
    )
    min_has_ns: float | None = Field(
        default=None, ge=0, le=1, description="Smallest HasNS probability of GW alerts."
    )
    min_has_remnant: float | None = Field(
        default=None, ge=0, le=1, description="Smallest HasRemnant probability of GW alerts."
    )
    min_classification: dict[str, float] = Field(
        default_factory=dict,
        description="Classes and their smallest probability; passes when any class reaches it.",
    )
    max_classification: dict[str, float] = Field(
        default_factory=dict,
        description="Classes and their largest probability; all must hold (Terrestrial: 0.5).",
    )
    max_area90_deg2: float | None = Field(
        default=None, gt=0, description="Largest 90% credible area in deg2; empty: any."
    )
    max_error_radius_deg: float | None = Field(
        default=None, gt=0, description="Largest error radius (no sky map) in degrees."
    )
    max_distance_mpc: float | None = Field(
        default=None, gt=0, description="Largest posterior mean distance in Mpc."
    )
    max_alert_age_s: float | None = Field(
        default=None, gt=0, description="Refuse alerts issued longer ago than this, in seconds."
    )
    max_event_age_s: float | None = Field(
        default=None, gt=0, description="Refuse alerts of events older than this, in seconds."
    )
    allowed_sources: list[str] | None = Field(
        default=None, description="Issuers allowed (LVK, Swift, Fermi...); empty: all."
    )
    allowed_kinds: list[AlertKind] | None = Field(
        default_factory=lambda: list(_SOURCE_KINDS),
        description="Messenger families allowed; circulars are not triggers by default.",
    )
    allowed_notice_types: list[str] | None = Field(
        default=None, description="Notice types allowed (igwn.gwalert...); empty: all."
    )
    allowed_alert_types: list[AlertType] | None = Field(
        default=None, description="Alert types allowed (retractions always pass); empty: all."
    )
    allow_test: bool = Field(
        default=False, description="Accept mock, test and injection alerts (drills only)."
    )
    require_localization: bool = Field(
        default=True, description="Refuse alerts with neither a sky map nor a position."
    )

    def needs_area(self, alert: Alert) -> bool:
        """True when deciding on ``alert`` needs the 90% area of its sky map."""
        return (
            self.max_area90_deg2 is not None
            and alert.skymap is not None
            and not alert.is_retraction
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of the trigger rules for one alert.

    Attributes:
        accepted: True when the alert should start a follow-up (or is a retraction).
        reason: Every failed rule (``; ``-separated) when refused; the checks made when accepted.
    """

    accepted: bool
    reason: str


def error_region_area_deg2(alert: Alert) -> float | None:
    """Area in deg2 of the alert's error circle or ellipse, when it has one (flat-sky for small)."""
    if alert.position is None or alert.position.error is None:
        return None
    error = alert.position.error
    a = math.radians(error.radius_deg)
    b = math.radians(error.semi_minor_deg if error.semi_minor_deg is not None else error.radius_deg)
    if error.semi_minor_deg is None:
        # Spherical cap: 2 pi (1 - cos r), exact for any radius.
        area_sr = 2 * math.pi * (1 - math.cos(min(a, math.pi)))
    else:
        area_sr = math.pi * a * b
    return area_sr * (180 / math.pi) ** 2


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def evaluate(
    alert: Alert,
    rules: TriggerRules,
    *,
    area90_deg2: float | None = None,
    now: datetime | None = None,
) -> Decision:
    """Apply the trigger rules to an alert.

    Args:
        alert: The parsed alert.
        rules: The thresholds.
        area90_deg2: The 90% credible area of the alert's sky map in deg2, computed by the caller
            with :mod:`followup.skymap` (None when unknown). Without it, an alert with a position
            uses its error region's area.
        now: The current time for the age rules (default: now, UTC).

    Returns:
        The decision. A rule that cannot be evaluated fails closed: with ``max_area90_deg2``
        set, an alert whose area is unknown (its embedded map could not be read, or it has only
        a map URL and no error region) is refused, and the reason says the rule could not be
        checked, so that a person can start the follow-up by hand.
    """
    if alert.is_retraction:
        return Decision(True, "retraction: always passed through to the retraction flow")
    failed: list[str] = []
    passed: list[str] = []

    if alert.is_test and not rules.allow_test:
        failed.append("test/mock alert and allow_test is off")
    if rules.allowed_kinds is not None and alert.kind not in rules.allowed_kinds:
        failed.append(f"kind {alert.kind.value} not allowed")
    if rules.allowed_sources is not None and alert.source.lower() not in {
        s.lower() for s in rules.allowed_sources
    }:
        failed.append(f"source {alert.source} not allowed")
    notice_type = alert.extra.get("notice_type")
    if rules.allowed_notice_types is not None and notice_type not in rules.allowed_notice_types:
        failed.append(f"notice type {notice_type} not allowed")
    if rules.allowed_alert_types is not None and alert.alert_type not in rules.allowed_alert_types:
        failed.append(f"alert type {alert.alert_type.value} not allowed")

    if rules.significant_only and alert.significant is False:
        failed.append("not significant")
    elif alert.significant:
        passed.append("significant")
    if rules.max_far_hz is not None and alert.far_hz is not None:
        if alert.far_hz > rules.max_far_hz:
            failed.append(f"FAR {_fmt(alert.far_hz)} Hz > {_fmt(rules.max_far_hz)} Hz")
        else:
            passed.append(f"FAR {_fmt(alert.far_hz)} Hz <= {_fmt(rules.max_far_hz)} Hz")

    if alert.kind is AlertKind.GW:
        for key, threshold in (("HasNS", rules.min_has_ns), ("HasRemnant", rules.min_has_remnant)):
            if threshold is None:
                continue
            value = alert.properties.get(key)
            if value is None:
                failed.append(f"{key} missing (need >= {_fmt(threshold)})")
            elif value < threshold:
                failed.append(f"{key} {_fmt(value)} < {_fmt(threshold)}")
            else:
                passed.append(f"{key} {_fmt(value)} >= {_fmt(threshold)}")
    if rules.min_classification and alert.classification:
        hits = [
            f"{name} {_fmt(alert.classification[name])} >= {_fmt(threshold)}"
            for name, threshold in rules.min_classification.items()
            if alert.classification.get(name, 0.0) >= threshold
        ]
        if hits:
            passed.append(" or ".join(hits))
        else:
            wanted = ", ".join(f"{k} >= {_fmt(v)}" for k, v in rules.min_classification.items())
            failed.append(f"no class reaches its threshold ({wanted})")
    for name, ceiling in rules.max_classification.items():
        value = alert.classification.get(name)
        if value is not None and value > ceiling:
            failed.append(f"{name} {_fmt(value)} > {_fmt(ceiling)}")

    has_map = alert.skymap is not None or alert.skymap_url is not None
    if rules.require_localization and not has_map and alert.position is None:
        placeholder = alert.extra.get("position_placeholder")
        why = alert.extra.get("skymap_error") or (
            placeholder.get("why") if isinstance(placeholder, dict) else None
        )
        failed.append("no localisation" + (f" ({why})" if why else ""))
    if rules.max_area90_deg2 is not None:
        area, what = area90_deg2, "90% area"
        if area is None and alert.skymap is None:
            # Without an embedded map, the error region is the localisation there is.
            area, what = error_region_area_deg2(alert), "error region area"
        if area is None:
            failed.append(
                f"90% area unknown: max_area90_deg2 {_fmt(rules.max_area90_deg2)} deg2 cannot "
                "be checked (fails closed)"
            )
        elif area > rules.max_area90_deg2:
            failed.append(f"{what} {_fmt(area)} deg2 > {_fmt(rules.max_area90_deg2)}")
        else:
            passed.append(f"{what} {_fmt(area)} deg2 <= {_fmt(rules.max_area90_deg2)}")
    if (
        rules.max_error_radius_deg is not None
        and not has_map
        and alert.position is not None
        and alert.position.error is not None
    ):
        radius = alert.position.error.radius_deg
        if radius > rules.max_error_radius_deg:
            failed.append(f"error radius {_fmt(radius)} deg > {_fmt(rules.max_error_radius_deg)}")
    if rules.max_distance_mpc is not None and alert.distance_mpc is not None:
        if alert.distance_mpc > rules.max_distance_mpc:
            failed.append(
                f"distance {_fmt(alert.distance_mpc)} Mpc > {_fmt(rules.max_distance_mpc)}"
            )
        else:
            passed.append(
                f"distance {_fmt(alert.distance_mpc)} Mpc <= {_fmt(rules.max_distance_mpc)}"
            )

    if rules.max_alert_age_s is not None or rules.max_event_age_s is not None:
        current = now or utcnow()
        age = (current - alert.issued_at).total_seconds()
        if rules.max_alert_age_s is not None and age > rules.max_alert_age_s:
            failed.append(f"alert issued {age:.0f} s ago > {_fmt(rules.max_alert_age_s)} s")
        if rules.max_event_age_s is not None and alert.event_time is not None:
            event_age = (current - alert.event_time).total_seconds()
            if event_age > rules.max_event_age_s:
                failed.append(
                    f"event happened {event_age:.0f} s ago > {_fmt(rules.max_event_age_s)} s"
                )

    if failed:
        return Decision(False, "; ".join(failed))
    return Decision(True, "; ".join(passed) if passed else "no rule refused it")
