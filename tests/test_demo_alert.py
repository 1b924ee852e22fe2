"""The demo's own alert: schema-valid, parseable, observable, with its transient on the map."""

from __future__ import annotations

import importlib.resources
import json
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
