"""The observed fields read from the ledger: depth per field and band, coverage, what to share."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from followup.ledger import Ledger
from followup.models import Frame, LcoState, ObservationRequest, Target
from followup.reporting.field_coverage import event_fields, header_depth, observed_fields
from tests.ledger_support import store_alert
from tests.test_ledger import make_alert

HEADER = {
    "FILTER": "rp",
    "L1ZP": 23.4,
    "L1SIGMA": 12.0,
    "L1FWHM": 2.0,
    "PIXSCALE": 0.389,
    "EXPTIME": 300.0,
    "INSTRUME": "fa16",
    "TELID": "1m0a",
}


def test_header_depth_is_the_background_limited_5_sigma_limit():
    radius = 2.0 / 0.389
    noise = 12.0 * (3.141592653589793 * radius**2) ** 0.5
    expected = 23.4 - 2.5 * math.log10(5 * noise / 0.74 / 300.0)
    assert header_depth(HEADER) == pytest.approx(expected)
    assert header_depth({**HEADER, "EXPTIME": 1200.0}) == pytest.approx(expected + 2.5 * 0.60206)
    assert header_depth({k: v for k, v in HEADER.items() if k != "L1SIGMA"}) is None
    assert header_depth({**HEADER, "L1FWHM": "nan?"}) is None


@pytest.fixture
def ledger() -> Ledger:
    ledger = Ledger("sqlite:///:memory:")
    ledger.migrate()
    store_alert(ledger, make_alert("S250101ab"))
    ledger.events.save_targets(
        "S250101ab",
        [
            Target(name=f"F00{i}", ra=10.0 + i, dec=-20.0, kind="field", rank=i, probability=p)
            for i, p in ((1, 0.30), (2, 0.20), (3, 0.10))
        ]
        + [Target(name="G1", ra=9.0, dec=-20.0, kind="galaxy", rank=9, probability=0.01)],
    )
    for name in ("F001", "F002", "F003", "G1"):
        row, _ = ledger.requests.claim(
            ObservationRequest(
                event_id="S250101ab",
                target_name=name,
                group_name=f"S250101ab-{name}-e0",
                filters=["rp"],
                window_start=datetime(2025, 1, 1, 13, tzinfo=UTC),
            )
        )
        state = {"F003": LcoState.WINDOW_EXPIRED}.get(name, LcoState.COMPLETED)
        ledger.requests.update(row.group_name, state=state)
    return ledger


def _frame(ledger: Ledger, name: str, index: int, hour: int) -> str:
    request = ledger.requests.find(f"S250101ab-{name}-e0")
    basename = f"cpt1m010-fa16-20250101-{index:04d}-e91"
    ledger.frames.record(
        Frame(
            frame_id=index,
            basename=basename,
            filename=f"{basename}.fits.fz",
            url="u",
            filter="rp",
            observation_date=datetime(2025, 1, 1, hour, tzinfo=UTC),
            local_path=f"/frames/{basename}.fits.fz",
        ),
        request_row_id=request.id,
    )
    return basename


def test_observed_fields_keep_the_deepest_frame_and_skip_other_targets(ledger):
    a = _frame(ledger, "F001", 1, 14)
    b = _frame(ledger, "F001", 2, 15)
    c = _frame(ledger, "F002", 3, 14)
    g = _frame(ledger, "G1", 4, 14)
    headers = {a: HEADER, b: {**HEADER, "EXPTIME": 600.0}, c: HEADER, g: HEADER}
    coverage = observed_fields(ledger, "S250101ab", headers=headers, depths={c: 21.7})
    fields = {f.name: f for f in coverage.fields}
    assert set(fields) == {"F001", "F002"}  # the galaxy is not a field
    assert fields["F001"].depth == round(header_depth({**HEADER, "EXPTIME": 600.0}), 2)
    assert fields["F001"].date_obs == datetime(2025, 1, 1, 14, tzinfo=UTC)  # the first frame
    assert fields["F002"].depth == 21.7  # a measured depth wins over the header estimate
    assert (fields["F001"].telescope, fields["F001"].camera) == ("LCO 1-m", "Sinistro")
    assert coverage.covered == pytest.approx(0.5)
    assert observed_fields(ledger, "S250101ab", headers={}) is None


def test_event_fields_say_what_became_of_each_request(ledger):
    fields = {f.target_name: f for f in event_fields(ledger, "S250101ab")}
    assert set(fields) == {"F001", "F002", "F003"}
    assert fields["F001"].completed and not fields["F001"].cancelled
    assert fields["F003"].cancelled and fields["F003"].bands == ["rp"]


def test_pointings_follow_requests_and_frames(ledger):
    from flows.pointings import _fields
    from followup.treasuremap import PointingStatus

    a = _frame(ledger, "F001", 1, 14)
    coverage = observed_fields(ledger, "S250101ab", headers={a: HEADER})
    fields = {f.target_name: f for f in _fields(ledger, "S250101ab", coverage)}
    assert fields["F001"].status is PointingStatus.COMPLETED
    assert fields["F001"].depth == coverage.fields[0].depth
    assert fields["F001"].observed_time == datetime(2025, 1, 1, 14, tzinfo=UTC)
    assert fields["F002"].status is PointingStatus.PLANNED  # completed, frames not read yet
    assert fields["F003"].status is PointingStatus.CANCELLED  # its window expired
    assert "G1" not in fields and fields["F002"].camera == "Sinistro"
