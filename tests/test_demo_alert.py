"""The demo's own alert: schema-valid, parseable, observable, with its transient on the map."""

from __future__ import annotations

import importlib.resources
import json
import math
from datetime import UTC, datetime

import pytest

from deployments.demo import make_demo_alert
from followup.alerts import parse_message
from followup.skymap import read_skymap
from followup.targeting import plan_targets


def test_demo_alert_is_valid_under_the_official_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    pytest.importorskip("igwn_gwalert_schema")
    schema = json.loads(
        importlib.resources.files("igwn_gwalert_schema")
        .joinpath("igwn.alerts.Alert.schema.json")
        .read_text()
    )
    demo = make_demo_alert()
    jsonschema.validate(json.loads(demo.raw), schema)


@pytest.mark.parametrize(
    "when",
    [
        datetime(2026, 3, 20, 12, tzinfo=UTC),
        datetime(2026, 6, 21, 3, tzinfo=UTC),
        datetime(2026, 12, 21, 20, tzinfo=UTC),
    ],
    ids=["equinox", "june-solstice", "december-solstice"],
)
def test_demo_alert_is_observable_and_holds_its_transient(when: datetime) -> None:
    demo = make_demo_alert(when, event_id="MS260101abc")
    alert = parse_message(demo.raw)
    assert (alert.event_id, alert.alert_type.value, alert.is_test) == (
        "MS260101abc",
        "PRELIMINARY",
        True,
    )
    assert alert.significant and alert.classification["BNS"] > 0.9
    skymap = read_skymap(alert.skymap)
    assert skymap.area90 < 2.0
    # The transient lies well inside the credible region, where the first field will be.
    assert skymap.searched_probability(demo.transient.ra, demo.transient.dec) < 0.5
    plan = plan_targets(alert, start=when, max_targets=3, max_airmass=2.0)
    assert plan.targets, [d.reason for d in plan.dropped]


def test_runs_of_one_day_point_at_the_same_field() -> None:
    """So that ``followup demo --seed N`` replays the same stars later the same day."""
    morning = make_demo_alert(datetime(2026, 12, 5, 1, tzinfo=UTC), event_id="MS261205aaa")
    evening = make_demo_alert(datetime(2026, 12, 5, 22, tzinfo=UTC), event_id="MS261205aab")
    next_week = make_demo_alert(datetime(2026, 12, 12, 1, tzinfo=UTC), event_id="MS261212aaa")
    same = (morning.transient.ra, morning.transient.dec)
    assert (evening.transient.ra, evening.transient.dec) == same
    assert (next_week.transient.ra, next_week.transient.dec) != same


def test_demo_fields_lower_the_gw_strategy_only() -> None:
    """``followup demo --fields N``: at most N fields of a GW map, all else the demo's."""
    import yaml

    from deployments.demo import demo_strategies
    from deployments.stack import DEMO_STRATEGIES

    book, two = yaml.safe_load(DEMO_STRATEGIES), yaml.safe_load(demo_strategies(2))
    assert two["strategies"]["demo-gw"]["max_targets"] == 2
    two["strategies"]["demo-gw"]["max_targets"] = book["strategies"]["demo-gw"]["max_targets"]
    assert two == book
    with pytest.raises(ValueError, match="at least one field"):
        demo_strategies(0)


def test_the_kilonova_is_in_the_first_of_two_fields() -> None:
    """What the end-to-end test, on two fields, relies on."""
    from sandbox.lco.frames import FIELD_HALF_WIDTH_DEG

    when = datetime(2026, 12, 7, 5, tzinfo=UTC)
    demo = make_demo_alert(when, event_id="MS261207abc")
    plan = plan_targets(parse_message(demo.raw), start=when, max_targets=2, max_airmass=2.0)
    assert len(plan.targets) == 2
    first = plan.targets[0]
    half = FIELD_HALF_WIDTH_DEG["1M0-SCICAM-SINISTRO"][0]
    assert abs(demo.transient.dec - first.dec) < half
    assert abs((demo.transient.ra - first.ra) * math.cos(math.radians(first.dec))) < half
