"""Plan versions: a PRELIMINARY then an UPDATE of one event, on the fixed sky grid."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from followup.fieldgrid import field_probability, plan_observable_fields
from followup.ledger import Ledger
from followup.planversions import PlanField, diff_plan
from followup.skymap import gaussian_skymap
from followup.tiling import INSTRUMENT_FIELDS, in_field
from followup.visibility import VisibilityCalculator

SINISTRO = INSTRUMENT_FIELDS["1M0-SCICAM-SINISTRO"]
START = datetime(2026, 12, 6, tzinfo=UTC)
MIN_P = 0.01


def best_fields(sky, n=10):
    calc = VisibilityCalculator(START, max_airmass=2.0, min_moon_distance_deg=20.0)
    plan = plan_observable_fields(sky, SINISTRO, calc, max_fields=n, min_probability=MIN_P)
    return [
        PlanField(name=f.name, ra=f.ra, dec=f.dec, probability=f.probability)
        for f in plan.requested
    ]


def overlap_fraction(a: PlanField, b: PlanField) -> float:
    """Share of field a's area inside field b (sampled)."""
    g = (np.arange(40) + 0.5) / 40 - 0.5
    dx, dy = np.meshgrid(g * SINISTRO.width_deg, g * SINISTRO.height_deg)
    ra = a.ra + dx.ravel() / np.cos(np.radians(a.dec))
    dec = a.dec + dy.ravel()
    return float(in_field(b.ra, b.dec, ra, dec, SINISTRO.width_deg, SINISTRO.height_deg).mean())


def test_an_update_keeps_reuses_and_drops_fields_of_one_grid():
    preliminary = gaussian_skymap(60.0, -30.0, 0.8, max_order=10)
    update = gaussian_skymap(61.2, -30.6, 0.6, max_order=10)  # shifted by a degree, tighter
    v1 = diff_plan([], best_fields(preliminary), {}, min_probability=MIN_P, max_fields=10)
    assert len(v1.added) == 10 and not v1.kept and not v1.dropped
    now = dict(
        zip(
            [f.name for f in v1.fields],
            field_probability(
                update, SINISTRO, [f.ra for f in v1.fields], [f.dec for f in v1.fields]
            ),
            strict=True,
        )
    )
    v2 = diff_plan(v1.fields, best_fields(update), now, min_probability=MIN_P, max_fields=10)
    assert v2.kept and v2.dropped and v2.added
    assert all(now[f.name] < MIN_P for f in v2.dropped)
    assert all("below the strategy's minimum" in v2.reasons[f.name] for f in v2.dropped)
    assert v2.probability_gained == pytest.approx(sum(f.probability for f in v2.added))
    # Every field ever requested for the event (kept, dropped and added): no two overlap > 10%.
    requested = [*v1.fields, *v2.added]
    for i, a in enumerate(requested):
        for b in requested[i + 1 :]:
            assert overlap_fraction(a, b) <= 0.10, (a.name, b.name)


def test_versions_are_numbered_and_stored_with_their_difference(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.migrate()
    a = PlanField(name="F001.0000+01.0000", ra=1.0, dec=1.0, probability=0.2)
    b = PlanField(name="F002.0000+01.0000", ra=2.0, dec=1.0, probability=0.1)
    v1 = diff_plan([], [a, b], {}, min_probability=0.05, max_fields=5)
    ledger.plans.add("S1", v1, alert_type="PRELIMINARY", hours=1.5)
    c = PlanField(name="F003.0000+01.0000", ra=3.0, dec=1.0, probability=0.3)
    v2 = diff_plan(
        ledger.plans.latest_fields("S1"),
        [c, a],
        {a.name: 0.25, b.name: 0.01},
        min_probability=0.05,
        max_fields=5,
    )
    row = ledger.plans.add("S1", v2, alert_type="UPDATE", hours=1.5)
    assert row.version == 2
    assert [f.name for f in v2.kept] == [a.name]
    assert [f.name for f in v2.dropped] == [b.name]
    assert [f.name for f in v2.added] == [c.name]
    versions = ledger.plans.versions("S1")
    assert [v.version for v in versions] == [1, 2]
    assert versions[1].diff["dropped"][0]["name"] == b.name
    assert versions[1].probability_gained == pytest.approx(0.3)
    assert {f.name for f in ledger.plans.latest_fields("S1")} == {a.name, c.name}
