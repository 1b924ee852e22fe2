"""Observing strategies as data: loading, choosing, approval rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from followup.exceptions import TargetingError
from followup.models import Alert, AlertKind, AlertType, ObservationType
from followup.strategies import (
    ApprovalRules,
    choose_strategy,
    estimate_hours,
    live_until,
    load_strategies,
    needs_approval,
)


def alert(kind: AlertKind = AlertKind.GW, **fields) -> Alert:
    values = {
        "source": "LVK",
        "kind": kind,
        "format": "lvk-json",
        "event_id": "S250101ab",
        "alert_type": AlertType.PRELIMINARY,
        "issued_at": datetime(2025, 1, 1, tzinfo=UTC),
    }
    values.update(fields)
    return Alert(**values)


@pytest.fixture(scope="module")
def book():
    return load_strategies()


def test_default_book_covers_every_alert_class(book) -> None:
    assert set(book.strategies) == {
        "gw-bns-nsbh",
        "gw-bbh-other",
        "grb",
        "neutrino",
        "x-ray",
        "optical",
        "candidate-muscat",
        "candidate-spectrum",
    }
    assert book.candidates is not None
    cadence = book.strategies[book.candidates.cadence]
    assert cadence.instrument_type == "2M0-SCICAM-MUSCAT"
    assert cadence.filters == ["gp", "rp", "ip", "zs"]
    assert book.strategies[book.candidates.spectrum].instrument_type == "2M0-FLOYDS-SCICAM"
    assert (
        book.strategies["gw-bns-nsbh"].epochs == 3
        and book.strategies["gw-bns-nsbh"].cadence_hours == 24
    )
    assert book.strategies["grb"].observation_type is ObservationType.RAPID_RESPONSE
    assert book.strategies["grb"].exposure_time_per_filter_s["gp"] == 180


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({"classification": {"BNS": 0.9, "BBH": 0.05}}, "gw-bns-nsbh", id="bns"),
        pytest.param(
            {"classification": {"BNS": 0.3, "NSBH": 0.3, "BBH": 0.4}}, "gw-bns-nsbh", id="bns+nsbh"
        ),
        pytest.param(
            {"classification": {"BBH": 0.9}, "properties": {"HasNS": 0.7}},
            "gw-bns-nsbh",
            id="hasns",
        ),
        pytest.param(
            {"classification": {"BBH": 0.95, "Terrestrial": 0.05}}, "gw-bbh-other", id="bbh"
        ),
        pytest.param({"kind": AlertKind.GAMMA_RAY, "source": "Swift"}, "grb", id="grb"),
        pytest.param({"kind": AlertKind.NEUTRINO, "source": "IceCube"}, "neutrino", id="neutrino"),
        pytest.param({"kind": AlertKind.X_RAY, "source": "EP"}, "x-ray", id="x-ray"),
        pytest.param({"kind": AlertKind.OPTICAL, "source": "ZTF"}, "optical", id="optical"),
    ],
)
def test_choose_strategy(book, fields, expected) -> None:
    kind = fields.pop("kind", AlertKind.GW)
    assert choose_strategy(alert(kind, **fields), book).name == expected


def test_choose_strategy_refuses_retractions_and_unmatched(book) -> None:
    with pytest.raises(ValueError, match="retracted"):
        choose_strategy(alert(alert_type=AlertType.RETRACTION), book)
    with pytest.raises(TargetingError, match="no observing strategy"):
        choose_strategy(alert(AlertKind.RADIO), book)


def test_book_validation_names_the_bad_entry() -> None:
    text = """
strategies:
  a: {instrument_type: 1M0-SCICAM-SINISTRO, filters: [rp, Halpha]}
selection: [{strategy: a}]
"""
    with pytest.raises(ValueError, match=r"strategy 'a'.*Halpha"):
        load_strategies(text)
    with pytest.raises(ValueError, match="names strategy 'b'"):
        load_strategies({"strategies": {"a": {}}, "selection": [{"strategy": "b"}]})
    with pytest.raises(ValueError, match="ipp_value"):
        load_strategies({"strategies": {"a": {"ipp_value": 3}}})


def test_candidate_strategies_must_exist_and_the_spectrum_be_a_spectrograph() -> None:
    strategies = {"img": {"filters": ["rp"]}}
    with pytest.raises(ValueError, match=r"candidates\.spectrum names strategy 'spec'"):
        load_strategies(
            {"strategies": strategies, "candidates": {"cadence": "img", "spectrum": "spec"}}
        )
    with pytest.raises(ValueError, match="not a spectrograph"):
        load_strategies(
            {"strategies": strategies, "candidates": {"cadence": "img", "spectrum": "img"}}
        )


def test_live_until_is_the_cadence_span_plus_a_window(book) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    kilonova = book.strategies["gw-bns-nsbh"]  # 3 epochs, 24 h apart, 24 h windows
    assert live_until(kilonova, start) == start + timedelta(hours=2 * 24 + 2 * 24)
    fixed = kilonova.model_copy(update={"followup_hours": 240})
    assert live_until(fixed, start) == start + timedelta(hours=240)


def test_load_from_file(tmp_path) -> None:
    path = tmp_path / "book.yaml"
    path.write_text("strategies:\n  only: {filters: [gp]}\nselection:\n  - {strategy: only}\n")
    book = load_strategies(path)
    assert choose_strategy(alert(AlertKind.OPTICAL), book).filters == ["gp"]


def test_approval_rules(book) -> None:
    rules = book.approval
    bns = book.strategies["gw-bns-nsbh"]
    assert needs_approval(bns, alert(significant=True, far_hz=1e-10), rules=rules) == (False, "")
    needed, reason = needs_approval(book.strategies["grb"], alert(AlertKind.GAMMA_RAY), rules=rules)
    assert needed and "RAPID_RESPONSE" in reason
    needed, reason = needs_approval(bns, alert(significant=False, far_hz=1e-6), rules=rules)
    assert needed and "not significant" in reason and "false-alarm rate" in reason
    hours = estimate_hours(bns)
    strict = ApprovalRules(max_hours=hours / 2)
    needed, reason = needs_approval(bns, alert(), rules=strict)
    assert needed and "telescope time" in reason
    # The portal's duration, when known, replaces the estimate.
    assert not needs_approval(bns, alert(), rules=strict, n_requests=1, duration_s=60)[0]
    assert estimate_hours(bns, n_requests=2, duration_s=1800) == 1.0
