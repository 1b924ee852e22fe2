"""The ledger's unique keys make double submission impossible, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from followup.exceptions import LedgerError
from followup.ledger import IncomingMessage, Ledger, MessageOutcome, StoredMessage
from followup.models import (
    Alert,
    AlertDecision,
    Approval,
    Frame,
    LcoState,
    Measurement,
    MessageStatus,
    ObservationRequest,
    Report,
    ReportStatus,
    RequestStatus,
    Target,
)
from tests.ledger_support import incoming, store_alert


def make_alert(event_id: str = "S250101ab", alert_type: str = "PRELIMINARY", **kw) -> Alert:
    fields = dict(
        source="LVK",
        kind="gw",
        format="lvk-json",
        event_id=event_id,
        alert_type=alert_type,
        issued_at=datetime(2025, 1, 1, 12, 0, tzinfo=UTC),
    )
    fields.update(kw)
    return Alert(**fields)


def add_target(ledger: Ledger, event_id: str = "S250101ab", name: str = "F001") -> None:
    store_alert(ledger, make_alert(event_id))
    ledger.events.save_targets(
        event_id, [Target(name=name, ra=10.0, dec=-20.0, kind="field", rank=1, probability=0.3)]
    )


def test_migrate_creates_every_table_and_is_idempotent(ledger: Ledger) -> None:
    ledger.migrate()  # a second run changes nothing and does not fail
    tables = set(inspect(ledger.engine).get_table_names())
    assert {
        "messages",
        "quarantine",
        "events",
        "alerts",
        "targets",
        "requests",
        "frames",
        "measurements",
        "reports",
        "approvals",
        "alembic_version",
    } <= tables


def test_message_with_same_hop_id_is_stored_once(ledger: Ledger) -> None:
    (first,) = ledger.alerts.record_messages([incoming("u-1", b"abc")])
    (again,) = ledger.alerts.record_messages([incoming("u-1", b"abc")])
    (other,) = ledger.alerts.record_messages([incoming("u-2", b"abc")])
    assert (first.created, again.created, other.created) == (True, False, True)
    assert again.message_id == first.message_id != other.message_id
    assert ledger.alerts.get_message(first.message_id).raw == b"abc"
    assert ledger.alerts.find_message("u-2").id == other.message_id


def test_messages_without_hop_id_are_each_kept(ledger: Ledger) -> None:
    (a,) = ledger.alerts.record_messages([incoming(None, b"same")])
    (b,) = ledger.alerts.record_messages([incoming(None, b"same")])
    assert a.message_id != b.message_id
    assert (
        ledger.alerts.get_message(a.message_id).sha256
        == ledger.alerts.get_message(b.message_id).sha256
    )


def test_alert_dedupe_key_catches_a_republished_copy(ledger: Ledger) -> None:
    first = store_alert(ledger, make_alert(), uuid="a")
    # The same alert with its issue time written in another zone is the same alert.
    same = make_alert(issued_at=datetime(2025, 1, 1, 13, 0, tzinfo=timezone(timedelta(hours=1))))
    dup = store_alert(ledger, same, uuid="b")
    assert first.created and not dup.created
    assert (dup.status, dup.alert_id) == (MessageStatus.DUPLICATE, first.alert_id)
    later = store_alert(ledger, make_alert(alert_type="INITIAL"), uuid="c")
    assert later.created
    event = ledger.events.get("S250101ab")
    assert event is not None and event.latest_alert_id == later.alert_id
    assert [a.alert_type for a in ledger.alerts.for_event("S250101ab")] == [
        "PRELIMINARY",
        "INITIAL",
    ]


def test_get_alert_returns_raw_bytes_and_aware_times(ledger: Ledger) -> None:
    stored = store_alert(ledger, make_alert(), raw=b"raw-bytes")
    got, raw = ledger.alerts.get(stored.alert_id)
    assert raw == b"raw-bytes"
    assert got.issued_at == datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert got.issued_at.tzinfo is not None
    with pytest.raises(LedgerError):
        ledger.alerts.get(10_000)


def test_quarantine_keeps_the_message_and_reason(ledger: Ledger) -> None:
    (message,) = ledger.alerts.record_messages([incoming("q", b"\x00garbage")])
    outcome = MessageOutcome(message.message_id, None, reason="unknown-format", detail="no parser")
    ledger.alerts.record_outcomes([outcome])
    ledger.alerts.record_outcomes([outcome])  # idempotent
    rows = ledger.alerts.quarantined()
    assert [(r.message_id, r.reason, r.detail) for r in rows] == [
        (message.message_id, "unknown-format", "no parser")
    ]
    kept = ledger.alerts.get_message(message.message_id)
    assert kept.status is MessageStatus.QUARANTINED and kept.raw == b"\x00garbage"


def test_request_claim_is_unique_per_target_filters_and_epoch(ledger: Ledger) -> None:
    add_target(ledger)
    request = ObservationRequest(
        event_id="S250101ab", target_name="F001", group_name="S250101ab-F001-e0", filters=["rp"]
    )
    row, claimed = ledger.requests.claim(request)
    again, claimed_again = ledger.requests.claim(request)
    renamed = request.model_copy(update={"group_name": "another-name"})
    third, claimed_third = ledger.requests.claim(renamed)
    assert claimed and not claimed_again and not claimed_third
    assert again.id == row.id == third.id
    epoch1 = request.model_copy(update={"epoch": 1, "group_name": "S250101ab-F001-e1"})
    _, claimed_epoch1 = ledger.requests.claim(epoch1)
    assert claimed_epoch1


def test_concurrent_claims_give_exactly_one_winner(ledger: Ledger) -> None:
    add_target(ledger)
    request = ObservationRequest(
        event_id="S250101ab", target_name="F001", group_name="S250101ab-F001-e0", filters=["rp"]
    )
    results: list[bool] = []
    barrier = threading.Barrier(6)

    def claim() -> None:
        barrier.wait()
        results.append(ledger.requests.claim(request)[1])

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 5 + [True]
    assert len(ledger.requests.for_event("S250101ab")) == 1


def test_claim_request_needs_a_stored_target(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="not stored"):
        ledger.requests.claim(
            ObservationRequest(event_id="S1", target_name="nope", group_name="g", filters=["rp"])
        )


def test_pending_requests_follow_state_updates(ledger: Ledger) -> None:
    add_target(ledger)
    request = ObservationRequest(
        event_id="S250101ab", target_name="F001", group_name="g-1", filters=["gp", "rp"]
    )
    row, _ = ledger.requests.claim(request)
    assert (row.local_status, row.state) == (RequestStatus.CLAIMED, LcoState.PENDING)
    assert ledger.requests.pending() == []  # claimed, not yet submitted
    ledger.requests.update("g-1", local_status="submitted", group_id=11, request_id=22)
    assert [r.request_id for r in ledger.requests.pending("S250101ab")] == [22]
    updated = ledger.requests.update("g-1", state=LcoState.CANCELED)
    assert updated.state is LcoState.CANCELED
    assert ledger.requests.pending() == []
    (stored,) = ledger.requests.for_event("S250101ab")
    assert (stored.local_status, stored.state) == (RequestStatus.SUBMITTED, LcoState.CANCELED)
    assert stored.local_status is RequestStatus.SUBMITTED  # read back as the enum
    with pytest.raises(LedgerError):
        ledger.requests.update("g-1", no_such_column=1)
    with pytest.raises(LedgerError, match="local_status"):
        ledger.requests.update("g-1", local_status="sent")  # a report status, not a request's


def test_report_claim_makes_a_second_send_impossible(ledger: Ledger) -> None:
    report = Report(
        destination="tns", event_id="S1", target_name="c1", content_hash="h1", status="draft"
    )
    row, new = ledger.reports.claim(report)
    again, new_again = ledger.reports.claim(report)
    assert new and not new_again and again.id == row.id
    ledger.reports.update(row.id, status="confirmed", remote_id="2025abc")
    changed = report.model_copy(update={"content_hash": "h2"})
    _, new_changed = ledger.reports.claim(changed)
    assert new_changed
    assert [(r.content_hash, r.status, r.remote_id) for r in ledger.reports.for_event("S1")] == [
        ("h1", ReportStatus.CONFIRMED, "2025abc"),
        ("h2", ReportStatus.DRAFT, None),
    ]
    with pytest.raises(LedgerError, match="status"):
        ledger.reports.update(row.id, status="submitted")


def test_frames_and_measurements_are_stored_once(ledger: Ledger) -> None:
    add_target(ledger)
    frame = Frame(
        frame_id=5, basename="cpt1m010-fa16-20250101-0001-e91", filename="x.fits.fz", url="u"
    )
    frow, new = ledger.frames.record(frame)
    _, new_again = ledger.frames.record(frame.model_copy(update={"local_path": "/tmp/x.fits"}))
    assert new and not new_again
    target = ledger.events.get_target("S250101ab", "F001")
    assert target is not None
    m = Measurement(
        target_name="F001",
        frame_basename=frame.basename,
        date_obs=datetime(2025, 1, 2, tzinfo=UTC),
        mjd=60677.0,
        band="rp",
        flux_ujy=100.0,
        flux_err_ujy=5.0,
        snr=20.0,
        mag=18.9,
        mag_err=0.05,
        limit_mag_5sigma=21.4,
        zero_point=23.1,
        zero_point_err=0.01,
        n_ref_stars=40,
    )
    _, m_new = ledger.frames.record_measurement(frow.id, target.id, m)
    _, m_again = ledger.frames.record_measurement(frow.id, target.id, m)
    assert m_new and not m_again
    assert ledger.frames.measurements("S250101ab") == [m]


def test_retraction_marks_the_event(ledger: Ledger) -> None:
    add_target(ledger)
    ledger.events.mark_retracted("S250101ab")
    event = ledger.events.get("S250101ab")
    assert event is not None and event.retracted and event.retracted_at is not None
    # A retraction for an event never seen is still recorded.
    assert ledger.events.mark_retracted("S999999zz").retracted


def test_approvals_are_recorded_in_order(ledger: Ledger) -> None:
    ledger.approvals.record(Approval(subject="g-1", approved=False, decided_by="timeout"))
    ledger.approvals.record(
        Approval(subject="g-1", approved=True, decided_by="alice", comment="go")
    )
    assert [(a.decided_by, a.approved) for a in ledger.approvals.for_subject("g-1")] == [
        ("timeout", False),
        ("alice", True),
    ]


# ---------------------------------------------------------------- batched ingest (area: alerts)


def test_record_messages_stores_each_hop_id_once(ledger: Ledger) -> None:
    first = ledger.alerts.record_messages(
        [incoming("a", b"1"), incoming("b", b"2"), incoming("a", b"1")]
    )
    assert [(m.created, m.status) for m in first] == [
        (True, "received"),
        (True, "received"),
        (False, "received"),
    ]
    assert first[0].message_id == first[2].message_id != first[1].message_id
    again = ledger.alerts.record_messages(
        [incoming("b", b"2"), incoming(None, b"3"), incoming(None, b"3")]
    )
    assert [m.created for m in again] == [False, True, True]
    assert again[0].message_id == first[1].message_id
    assert again[1].message_id != again[2].message_id  # no _id: every copy is kept
    stored = ledger.alerts.get_message(first[0].message_id)
    assert (stored.raw, stored.topic, stored.partition, stored.offset) == (
        b"1",
        "gcn.notices.x",
        0,
        0,
    )
    assert stored.kafka_timestamp_ms == 1_700_000_000_000
    assert stored.sha256 == hashlib.sha256(b"1").hexdigest()
    assert ledger.alerts.record_messages([]) == []


def test_record_outcomes_quarantines_records_dedupes_and_retracts(ledger: Ledger) -> None:
    stored = ledger.alerts.record_messages([incoming(f"m{i}", bytes([i])) for i in range(6)])
    ids = [m.message_id for m in stored]
    preliminary = make_alert()
    later = make_alert(alert_type="INITIAL", issued_at=datetime(2025, 1, 1, 13, tzinfo=UTC))
    retraction = make_alert(alert_type="RETRACTION", issued_at=datetime(2025, 1, 1, 14, tzinfo=UTC))
    results = ledger.alerts.record_outcomes(
        [
            MessageOutcome(ids[0], None, reason="unknown-format", detail="no parser"),
            MessageOutcome(ids[1], preliminary, "accepted", "significant"),
            MessageOutcome(ids[2], preliminary, "accepted", "significant"),  # same key in batch
            MessageOutcome(ids[3], later, "rejected", "FAR too high"),
        ]
    )
    assert [r.status for r in results] == ["quarantined", "accepted", "duplicate", "rejected"]
    assert results[2].alert_id == results[1].alert_id and not results[2].created
    assert ledger.alerts.get_message(ids[0]).status == "quarantined"
    assert ledger.alerts.quarantined()[0].reason == "unknown-format"
    assert ledger.alerts.get_message(ids[2]).reason.startswith(
        f"same alert as alert #{results[1].alert_id}"
    )
    row, raw = ledger.alerts.get(results[3].alert_id)
    assert (row.decision, row.decision_reason, raw) == ("rejected", "FAR too high", bytes([3]))
    assert row.summary["event_id"] == "S250101ab"
    event = ledger.events.get("S250101ab")
    assert event is not None and event.latest_alert_id == results[3].alert_id
    # A later batch: a stored key is a duplicate; a retraction marks the event.
    more = ledger.alerts.record_outcomes(
        [
            MessageOutcome(ids[4], preliminary, "accepted", "significant"),
            MessageOutcome(ids[5], retraction, "retraction", "retraction"),
        ]
    )
    assert [r.status for r in more] == ["duplicate", "retraction"]
    assert more[0].alert_id == results[1].alert_id
    event = ledger.events.get("S250101ab")
    assert event.retracted and event.retracted_at is not None
    assert event.latest_alert_id == more[1].alert_id
    # The per-message view sees what the batch wrote.
    assert (
        ledger.alerts.record_messages([incoming("m1", bytes([1]))])[0].alert_id
        == results[1].alert_id
    )


def test_a_message_another_consumer_finished_first_is_not_its_own_duplicate(
    ledger: Ledger,
) -> None:
    # Two consumers read the same message before either finished it: both parse and judge it.
    (mine,) = ledger.alerts.record_messages([incoming("twice", b"x")])
    (theirs,) = ledger.alerts.record_messages([incoming("twice", b"x")])
    assert mine.created and not theirs.created and not theirs.finished
    outcome = MessageOutcome(mine.message_id, make_alert(), AlertDecision.ACCEPTED, "ok")
    (first,) = ledger.alerts.record_outcomes([outcome])
    (second,) = ledger.alerts.record_outcomes([outcome])
    assert first.created and not second.created
    assert (second.status, second.alert_id, second.reason) == (
        MessageStatus.ACCEPTED,
        first.alert_id,
        "ok",
    )
    assert ledger.alerts.get(first.alert_id)[0].decision is AlertDecision.ACCEPTED
    assert ledger.alerts.get_message(mine.message_id).status is MessageStatus.ACCEPTED
    (again,) = ledger.alerts.record_messages([incoming("twice", b"x")])
    assert again.finished and again.alert_id == first.alert_id


def test_concurrent_batches_store_each_message_once(ledger: Ledger) -> None:
    batch = [incoming(f"c{i}", bytes([i])) for i in range(20)]
    results: list[list[StoredMessage]] = []
    barrier = threading.Barrier(4)

    def store() -> None:
        barrier.wait()
        results.append(ledger.alerts.record_messages(batch))

    threads = [threading.Thread(target=store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    assert sum(m.created for r in results for m in r) == 20
    assert len({m.message_id for r in results for m in r}) == 20


def test_stored_alert_keeps_the_headers_needed_to_parse_it_again(ledger: Ledger) -> None:
    headers = [("_id", bytes(range(16))), ("_test", b"true"), ("_format", b"json")]
    stored = ledger.alerts.record_messages(
        [IncomingMessage(topic="igwn.gwalert", raw=b"{}", message_uuid="h1", headers=headers)]
    )[0]
    result = ledger.alerts.record_outcomes(
        [MessageOutcome(stored.message_id, make_alert(), "accepted")]
    )
    again = ledger.alerts.get_stored(result[0].alert_id)
    assert again.headers == headers and again.raw == b"{}" and again.topic == "igwn.gwalert"
    assert (again.event_id, again.alert_type, again.decision) == (
        "S250101ab",
        "PRELIMINARY",
        "accepted",
    )
    assert again.summary["source"] == "LVK"
    plain = store_alert(ledger, make_alert("S250102a"))
    assert ledger.alerts.get_stored(plain.alert_id).headers == []
    with pytest.raises(LedgerError):
        ledger.alerts.get_stored(99_999)


def test_migration_0002_adds_headers_to_an_existing_ledger(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'old.db'}")
    ledger.migrate("0001")
    columns = {c["name"] for c in inspect(ledger.engine).get_columns("messages")}
    assert "headers" not in columns
    ledger.migrate()
    columns = {c["name"] for c in inspect(ledger.engine).get_columns("messages")}
    assert "headers" in columns
    ledger.dispose()


def test_accepted_alerts_without_a_run_are_found_until_one_is_recorded(ledger: Ledger) -> None:
    since = datetime(2020, 1, 1, tzinfo=UTC)
    store_alert(ledger, make_alert(), decision=AlertDecision.REJECTED)
    assert ledger.alerts.without_run(since=since) == []  # rejected: no run to start
    accepted = store_alert(ledger, make_alert(alert_type="INITIAL"))
    assert [a.id for a in ledger.alerts.without_run(since=since)] == [accepted.alert_id]
    assert ledger.alerts.without_run(since=datetime.now(UTC) + timedelta(hours=1)) == []
    ledger.alerts.set_flow_run(accepted.alert_id, "3c5a0d5e-0000-4000-8000-000000000000")
    assert ledger.alerts.without_run(since=since) == []


def test_a_frame_keeps_why_it_could_not_be_used(ledger: Ledger) -> None:
    frame = Frame(frame_id=7, basename="cpt1m010-fa16-20250101-0002-e91", filename="y", url="u")
    row, _ = ledger.frames.record(frame)
    assert row.error is None
    assert ledger.frames.record_error(row.id, "PhotometryError: no celestial WCS").error == (
        "PhotometryError: no celestial WCS"
    )
    again, new = ledger.frames.record(frame)
    assert not new and again.error == "PhotometryError: no celestial WCS"
    assert ledger.frames.record_error(row.id, None).error is None
    with pytest.raises(KeyError):
        ledger.frames.record_error(row.id + 1000, "x")


def test_migration_0004_adds_frame_errors_to_an_existing_ledger(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'old.db'}")
    ledger.migrate("0003")
    assert "error" not in {c["name"] for c in inspect(ledger.engine).get_columns("frames")}
    ledger.migrate()
    assert "error" in {c["name"] for c in inspect(ledger.engine).get_columns("frames")}
    ledger.dispose()


def test_migration_0005_adds_claims_and_attempts_to_an_existing_ledger(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'old.db'}")
    ledger.migrate("0004")
    ledger.migrate()
    inspector = inspect(ledger.engine)
    for table in ("requests", "reports"):
        columns = {c["name"] for c in inspector.get_columns(table)}
        assert {"claimed_by", "claim_expires_at"} <= columns
    assert "attempts" in {c["name"] for c in inspector.get_columns("messages")}
    ledger.dispose()


def test_only_one_owner_acquires_a_claimed_request(ledger: Ledger) -> None:
    add_target(ledger)
    request = ObservationRequest(
        event_id="S250101ab", target_name="F001", group_name="S250101ab-F001-x", filters=["gp"]
    )
    row, created = ledger.requests.claim(request, owner="a")
    assert created and row.claimed_by == "a" and row.claim_expires_at > datetime.now(UTC)
    assert ledger.requests.acquire(request.group_name, "b") is None
    assert ledger.requests.acquire(request.group_name, "a") is not None  # its own again
    ledger.requests.release(request.group_name, "b")  # not b's: nothing happens
    assert ledger.requests.find(request.group_name).claimed_by == "a"
    ledger.requests.release(request.group_name, "a")
    assert ledger.requests.acquire(request.group_name, "b").claimed_by == "b"
    done = ledger.requests.finish(request.group_name, local_status="submitted")
    assert done.claimed_by is None
    assert ledger.requests.acquire(request.group_name, "c") is None  # no longer claimed


def test_migration_0008_adds_pointings_once_per_field_and_band(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'old.db'}")
    ledger.migrate("0005")
    assert "pointings" not in inspect(ledger.engine).get_table_names()
    ledger.migrate()
    first, created = ledger.pointings.record(
        "S1", "F1", "rp", camera="Sinistro", ra=1.0, dec=2.0, planned_time=None
    )
    again, created_again = ledger.pointings.record(
        "S1", "F1", "rp", camera="Sinistro", ra=1.0, dec=2.0, planned_time=None
    )
    assert created and not created_again and again.id == first.id
    ledger.pointings.update(first.id, remote_id=7, status="completed", depth=20.5)
    (row,) = ledger.pointings.for_event("S1")
    assert (row.remote_id, row.status, row.depth) == (7, "completed", 20.5)


def test_migration_0010_gives_targets_vetting_and_follow_runs(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'old.db'}")
    ledger.migrate("0009")
    store_alert(ledger, make_alert("S250101ab"))
    with ledger.engine.begin() as connection:  # a target stored before the columns existed
        connection.execute(
            text(
                "INSERT INTO targets (event_id, name, ra, dec, kind, rank, probability, data, "
                "created_at) VALUES ('S250101ab', 'F001', 10, -20, 'field', 1, 0.3, '{}', "
                "'2025-01-01 12:00:00')"
            )
        )
    ledger.migrate()
    columns = {c["name"] for c in inspect(ledger.engine).get_columns("targets")}
    assert {"vetting", "follow_run_id", "claimed_by", "claim_expires_at"} <= columns
    (row,) = ledger.events.targets("S250101ab")
    assert row.vetting is None and row.follow_run_id is None
    assert ledger.events.to_follow("S250101ab") == []
    ledger.dispose()


def add_candidate(ledger: Ledger, name: str, *, passed: bool | None) -> None:
    from followup.evidence import CandidateVetting

    ledger.events.save_targets(
        "S250101ab",
        [Target(name=name, ra=10.0, dec=-20.0, kind="candidate", rank=2, probability=0)],
    )
    if passed is not None:
        vetting = CandidateVetting(passed=passed, score=0.9, reasons=["real-bogus score 0.90"])
        ledger.events.record_vetting("S250101ab", name, vetting)


def test_each_vetted_candidate_is_started_once_by_one_owner(ledger: Ledger) -> None:
    add_target(ledger)  # a field: never followed as a candidate
    add_candidate(ledger, "C1", passed=True)
    add_candidate(ledger, "C2", passed=False)  # vetted out
    add_candidate(ledger, "C3", passed=None)  # never vetted (a catalog search)
    assert [r.name for r in ledger.events.to_follow("S250101ab")] == ["C1"]
    assert not ledger.events.claim_follow("S250101ab", "F001", "a")
    assert ledger.events.claim_follow("S250101ab", "C1", "a")
    assert not ledger.events.claim_follow("S250101ab", "C1", "b")  # a is starting it
    assert not ledger.events.set_follow_run("S250101ab", "C1", "run-b", "b")
    assert ledger.events.set_follow_run("S250101ab", "C1", "run-a", "a")
    row = ledger.events.get_target("S250101ab", "C1")
    assert (row.follow_run_id, row.claimed_by, row.claim_expires_at) == ("run-a", None, None)
    assert row.vetting["reasons"] == ["real-bogus score 0.90"]
    assert ledger.events.to_follow("S250101ab") == []
    assert not ledger.events.claim_follow("S250101ab", "C1", "b")  # started: never again


def test_a_follow_claim_given_up_or_run_out_can_be_taken(ledger: Ledger) -> None:
    add_target(ledger)
    add_candidate(ledger, "C1", passed=True)
    assert ledger.events.claim_follow("S250101ab", "C1", "a")
    ledger.events.release_follow("S250101ab", "C1", "b")  # not b's: nothing happens
    assert not ledger.events.claim_follow("S250101ab", "C1", "b")
    ledger.events.release_follow("S250101ab", "C1", "a")  # a's start failed
    assert ledger.events.claim_follow("S250101ab", "C1", "b", lease=timedelta(0))
    # b died holding it: its lease ran out, c takes over (and a's late answer is not recorded).
    assert ledger.events.claim_follow("S250101ab", "C1", "c")
    assert not ledger.events.set_follow_run("S250101ab", "C1", "run-b", "b")
    assert ledger.events.get_target("S250101ab", "C1").follow_run_id is None


def test_recording_the_vetting_of_an_unknown_target_fails(ledger: Ledger) -> None:
    from followup.evidence import CandidateVetting

    add_target(ledger)
    with pytest.raises(LookupError, match="no target 'C9'"):
        ledger.events.record_vetting("S250101ab", "C9", CandidateVetting(passed=True))
