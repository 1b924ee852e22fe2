"""Trigger rules: each rule refuses what it should, passes what it should, and says why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from followup.alerts import parse_message
from followup.models import (
    Alert,
    AlertKind,
    AlertType,
    ErrorRegion,
    SkyPosition,
)
from followup.rules import Decision, TriggerRules, error_region_area_deg2, evaluate
from tests.alert_helpers import DATA

ISSUED = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def gw(**fields: object) -> Alert:
    values: dict[str, object] = dict(
        source="LVK",
        kind=AlertKind.GW,
        format="lvk-json",
        event_id="S250101ab",
        alert_type=AlertType.PRELIMINARY,
        issued_at=ISSUED,
        event_time=ISSUED - timedelta(minutes=3),
        far_hz=1e-10,
        significant=True,
        classification={"BNS": 0.9, "NSBH": 0.05, "BBH": 0.0, "Terrestrial": 0.05},
        properties={"HasNS": 0.99, "HasRemnant": 0.8, "HasMassGap": 0.01},
        skymap=b"SIMPLE  =" + b" " * 2871,
        distance_mpc=150.0,
        extra={"notice_type": "igwn.gwalert"},
    )
    values.update(fields)
    return Alert(**values)  # type: ignore[arg-type]


def grb(**fields: object) -> Alert:
    values: dict[str, object] = dict(
        source="Swift",
        kind=AlertKind.GAMMA_RAY,
        format="gcn-json",
        event_id="Swift-1",
        alert_type=AlertType.INITIAL,
        issued_at=ISSUED,
        position=SkyPosition(ra=10, dec=20, error=ErrorRegion(radius_deg=0.05)),
        extra={"notice_type": "gcn.notices.swift.bat.guano"},
    )
    values.update(fields)
    return Alert(**values)  # type: ignore[arg-type]


def test_defaults_accept_a_significant_alert_and_say_why() -> None:
    decision = evaluate(gw(), TriggerRules())
    assert decision == Decision(True, "significant")


@pytest.mark.parametrize(
    ("rules", "alert", "fragment"),
    [
        (TriggerRules(), gw(significant=False), "not significant"),
        (TriggerRules(max_far_hz=1e-12), gw(), "FAR 1e-10 Hz > 1e-12 Hz"),
        (TriggerRules(min_has_ns=0.999), gw(), "HasNS 0.99 < 0.999"),
        (TriggerRules(min_has_remnant=0.9), gw(), "HasRemnant 0.8 < 0.9"),
        (TriggerRules(min_has_ns=0.5), gw(properties={}), "HasNS missing"),
        (TriggerRules(min_classification={"BBH": 0.5}), gw(), "no class reaches"),
        (TriggerRules(max_classification={"Terrestrial": 0.01}), gw(), "Terrestrial 0.05 > 0.01"),
        (TriggerRules(max_area90_deg2=100), gw(), "cannot be checked (fails closed)"),
        (TriggerRules(max_distance_mpc=100), gw(), "distance 150 Mpc > 100"),
        (TriggerRules(allowed_sources=["Swift"]), gw(), "source LVK not allowed"),
        (TriggerRules(allowed_kinds=[AlertKind.NEUTRINO]), gw(), "kind gw not allowed"),
        (TriggerRules(allowed_notice_types=["gcn.notices.x"]), gw(), "notice type igwn.gwalert"),
        (TriggerRules(allowed_alert_types=[AlertType.INITIAL]), gw(), "alert type PRELIMINARY"),
        (TriggerRules(), gw(event_id="MS250101ab", is_test=True), "test/mock alert"),
        (TriggerRules(), gw(skymap=None, extra={"skymap_error": "bad base64"}), "bad base64"),
        (TriggerRules(max_error_radius_deg=0.01), grb(), "error radius 0.05 deg > 0.01"),
        (TriggerRules(max_area90_deg2=0.001), grb(), "error region area 0.00785 deg2 > 0.001"),
        (TriggerRules(), gw(kind=AlertKind.CIRCULAR, format="circular-json"), "kind circular"),
    ],
)
def test_each_rule_refuses_with_a_reason(rules: TriggerRules, alert: Alert, fragment: str) -> None:
    decision = evaluate(alert, rules)
    assert not decision.accepted
    assert fragment in decision.reason


def test_every_failed_rule_is_listed() -> None:
    rules = TriggerRules(max_far_hz=1e-12, min_has_ns=0.999, max_distance_mpc=100)
    reason = evaluate(gw(), rules).reason
    assert reason.count(";") == 2 and "FAR" in reason and "HasNS" in reason


def test_area_rule_uses_the_area_given() -> None:
    rules = TriggerRules(max_area90_deg2=100)
    assert evaluate(gw(), rules, area90_deg2=99.0).accepted
    refused = evaluate(gw(), rules, area90_deg2=1261.0)
    assert not refused.accepted and "90% area 1.26e+03 deg2 > 100" in refused.reason
    assert rules.needs_area(gw()) and not rules.needs_area(grb())
    assert not TriggerRules().needs_area(gw())


def test_gw_rules_do_not_apply_to_other_messengers() -> None:
    rules = TriggerRules(min_has_ns=0.9, min_has_remnant=0.9)
    assert evaluate(grb(), rules).accepted


def test_classification_thresholds_are_any_of() -> None:
    rules = TriggerRules(min_classification={"BBH": 0.5, "BNS": 0.5})
    decision = evaluate(gw(), rules)
    assert decision.accepted and "BNS 0.9 >= 0.5" in decision.reason


def test_drills_accept_mock_events_only_with_allow_test() -> None:
    mock = gw(event_id="MS250101ab", is_test=True)
    assert not evaluate(mock, TriggerRules()).accepted
    assert evaluate(mock, TriggerRules(allow_test=True)).accepted


def test_retractions_always_pass() -> None:
    retraction = gw(alert_type=AlertType.RETRACTION, significant=None, is_test=True, skymap=None)
    strict = TriggerRules(
        allowed_sources=["nobody"], max_far_hz=1e-30, allowed_alert_types=[AlertType.INITIAL]
    )
    decision = evaluate(retraction, strict)
    assert decision.accepted and decision.reason.startswith("retraction")


def test_age_rules() -> None:
    rules = TriggerRules(max_alert_age_s=3600, max_event_age_s=600)
    assert evaluate(gw(), rules, now=ISSUED + timedelta(minutes=5)).accepted
    late = evaluate(gw(), rules, now=ISSUED + timedelta(hours=2))
    assert not late.accepted
    assert "alert issued 7200 s ago" in late.reason and "event happened" in late.reason


def test_rules_without_localisation_requirement() -> None:
    bare = grb(position=None)
    assert not evaluate(bare, TriggerRules()).accepted
    assert evaluate(bare, TriggerRules(require_localization=False)).accepted


def test_rules_validate_their_values() -> None:
    with pytest.raises(ValidationError):
        TriggerRules(max_far_hz=-1)
    with pytest.raises(ValidationError):
        TriggerRules(min_has_ns=1.5)
    with pytest.raises(ValidationError):
        TriggerRules(unknown_rule=True)  # type: ignore[call-arg]
    rules = TriggerRules.model_validate_json('{"max_far_hz": 3.9e-8, "allow_test": true}')
    assert rules.max_far_hz == 3.9e-8 and rules.allow_test


def test_error_region_area() -> None:
    circle = grb(position=SkyPosition(ra=0, dec=0, error=ErrorRegion(radius_deg=1.0)))
    assert error_region_area_deg2(circle) == pytest.approx(3.1413, rel=1e-4)
    ellipse = grb(
        position=SkyPosition(
            ra=0, dec=0, error=ErrorRegion(radius_deg=2, semi_minor_deg=1, position_angle_deg=0)
        )
    )
    assert error_region_area_deg2(ellipse) == pytest.approx(6.2832, rel=1e-4)
    assert error_region_area_deg2(grb(position=None)) is None


def test_rules_on_real_format_fixtures() -> None:
    rules = TriggerRules(max_far_hz=1e-7, max_error_radius_deg=1.0)
    decisions = {
        name: evaluate(parse_message((DATA / name).read_bytes()), rules)
        for name in (
            "lvk-S250101ab-preliminary.json",
            "lvk-MS250101cd-update-extcoinc.json",
            "gcn-swift-guano-initial.json",
            "gcn-swift-guano-update-position.json",
            "gcn-icecube-gold-track.json",
            "gcn-fermi-gbm-ground.json",
            "voevent-fermi-gbm-gnd-pos.xml",
            "circular-41234.json",
        )
    }
    assert decisions["lvk-S250101ab-preliminary.json"].accepted
    assert "test/mock" in decisions["lvk-MS250101cd-update-extcoinc.json"].reason
    assert "no localisation" in decisions["gcn-swift-guano-initial.json"].reason
    assert "FAR 2.5e-06 Hz > 1e-07 Hz" in decisions["gcn-swift-guano-update-position.json"].reason
    assert decisions["gcn-icecube-gold-track.json"].accepted
    # A sky map (here a URL) describes the localisation: the error-radius rule is for positions.
    assert decisions["gcn-fermi-gbm-ground.json"].accepted
    assert "error radius 3.2 deg > 1" in decisions["voevent-fermi-gbm-gnd-pos.xml"].reason
    assert "kind circular" in decisions["circular-41234.json"].reason


def test_an_area_rule_that_cannot_be_evaluated_fails_closed() -> None:
    rules = TriggerRules(max_area90_deg2=100)
    # A map URL and an error region: the region is the localisation there is.
    with_region = grb(skymap_url="https://example.org/map.fits")
    assert evaluate(with_region, rules).accepted
    # A map URL and nothing else (an LVK VOEvent): unknown, so refused, never passed unchecked.
    url_only = gw(skymap=None, skymap_url="https://example.org/bayestar.fits")
    refused = evaluate(url_only, rules)
    assert not refused.accepted and "cannot be checked" in refused.reason
    # An embedded map whose area the caller could not compute: the same.
    assert not evaluate(gw(), rules, area90_deg2=None).accepted
