"""The ledger's unique keys make double submission impossible, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import inspect

from followup.exceptions import LedgerError
from followup.ledger import IncomingMessage, Ledger, MessageOutcome, StoredMessage
from followup.models import (
    Alert,
    Approval,
    Frame,
    LcoState,
    Measurement,
    ObservationRequest,
    Report,
    Target,
)


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
    message, _ = ledger.record_message(topic="t", raw=b"x", message_uuid=None)
    ledger.record_alert(message.id, make_alert(event_id))
    ledger.save_targets(
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
    first, created = ledger.record_message(topic="igwn.gwalert", raw=b"abc", message_uuid="u-1")
    again, created_again = ledger.record_message(
        topic="igwn.gwalert", raw=b"abc", message_uuid="u-1"
    )
    other, created_other = ledger.record_message(
        topic="igwn.gwalert", raw=b"abc", message_uuid="u-2"
    )
    assert (created, created_again, created_other) == (True, False, True)
    assert again.id == first.id != other.id
    assert ledger.get_message(first.id).raw == b"abc"


def test_messages_without_hop_id_are_each_kept(ledger: Ledger) -> None:
    a, _ = ledger.record_message(topic="t", raw=b"same", message_uuid=None)
    b, _ = ledger.record_message(topic="t", raw=b"same", message_uuid=None)
    assert a.id != b.id
    assert a.sha256 == b.sha256


def test_alert_dedupe_key_catches_a_republished_copy(ledger: Ledger) -> None:
    m1, _ = ledger.record_message(topic="t", raw=b"1", message_uuid="a")
    m2, _ = ledger.record_message(topic="t", raw=b"2", message_uuid="b")
    row, new = ledger.record_alert(m1.id, make_alert())
    # The same alert with its issue time written in another zone is the same alert.
    same = make_alert(issued_at=datetime(2025, 1, 1, 13, 0, tzinfo=timezone(timedelta(hours=1))))
    dup, new_dup = ledger.record_alert(m2.id, same)
    assert new and not new_dup
    assert dup.id == row.id
    later, new_later = ledger.record_alert(m2.id, make_alert(alert_type="INITIAL"))
    assert new_later
    event = ledger.get_event("S250101ab")
    assert event is not None and event.latest_alert_id == later.id
    assert [a.alert_type for a in ledger.alerts_for_event("S250101ab")] == [
        "PRELIMINARY",
        "INITIAL",
    ]


def test_get_alert_returns_raw_bytes_and_aware_times(ledger: Ledger) -> None:
    message, _ = ledger.record_message(topic="t", raw=b"raw-bytes", message_uuid=None)
    row, _ = ledger.record_alert(message.id, make_alert())
    got, raw = ledger.get_alert(row.id)
    assert raw == b"raw-bytes"
    assert got.issued_at == datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert got.issued_at.tzinfo is not None
    with pytest.raises(LedgerError):
        ledger.get_alert(10_000)


def test_quarantine_keeps_the_message_and_reason(ledger: Ledger) -> None:
    message, _ = ledger.record_message(topic="t", raw=b"\x00garbage", message_uuid="q")
    ledger.quarantine(message.id, "unknown-format", "no parser recognised the bytes")
    ledger.quarantine(message.id, "unknown-format")  # idempotent
    rows = ledger.quarantined()
    assert [r.message_id for r in rows] == [message.id]
    kept = ledger.get_message(message.id)
    assert kept.status == "quarantined" and kept.raw == b"\x00garbage"


def test_request_claim_is_unique_per_target_filters_and_epoch(ledger: Ledger) -> None:
    add_target(ledger)
    request = ObservationRequest(
        event_id="S250101ab", target_name="F001", group_name="S250101ab-F001-e0", filters=["rp"]
    )
    row, claimed = ledger.claim_request(request)
    again, claimed_again = ledger.claim_request(request)
    renamed = request.model_copy(update={"group_name": "another-name"})
    third, claimed_third = ledger.claim_request(renamed)
    assert claimed and not claimed_again and not claimed_third
    assert again.id == row.id == third.id
    epoch1 = request.model_copy(update={"epoch": 1, "group_name": "S250101ab-F001-e1"})
    _, claimed_epoch1 = ledger.claim_request(epoch1)
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
        results.append(ledger.claim_request(request)[1])

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 5 + [True]
    assert len(ledger.requests_for_event("S250101ab")) == 1


def test_claim_request_needs_a_stored_target(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="not stored"):
        ledger.claim_request(
            ObservationRequest(event_id="S1", target_name="nope", group_name="g", filters=["rp"])
        )


def test_pending_requests_follow_state_updates(ledger: Ledger) -> None:
    add_target(ledger)
    request = ObservationRequest(
        event_id="S250101ab", target_name="F001", group_name="g-1", filters=["gp", "rp"]
    )
    ledger.claim_request(request)
    assert ledger.pending_requests() == []  # claimed, not yet submitted
    ledger.update_request("g-1", local_status="submitted", group_id=11, request_id=22)
    assert [r.request_id for r in ledger.pending_requests("S250101ab")] == [22]
    ledger.update_request("g-1", state=LcoState.CANCELED)
    assert ledger.pending_requests() == []
    with pytest.raises(LedgerError):
        ledger.update_request("g-1", no_such_column=1)


def test_report_claim_makes_a_second_send_impossible(ledger: Ledger) -> None:
    report = Report(
        destination="tns", event_id="S1", target_name="c1", content_hash="h1", status="draft"
    )
    row, new = ledger.claim_report(report)
    again, new_again = ledger.claim_report(report)
    assert new and not new_again and again.id == row.id
    ledger.update_report(row.id, status="confirmed", remote_id="2025abc")
    changed = report.model_copy(update={"content_hash": "h2"})
    _, new_changed = ledger.claim_report(changed)
    assert new_changed
    assert [r.remote_id for r in ledger.sent_reports("tns", "S1")] == ["2025abc"]


def test_frames_and_measurements_are_stored_once(ledger: Ledger) -> None:
    add_target(ledger)
    frame = Frame(
        frame_id=5, basename="cpt1m010-fa16-20250101-0001-e91", filename="x.fits.fz", url="u"
    )
    frow, new = ledger.record_frame(frame)
    _, new_again = ledger.record_frame(frame.model_copy(update={"local_path": "/tmp/x.fits"}))
    assert new and not new_again
    target = ledger.get_target("S250101ab", "F001")
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
    _, m_new = ledger.record_measurement(frow.id, target.id, m)
    _, m_again = ledger.record_measurement(frow.id, target.id, m)
    assert m_new and not m_again
    assert ledger.measurements_for_event("S250101ab") == [m]


def test_retraction_marks_the_event(ledger: Ledger) -> None:
    add_target(ledger)
    ledger.mark_retracted("S250101ab")
    event = ledger.get_event("S250101ab")
    assert event is not None and event.retracted and event.retracted_at is not None
    # A retraction for an event never seen is still recorded.
    assert ledger.mark_retracted("S999999zz").retracted


def test_approvals_are_recorded_in_order(ledger: Ledger) -> None:
    ledger.record_approval(Approval(subject="g-1", approved=False, decided_by="timeout"))
    ledger.record_approval(Approval(subject="g-1", approved=True, decided_by="alice", comment="go"))
    assert [(a.decided_by, a.approved) for a in ledger.approvals_for("g-1")] == [
        ("timeout", False),
        ("alice", True),
    ]


# ---------------------------------------------------------------- batched ingest (area: alerts)


def incoming(uuid: str | None, raw: bytes = b"raw", offset: int = 0) -> IncomingMessage:
    return IncomingMessage(
        topic="gcn.notices.x", raw=raw, message_uuid=uuid, partition=0, offset=offset,
        kafka_timestamp_ms=1_700_000_000_000,
    )  # fmt: skip


def test_record_messages_stores_each_hop_id_once(ledger: Ledger) -> None:
    first = ledger.record_messages([incoming("a", b"1"), incoming("b", b"2"), incoming("a", b"1")])
    assert [(m.created, m.status) for m in first] == [
        (True, "received"),
        (True, "received"),
        (False, "received"),
    ]
    assert first[0].message_id == first[2].message_id != first[1].message_id
    again = ledger.record_messages(
        [incoming("b", b"2"), incoming(None, b"3"), incoming(None, b"3")]
    )
    assert [m.created for m in again] == [False, True, True]
    assert again[0].message_id == first[1].message_id
    assert again[1].message_id != again[2].message_id  # no _id: every copy is kept
    stored = ledger.get_message(first[0].message_id)
    assert (stored.raw, stored.topic, stored.partition, stored.offset) == (
        b"1",
        "gcn.notices.x",
        0,
        0,
    )
    assert stored.kafka_timestamp_ms == 1_700_000_000_000
    assert stored.sha256 == hashlib.sha256(b"1").hexdigest()
    assert ledger.record_messages([]) == []


def test_record_outcomes_quarantines_records_dedupes_and_retracts(ledger: Ledger) -> None:
    stored = ledger.record_messages([incoming(f"m{i}", bytes([i])) for i in range(6)])
    ids = [m.message_id for m in stored]
    preliminary = make_alert()
    later = make_alert(alert_type="INITIAL", issued_at=datetime(2025, 1, 1, 13, tzinfo=UTC))
    retraction = make_alert(alert_type="RETRACTION", issued_at=datetime(2025, 1, 1, 14, tzinfo=UTC))
    results = ledger.record_outcomes(
        [
            MessageOutcome(ids[0], None, reason="unknown-format", detail="no parser"),
            MessageOutcome(ids[1], preliminary, "accepted", "significant"),
            MessageOutcome(ids[2], preliminary, "accepted", "significant"),  # same key in batch
            MessageOutcome(ids[3], later, "rejected", "FAR too high"),
        ]
    )
    assert [r.status for r in results] == ["quarantined", "accepted", "duplicate", "rejected"]
    assert results[2].alert_id == results[1].alert_id and not results[2].created
    assert ledger.get_message(ids[0]).status == "quarantined"
    assert ledger.quarantined()[0].reason == "unknown-format"
    assert ledger.get_message(ids[2]).reason.startswith(
        f"same alert as alert #{results[1].alert_id}"
    )
    row, raw = ledger.get_alert(results[3].alert_id)
    assert (row.decision, row.decision_reason, raw) == ("rejected", "FAR too high", bytes([3]))
    assert row.summary["event_id"] == "S250101ab"
    event = ledger.get_event("S250101ab")
    assert event is not None and event.latest_alert_id == results[3].alert_id
    # A later batch: a stored key is a duplicate; a retraction marks the event.
    more = ledger.record_outcomes(
        [
            MessageOutcome(ids[4], preliminary, "accepted", "significant"),
            MessageOutcome(ids[5], retraction, "retraction", "retraction"),
        ]
    )
    assert [r.status for r in more] == ["duplicate", "retraction"]
    assert more[0].alert_id == results[1].alert_id
    event = ledger.get_event("S250101ab")
    assert event.retracted and event.retracted_at is not None
    assert event.latest_alert_id == more[1].alert_id
    # The per-message view sees what the batch wrote.
    assert ledger.record_messages([incoming("m1", bytes([1]))])[0].alert_id == results[1].alert_id


def test_record_outcomes_finishes_a_message_half_recorded_by_the_step_methods(
    ledger: Ledger,
) -> None:
    message, _ = ledger.record_message(topic="t", raw=b"x", message_uuid="half")
    row, _ = ledger.record_alert(message.id, make_alert())  # then the process died
    stored = ledger.record_messages([incoming("half", b"x")])[0]
    assert not stored.created and not stored.finished and stored.alert_id == row.id
    result = ledger.record_outcomes([MessageOutcome(message.id, make_alert(), "accepted", "ok")])
    assert (result[0].status, result[0].alert_id) == ("accepted", row.id)
    assert ledger.get_alert(row.id)[0].decision == "accepted"
    assert ledger.get_message(message.id).status == "accepted"


def test_concurrent_batches_store_each_message_once(ledger: Ledger) -> None:
    batch = [incoming(f"c{i}", bytes([i])) for i in range(20)]
    results: list[list[StoredMessage]] = []
    barrier = threading.Barrier(4)

    def store() -> None:
        barrier.wait()
        results.append(ledger.record_messages(batch))

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
    stored = ledger.record_messages(
        [IncomingMessage(topic="igwn.gwalert", raw=b"{}", message_uuid="h1", headers=headers)]
    )[0]
    result = ledger.record_outcomes([MessageOutcome(stored.message_id, make_alert(), "accepted")])
    again = ledger.get_stored_alert(result[0].alert_id)
    assert again.headers == headers and again.raw == b"{}" and again.topic == "igwn.gwalert"
    assert (again.event_id, again.alert_type, again.decision) == (
        "S250101ab",
        "PRELIMINARY",
        "accepted",
    )
    assert again.summary["source"] == "LVK"
    plain, _ = ledger.record_message(topic="t", raw=b"x", message_uuid=None)
    row, _ = ledger.record_alert(plain.id, make_alert("S250102a"))
    assert ledger.get_stored_alert(row.id).headers == []
    with pytest.raises(LedgerError):
        ledger.get_stored_alert(99_999)


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
    message, _ = ledger.record_message(topic="t", raw=b"x", message_uuid=None)
    row, _ = ledger.record_alert(message.id, make_alert())
    since = datetime(2020, 1, 1, tzinfo=UTC)
    assert ledger.alerts_without_run(since=since) == []  # no decision yet
    ledger.set_alert_decision(row.id, "accepted")
    assert [a.id for a in ledger.alerts_without_run(since=since)] == [row.id]
    ledger.set_alert_flow_run(row.id, "3c5a0d5e-0000-4000-8000-000000000000")
    assert ledger.alerts_without_run(since=since) == []


def test_a_frame_keeps_why_it_could_not_be_used(ledger: Ledger) -> None:
    frame = Frame(frame_id=7, basename="cpt1m010-fa16-20250101-0002-e91", filename="y", url="u")
    row, _ = ledger.record_frame(frame)
    assert row.error is None
    assert ledger.record_frame_error(row.id, "PhotometryError: no celestial WCS").error == (
        "PhotometryError: no celestial WCS"
    )
    again, new = ledger.record_frame(frame)
    assert not new and again.error == "PhotometryError: no celestial WCS"
    assert ledger.record_frame_error(row.id, None).error is None
    with pytest.raises(KeyError):
        ledger.record_frame_error(row.id + 1000, "x")


def test_migration_0004_adds_frame_errors_to_an_existing_ledger(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'old.db'}")
    ledger.migrate("0003")
    assert "error" not in {c["name"] for c in inspect(ledger.engine).get_columns("frames")}
    ledger.migrate()
    assert "error" in {c["name"] for c in inspect(ledger.engine).get_columns("frames")}
    ledger.dispose()
