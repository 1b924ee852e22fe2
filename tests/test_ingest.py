"""Ingestor: store first, then parse, dedupe and judge; bad input never raises; exactly once."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from followup.alerts.mock import make_gcn_notice, make_lvk_alert
from followup.ingest import Ingestor, IngestOutcome, IngestStatus, MessageMeta, message_key
from followup.ledger import Ledger
from followup.models import AlertType
from followup.rules import TriggerRules
from tests.alert_helpers import DATA, make_multiorder_skymap


def meta(offset: int, *, hop_id: bytes | None = None, topic: str = "igwn.gwalert") -> MessageMeta:
    headers = [("_id", hop_id if hop_id is not None else uuid.uuid4().bytes)]
    return MessageMeta(topic=topic, partition=0, offset=offset, timestamp=1_700_000_000_000 + offset,
                       headers=headers)  # fmt: skip


def fixture(name: str) -> bytes:
    return (DATA / name).read_bytes()


@pytest.fixture
def ingestor(ledger: Ledger) -> Ingestor:
    return Ingestor(ledger, TriggerRules(max_far_hz=1e-6))


def test_each_status_on_real_format_fixtures(ingestor: Ingestor, ledger: Ledger) -> None:
    accepted = ingestor.handle(fixture("lvk-S250101ab-preliminary.json"), meta(1))
    rejected = ingestor.handle(fixture("gcn-swift-guano-update-position.json"), meta(2))
    test_alert = ingestor.handle(fixture("lvk-MS250101cd-update-extcoinc.json"), meta(3))
    quarantined = ingestor.handle(fixture("invalid-lvk-truncated.json"), meta(4))
    retracted = ingestor.handle(fixture("lvk-S250101ab-retraction.json"), meta(5))
    assert accepted.status is IngestStatus.ACCEPTED and accepted.accepted
    assert accepted.event_id == "S250101ab" and accepted.alert_type is AlertType.PRELIMINARY
    assert accepted.alert is not None and accepted.alert.skymap is not None  # no re-parse needed
    assert (
        rejected.status is IngestStatus.REJECTED and "FAR 2.5e-06 Hz > 1e-06 Hz" in rejected.reason
    )
    assert test_alert.status is IngestStatus.REJECTED and "test/mock" in test_alert.reason
    assert quarantined.status is IngestStatus.QUARANTINED
    assert quarantined.reason.startswith("invalid-json: ") and quarantined.alert is None
    assert retracted.status is IngestStatus.RETRACTED
    event = ledger.events.get("S250101ab")
    assert event is not None and event.retracted
    row, raw = ledger.alerts.get(accepted.alert_id)
    assert row.decision == "accepted" and raw == fixture("lvk-S250101ab-preliminary.json")
    assert ledger.alerts.get(retracted.alert_id)[0].decision == "retraction"
    kept = ledger.alerts.get_message(quarantined.message_id)
    assert kept.raw == fixture("invalid-lvk-truncated.json") and kept.status == "quarantined"
    assert [q.reason for q in ledger.alerts.quarantined()] == ["invalid-json"]


def test_message_metadata_is_stored(ingestor: Ingestor, ledger: Ledger) -> None:
    hop_id = uuid.uuid4()
    outcome = ingestor.handle(fixture("gcn-km3net-alert.json"), meta(42, hop_id=hop_id.bytes))
    row = ledger.alerts.get_message(outcome.message_id)
    assert (row.message_uuid, row.topic, row.partition, row.offset) == (
        str(hop_id),
        "igwn.gwalert",
        0,
        42,
    )
    assert row.kafka_timestamp_ms == 1_700_000_000_042
    assert outcome.to_dict()["message_uuid"] == str(hop_id)
    assert json.dumps(outcome.to_dict())  # JSON-able for event payloads


def test_same_hop_id_is_stored_and_processed_once(ingestor: Ingestor, ledger: Ledger) -> None:
    hop_id = uuid.uuid4().bytes
    raw = fixture("lvk-S250101ab-preliminary.json")
    first = ingestor.handle(raw, meta(1, hop_id=hop_id))
    again = ingestor.handle(raw, meta(1, hop_id=hop_id))
    assert first.status is IngestStatus.ACCEPTED
    assert again.status is IngestStatus.DUPLICATE and again.message_id == first.message_id
    assert (again.alert_id, again.event_id) == (first.alert_id, "S250101ab")
    assert "already stored" in again.reason
    assert len(ledger.alerts.for_event("S250101ab")) == 1


def test_same_alert_under_another_hop_id_is_one_accepted_one_duplicate(
    ingestor: Ingestor, ledger: Ledger
) -> None:
    raw = fixture("lvk-S250101ab-preliminary.json")
    outcomes = [ingestor.handle(raw, meta(1)), ingestor.handle(raw, meta(2))]
    assert [o.status for o in outcomes] == [IngestStatus.ACCEPTED, IngestStatus.DUPLICATE]
    assert outcomes[1].alert_id == outcomes[0].alert_id
    assert outcomes[1].message_id != outcomes[0].message_id  # both deliveries are on record
    assert "same alert as alert" in outcomes[1].reason
    # Same in one batch.
    raw2 = make_lvk_alert("S250102cd", skymap=make_multiorder_skymap())
    batch = ingestor.handle_batch([(raw2, meta(3)), (raw2, meta(4))])
    assert [o.status for o in batch] == [IngestStatus.ACCEPTED, IngestStatus.DUPLICATE]


def test_batch_gives_the_same_outcomes_as_one_by_one(ledger: Ledger, tmp_path: Path) -> None:
    names = [
        "lvk-S250101ab-preliminary.json",
        "gcn-icecube-gold-track.json",
        "voevent-swift-bat-pos.xml",
        "circular-41234.json",
        "invalid-voevent-no-ivorn.xml",
        "lvk-S250101ab-preliminary.json",
        "lvk-S250101ab-retraction.json",
    ]
    rules = TriggerRules(max_far_hz=1e-6)
    one = Ingestor(ledger, rules)
    singles = [one.handle(fixture(n), meta(i)).status for i, n in enumerate(names)]
    other = Ledger(f"sqlite:///{tmp_path / 'other.db'}")
    other.migrate()
    batched = [o.status for o in Ingestor(other, rules).handle_batch(
        [(fixture(n), meta(i)) for i, n in enumerate(names)]
    )]  # fmt: skip
    other.dispose()
    assert singles == batched
    assert Counter(singles) == {
        IngestStatus.ACCEPTED: 3,
        IngestStatus.REJECTED: 1,  # the circular: not a trigger kind by default
        IngestStatus.QUARANTINED: 1,
        IngestStatus.DUPLICATE: 1,
        IngestStatus.RETRACTED: 1,
    }


def test_gcn_messages_without_hop_id_are_keyed_by_position(
    ingestor: Ingestor, ledger: Ledger
) -> None:
    raw = make_gcn_notice(event_id="555")
    bare = MessageMeta(topic="gcn.notices.swift.bat.guano", partition=0, offset=7)
    first = ingestor.handle(raw, bare)
    redelivered = ingestor.handle(raw, bare)  # a consumer restart reads offset 7 again
    elsewhere = ingestor.handle(raw, MessageMeta(topic=bare.topic, partition=0, offset=8))
    assert first.status is IngestStatus.ACCEPTED
    assert redelivered.status is IngestStatus.DUPLICATE
    assert redelivered.message_id == first.message_id
    assert elsewhere.status is IngestStatus.DUPLICATE and elsewhere.message_id != first.message_id
    key = message_key(None, bare.topic, 0, 7, "0" * 64)
    assert key == message_key([], bare.topic, 0, 7, "0" * 64) and uuid.UUID(key)
    assert message_key(None, None, None, None, "0" * 64) is None
    assert ingestor.handle(raw, None).message_uuid is None


def test_ledger_failure_raises_and_the_message_is_finished_on_redelivery(
    ingestor: Ingestor, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = fixture("lvk-S250101ab-preliminary.json")
    hop_id = uuid.uuid4().bytes

    def database_down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("database went away")

    monkeypatch.setattr(ledger.alerts, "record_outcomes", database_down)
    with pytest.raises(ConnectionError):
        ingestor.handle(raw, meta(1, hop_id=hop_id))
    monkeypatch.undo()
    stored = ledger.alerts.find_message(str(uuid.UUID(bytes=hop_id)))
    assert stored is not None and stored.status == "received"  # raw kept, not finished
    again = ingestor.handle(raw, meta(1, hop_id=hop_id))
    assert again.status is IngestStatus.ACCEPTED and again.message_id == stored.id


def test_storing_failure_raises(
    ingestor: Ingestor, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    def database_down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("database went away")

    monkeypatch.setattr(ledger.alerts, "record_messages", database_down)
    with pytest.raises(ConnectionError):
        ingestor.handle(b"anything", meta(1))


def test_area_is_computed_only_when_a_rule_needs_it(ledger: Ledger) -> None:
    calls: list[int] = []

    def area(data: bytes) -> float:
        calls.append(len(data))
        return 250.0

    strict = Ingestor(ledger, TriggerRules(max_area90_deg2=100), area_fn=area)
    refused = strict.handle(fixture("lvk-S250101ab-preliminary.json"), meta(1))
    assert refused.status is IngestStatus.REJECTED and refused.area90_deg2 == 250.0
    assert "90% area 250 deg2 > 100" in refused.reason and len(calls) == 1
    # Refused by a cheap rule first: no area computed; retractions need none.
    strict.handle(fixture("lvk-MS250101cd-update-extcoinc.json"), meta(2))
    strict.handle(fixture("lvk-S250101ab-retraction.json"), meta(3))
    Ingestor(ledger, TriggerRules(), area_fn=area).handle(
        make_lvk_alert("S250103a", skymap=make_multiorder_skymap()), meta(4)
    )
    assert len(calls) == 1


def test_a_failing_area_function_keeps_the_alert_and_fails_the_rule_closed(
    ledger: Ledger,
) -> None:
    def broken(data: bytes) -> float:
        raise ValueError("unreadable map")

    outcome = Ingestor(ledger, TriggerRules(max_area90_deg2=100), area_fn=broken).handle(
        fixture("lvk-S250101ab-preliminary.json"), meta(1)
    )
    # Refused, never passed unchecked; stored with its reason, so a person can start it by hand.
    assert outcome.status is IngestStatus.REJECTED and outcome.alert_id is not None
    assert "cannot be checked" in outcome.reason
    assert "area not computed (ValueError: unreadable map)" in outcome.reason


def test_parser_crash_is_quarantined(
    ingestor: Ingestor, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    import followup.ingest

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("bug in a parser")

    monkeypatch.setattr(followup.ingest, "parse_message", crash)
    outcome = ingestor.handle(fixture("gcn-km3net-alert.json"), meta(1))
    assert outcome.status is IngestStatus.QUARANTINED
    assert outcome.reason.startswith("parser-crash: RuntimeError: bug in a parser")
    assert ledger.alerts.quarantined()[0].reason == "parser-crash"


def test_odd_metadata_never_raises(ingestor: Ingestor) -> None:
    class Odd:
        def __init__(self) -> None:
            self.headers = [("_id", b"not-a-uuid"), ("broken",), (3, b"x"), ("_test", None)]

        topic = 5
        partition = "zero"
        offset = None
        timestamp = True

    outcome = ingestor.handle(fixture("gcn-km3net-alert.json"), Odd())  # type: ignore[arg-type]
    assert outcome.status is IngestStatus.ACCEPTED or outcome.status is IngestStatus.REJECTED
    assert outcome.alert is not None and outcome.alert.is_test  # the _test header counted
    assert ingestor.handle(bytearray(b"{}"), None).status is IngestStatus.QUARANTINED  # type: ignore[arg-type]


STRUCTURED = [
    "lvk-S250101ab-preliminary.json",
    "gcn-icecube-gold-track.json",
    "gcn-swift-guano-update-position.json",
    "voevent-lvk-preliminary.xml",
    "voevent-amon-icecube-gold.xml",
    "circular-41234.json",
]


def _assert_kept(ledger: Ledger, outcome: IngestOutcome, raw: bytes) -> None:
    assert ledger.alerts.get_message(outcome.message_id).raw == raw
    if outcome.status is IngestStatus.QUARANTINED:
        assert outcome.reason and outcome.alert is None


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_truncated_messages_are_quarantined_with_their_bytes(
    sqlite_ledger: Ledger, data: st.DataObject
) -> None:
    ingestor = Ingestor(sqlite_ledger, TriggerRules())
    name = data.draw(st.sampled_from(STRUCTURED))
    raw = fixture(name)
    cut = data.draw(st.integers(min_value=0, max_value=len(raw) - 2))
    truncated = raw[:cut]
    outcome = ingestor.handle(truncated, meta(cut))
    assert outcome.status is IngestStatus.QUARANTINED
    _assert_kept(sqlite_ledger, outcome, truncated)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=2048), text=st.text(max_size=300))
def test_random_bytes_never_crash_and_are_kept(
    sqlite_ledger: Ledger, raw: bytes, text: str
) -> None:
    ingestor = Ingestor(sqlite_ledger, TriggerRules())
    for candidate in (raw, text.encode(), b"{" + text.encode(), b"<VOEvent>" + raw):
        outcome = ingestor.handle(candidate, meta(0))
        assert outcome.status is IngestStatus.QUARANTINED
        _assert_kept(sqlite_ledger, outcome, candidate)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_alerts_never_crash(sqlite_ledger: Ledger, data: st.DataObject) -> None:
    ingestor = Ingestor(sqlite_ledger, TriggerRules(max_far_hz=1e-6, max_area90_deg2=10))
    name = data.draw(st.sampled_from(sorted(p.name for p in DATA.iterdir())))
    raw = bytearray(fixture(name))
    for _ in range(data.draw(st.integers(min_value=1, max_value=8))):
        position = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        raw[position] = data.draw(st.integers(min_value=0, max_value=255))
    outcome = ingestor.handle(bytes(raw), meta(0))
    assert outcome.status in set(IngestStatus)
    _assert_kept(sqlite_ledger, outcome, bytes(raw))


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(document=st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=30,
), key=st.sampled_from(STRUCTURED[:3]))  # fmt: skip
def test_json_alerts_with_random_values_never_crash(
    sqlite_ledger: Ledger, document: Any, key: str
) -> None:
    ingestor = Ingestor(sqlite_ledger, TriggerRules())
    base = json.loads(fixture(key))
    for field in list(base)[:12]:
        mutated = dict(base)
        mutated[field] = document
        raw = json.dumps(mutated).encode()
        outcome = ingestor.handle(raw, meta(0))
        assert outcome.status in set(IngestStatus)
        _assert_kept(sqlite_ledger, outcome, raw)


def test_the_stored_alert_parses_again_exactly_as_received(
    ingestor: Ingestor, ledger: Ledger
) -> None:
    raw = fixture("gcn-icecube-gold-track.json")
    headers = [("_id", uuid.uuid4().bytes), ("_test", b"true")]
    outcome = ingestor.handle(raw, MessageMeta(topic="t", partition=0, offset=1, headers=headers))
    assert outcome.alert is not None and outcome.alert.is_test
    from followup.alerts import parse_message

    stored = ledger.alerts.get_stored(outcome.alert_id)
    again = parse_message(stored.raw, headers=stored.headers, topic=stored.topic)
    assert again.model_dump() == outcome.alert.model_dump()
