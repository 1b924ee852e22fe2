"""A cadence that reacts: an epoch whose window closed unobserved is requested again, once.

Against the sandbox portal: a request is submitted exactly once, forced to WINDOW_EXPIRED, read
back by the batched refresh, and :func:`followup.cadence.plan_rerequests` decides what to request
again; the submission itself is the same exactly-once :func:`followup.observing.submit_once`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from followup.cadence import (
    events_with_expired_requests,
    note_rerequest,
    plan_candidate_cadence,
    plan_candidate_spectrum,
    plan_rerequests,
    record_rerequest,
)
from followup.lco import (
    PortalClient,
    RequestGroupSpec,
    at_submission,
    build_request_group,
    make_group_name,
)
from followup.ledger import Ledger
from followup.ledger.requests import attempt_of, base_filters
from followup.models import Alert, Approval, Frame, LcoState, ObservationRequest, Target
from followup.observing import SubmitOutcome, refresh_request_states, submit_once
from followup.strategies import StrategyBook, live_until, load_strategies
from sandbox.lco import LcoSandboxState, ManualClock, create_portal_app
from tests.lco_support import TOKEN, serve
from tests.ledger_support import store_alert

pytestmark = pytest.mark.slow

EVENT = "S250101ab"
BOOK = """\
version: 1
strategies:
  kn:
    instrument_type: 1M0-SCICAM-SINISTRO
    filters: [gp, rp]
    exposure_time_s: 120
    epochs: 2
    cadence_hours: 24
    window_hours: 12
    max_targets: 2
  other:
    instrument_type: 1M0-SCICAM-SINISTRO
    filters: [rp]
    exposure_time_s: 300
selection:
  - strategy: kn
"""


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[LcoSandboxState, str]]:
    state = LcoSandboxState(ManualClock(), None, token=TOKEN, completion_delay_s=600)
    with serve(create_portal_app(state)) as url:
        yield state, url


@pytest.fixture
def sandbox(served):
    served[0].reset()
    return served


@pytest.fixture
def portal(sandbox) -> Iterator[PortalClient]:
    client = PortalClient(TOKEN, base_url=sandbox[1])
    yield client
    client.close()


@pytest.fixture
def book() -> StrategyBook:
    return load_strategies(BOOK)


def submitted(sandbox) -> list[dict]:
    return httpx.get(f"{sandbox[1]}/sandbox/requests").json()["results"]


def force(sandbox, request_id: int, state: str) -> None:
    response = httpx.post(
        f"{sandbox[1]}/sandbox/requests/{request_id}/state", json={"state": state}
    )
    response.raise_for_status()


def observe_epoch(ledger: Ledger, portal: PortalClient, sandbox, book, epoch: int = 0) -> str:
    """Store the event and its target, and submit one epoch of ``kn`` as the observe flow does."""
    now = sandbox[0].now()
    store_alert(
        ledger,
        Alert(
            source="LVK",
            kind="gw",
            format="lvk-json",
            event_id=EVENT,
            alert_type="PRELIMINARY",
            issued_at=now,
            event_time=now - timedelta(minutes=5),
        ),
    )
    target = Target(name="F001", ra=150.25, dec=-20.5, kind="field", rank=1, probability=0.4)
    ledger.events.save_targets(EVENT, [target])
    plan = book.strategies["kn"]
    name = make_group_name(EVENT, "F001", epoch=epoch, filters=plan.filters, plan="kn")
    start, end = now, now + timedelta(hours=plan.window_hours)
    request = ObservationRequest(
        event_id=EVENT,
        target_name="F001",
        epoch=epoch,
        group_name=name,
        filters=plan.filters,
        window_start=start,
        window_end=end,
    )
    spec = RequestGroupSpec(
        target=target,
        strategy=plan,
        proposal="SANDBOX-001",
        group_name=name,
        window_start=start,
        window_end=end,
    )
    assert submit_once(portal, ledger, request, build_request_group(spec)).outcome == "submitted"
    return name


def expire(ledger: Ledger, portal: PortalClient, sandbox, name: str) -> None:
    force(sandbox, ledger.requests.find(name).request_id, "WINDOW_EXPIRED")
    changes = refresh_request_states(portal, ledger, event_id=EVENT)
    assert [(c.group_name, c.new) for c in changes] == [(name, LcoState.WINDOW_EXPIRED)]


def send(ledger: Ledger, portal: PortalClient, plan, now: datetime):
    spec = at_submission(plan.spec, now=now)
    note_rerequest(ledger, plan)
    result = submit_once(portal, ledger, plan.request, build_request_group(spec))
    if result.outcome in {SubmitOutcome.SUBMITTED, SubmitOutcome.FOUND}:
        record_rerequest(ledger, plan)
    return result


def test_an_expired_epoch_is_requested_again_once_with_a_new_window(
    sqlite_ledger, sandbox, portal, book
) -> None:
    first = observe_epoch(sqlite_ledger, portal, sandbox, book, epoch=1)
    now = sandbox[0].advance(13 * 3600)
    expire(sqlite_ledger, portal, sandbox, first)
    assert events_with_expired_requests(sqlite_ledger) == [EVENT]

    [plan] = plan_rerequests(sqlite_ledger, EVENT, book, proposal="SANDBOX-001", now=now)
    expected = make_group_name(EVENT, "F001", epoch=1, filters=["gp", "rp"], plan="kn", attempt=1)
    assert plan.request.group_name == expected and "_e1a1_" in expected
    assert plan.request.epoch == 1 and plan.request.attempt == 1 and plan.replaces == first
    assert plan.spec.window_start == now
    assert plan.spec.window_end == now + timedelta(hours=12)
    assert send(sqlite_ledger, portal, plan, now).outcome == "submitted"

    rows = sqlite_ledger.requests.for_event(EVENT)
    assert [(r.group_name, r.epoch, attempt_of(r), base_filters(r)) for r in rows] == [
        (first, 1, 0, ["gp", "rp"]),
        (expected, 1, 1, ["gp", "rp"]),
    ]
    # The reason is on both requests: why the old one is replaced, and what the new one is for.
    for row in rows:
        assert "closed at" in row.detail and "without frames" in row.detail
        assert f"requested again as {expected} (attempt 1)" in row.detail
    [new] = [s for s in submitted(sandbox) if s["name"] == expected]
    assert new["requests"][0]["window_start"].startswith(f"{now:%Y-%m-%dT%H:%M}")

    # Exactly once: planning and sending again finds the new request pending, and sends nothing.
    assert plan_rerequests(sqlite_ledger, EVENT, book, proposal="SANDBOX-001", now=now) == []
    assert send(sqlite_ledger, portal, plan, now).outcome == "already"
    assert len(submitted(sandbox)) == 2

    # The second window closing unobserved is the end: ``rerequests`` is 1.
    later = sandbox[0].advance(13 * 3600)
    expire(sqlite_ledger, portal, sandbox, expected)
    assert plan_rerequests(sqlite_ledger, EVENT, book, proposal="SANDBOX-001", now=later) == []


def test_a_lost_submission_of_the_new_attempt_is_planned_under_the_same_name(
    sqlite_ledger, sandbox, portal, book
) -> None:
    first = observe_epoch(sqlite_ledger, portal, sandbox, book)
    now = sandbox[0].advance(13 * 3600)
    expire(sqlite_ledger, portal, sandbox, first)
    [plan] = plan_rerequests(sqlite_ledger, EVENT, book, proposal="SANDBOX-001", now=now)
    # A run died after claiming the new attempt, before the portal answered.
    sqlite_ledger.requests.claim(plan.request)
    [again] = plan_rerequests(
        sqlite_ledger, EVENT, book, proposal="SANDBOX-001", now=now + timedelta(minutes=5)
    )
    assert again.request.group_name == plan.request.group_name and again.replaces == first
    closed = sqlite_ledger.requests.find(first).window_end
    assert f"the window of {first} closed at {closed:%Y-%m-%d %H:%M} UTC" in again.reason
    assert send(sqlite_ledger, portal, again, now).outcome == "submitted"
    assert [s["name"] for s in submitted(sandbox)] == [first, plan.request.group_name]


def test_the_new_attempt_asks_for_no_more_than_a_person_approved(
    sqlite_ledger, sandbox, portal, book
) -> None:
    first = observe_epoch(sqlite_ledger, portal, sandbox, book)
    edited = {"filters": ["gp", "rp"], "exposure_time_s": 60.0, "exposure_count": 2}
    declined = {"filters": ["gp", "rp"], "exposure_time_s": 999.0, "exposure_count": 9}
    sqlite_ledger.approvals.record(
        Approval(subject=f"requests:{EVENT}:preliminary", approved=True, decided_by="a"),
        form=edited,
    )
    sqlite_ledger.approvals.record(
        Approval(subject=f"requests:{EVENT}:update", approved=False, decided_by="b"),
        form=declined,
    )
    now = sandbox[0].advance(13 * 3600)
    expire(sqlite_ledger, portal, sandbox, first)
    [plan] = plan_rerequests(sqlite_ledger, EVENT, book, proposal="SANDBOX-001", now=now)
    assert plan.spec.strategy.exposure_time_s == 60.0
    assert plan.spec.strategy.exposure_count == 2
    assert plan.spec.strategy.filters == ["gp", "rp"]


@pytest.mark.parametrize("why", ["retracted", "observed", "over", "not expired", "no retries"])
def test_nothing_is_requested_again_when(sqlite_ledger, sandbox, portal, book, why) -> None:
    first = observe_epoch(sqlite_ledger, portal, sandbox, book)
    now = sandbox[0].advance(13 * 3600)
    if why != "not expired":
        expire(sqlite_ledger, portal, sandbox, first)
    if why == "retracted":
        sqlite_ledger.events.mark_retracted(EVENT)
    if why == "observed":
        row = sqlite_ledger.requests.find(first)
        frame = Frame(
            frame_id=99,
            basename="cpt1m010-fa16-20250101-0001-e91",
            filename="cpt1m010-fa16-20250101-0001-e91.fits.fz",
            url="https://archive.test/frame",
            reduction_level=91,
            filter="rp",
            observation_date=now,
            request_id=row.request_id,
        )
        sqlite_ledger.frames.record(frame, request_row_id=row.id)
    if why == "over":
        # Live until the cadence's span plus one window after the event: 24 + 2 x 12 h.
        until = live_until(book.strategies["kn"], sandbox[0].now() - timedelta(hours=13, minutes=5))
        assert until - (sandbox[0].now() - timedelta(hours=13, minutes=5)) == timedelta(hours=48)
        now = until + timedelta(seconds=1)
    if why == "no retries":
        book = book.model_copy(deep=True)
        book.strategies["kn"] = book.strategies["kn"].model_copy(update={"rerequests": 0})
    assert plan_rerequests(sqlite_ledger, EVENT, book, proposal="SANDBOX-001", now=now) == []


def test_the_first_attempt_keeps_the_name_and_key_it_always_had() -> None:
    assert make_group_name(EVENT, "F001", epoch=2, filters=["rp"], plan="kn") == make_group_name(
        EVENT, "F001", epoch=2, filters=["rp"], plan="kn", attempt=0
    )
    again = make_group_name(EVENT, "F001", epoch=2, filters=["rp"], plan="kn", attempt=1)
    assert (
        "_e2a1_" in again
        and len(again) <= 50
        and again != make_group_name(EVENT, "F001", epoch=2, filters=["rp"], plan="kn", attempt=2)
    )


# ------------------------------------------------------------------ a vetted candidate


def candidate(**fields) -> Target:
    values = dict(name="C150.25000-20.50000", ra=150.25, dec=-20.5, kind="candidate", rank=1)
    values.update(fields)
    return Target(probability=1.0, **values)


NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


def test_a_vetted_candidate_gets_the_muscat_cadence() -> None:
    book = load_strategies()
    planned = plan_candidate_cadence(
        EVENT, candidate(), vetted=True, book=book, proposal="P1", now=NOW
    )
    assert [request.epoch for request, _ in planned] == [0, 1, 2, 3]
    for epoch, (request, spec) in enumerate(planned):
        assert spec.window_start == NOW + timedelta(hours=24 * epoch)
        assert request.filters == ["gp", "rp", "ip", "zs"]
        payload = build_request_group(spec)
        [configuration] = payload["requests"][0]["configurations"]
        assert configuration["instrument_type"] == "2M0-SCICAM-MUSCAT"
        [config] = configuration["instrument_configs"]
        # The four colours at once: one instrument config with a time per channel.
        assert {k: v for k, v in config["extra_params"].items() if k.startswith("exposure_t")} == {
            "exposure_time_g": 240.0,
            "exposure_time_r": 180.0,
            "exposure_time_i": 180.0,
            "exposure_time_z": 180.0,
        }
    names = {request.group_name for request, _ in planned}
    event_own = make_group_name(EVENT, candidate().name, filters=["gp", "rp", "ip", "zs"])
    assert len(names) == 4 and event_own not in names


def test_its_spectrum_is_floyds_with_arcs_and_lamp_flats() -> None:
    book = load_strategies()
    request, spec = plan_candidate_spectrum(
        EVENT, candidate(), vetted=True, book=book, proposal="P1", now=NOW
    )
    assert spec.strategy.instrument_type == "2M0-FLOYDS-SCICAM" and request.epoch == 0
    configurations = build_request_group(spec)["requests"][0]["configurations"]
    assert [c["type"] for c in configurations] == [
        "LAMP_FLAT",
        "ARC",
        "SPECTRUM",
        "ARC",
        "LAMP_FLAT",
    ]
    edited = spec.strategy.model_copy(update={"filters": ["slit_1.6as"], "exposure_time_s": 900})
    again, _ = plan_candidate_spectrum(
        EVENT, candidate(), vetted=True, book=book, proposal="P1", now=NOW, strategy=edited
    )
    assert again.group_name != request.group_name and again.filters == ["slit_1.6as"]


@pytest.mark.parametrize(
    ("target", "vetted", "message"),
    [
        (candidate(), False, "did not pass vetting"),
        (candidate(kind="galaxy"), True, "is a galaxy, not a candidate"),
    ],
)
def test_no_telescope_time_for_an_unvetted_candidate(target, vetted, message) -> None:
    book = load_strategies()
    for plan in (plan_candidate_cadence, plan_candidate_spectrum):
        with pytest.raises(ValueError, match=message):
            plan(EVENT, target, vetted=vetted, book=book, proposal="P1", now=NOW)


def test_a_book_without_candidate_strategies_follows_no_candidate(book) -> None:
    with pytest.raises(ValueError, match="names no candidate strategies"):
        plan_candidate_cadence(EVENT, candidate(), vetted=True, book=book, proposal="P1", now=NOW)
