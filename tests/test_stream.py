"""The hop-client stream against a real Tansu broker: restarts, missing topics, commits, heartbeats.

Tansu keeps messages in memory only, so a restarted broker comes back empty: these tests check
that every message is stored exactly once anyway, that offsets are committed only after the
handler returned, and that a restarted consumer reprocesses nothing already stored.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select

from followup.alerts.mock import make_gcn_notice, make_lvk_alert
from followup.ingest import Ingestor, IngestStatus
from followup.ledger import Ledger, MessageRow
from followup.models import utcnow
from followup.rules import TriggerRules
from followup.stream import AlertStream, Heartbeat, Publisher, StreamStats, publish
from sandbox.broker import BrokerError, TansuBroker
from tests.alert_helpers import DATA, make_multiorder_skymap

pytestmark = pytest.mark.slow


@pytest.fixture
def tansu() -> Iterator[TansuBroker]:
    """A fresh in-memory Tansu broker on a free 127.0.0.1 port, stopped afterwards."""
    with TansuBroker(topics=["alerts"], partitions=2) as broker:
        yield broker


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or predicate}")


class Runner:
    """Runs AlertStream.run in a thread and keeps what it reports."""

    def __init__(self, stream: AlertStream, **kwargs: Any) -> None:
        self.stream = stream
        self.stop = threading.Event()
        self.beats: list[Heartbeat] = []
        self.stats: StreamStats | None = None
        self.error: BaseException | None = None
        kwargs.setdefault("on_heartbeat", self.beats.append)
        kwargs.setdefault("heartbeat_interval_s", 0.2)
        self.thread = threading.Thread(target=self._run, kwargs=kwargs, daemon=True)

    def _run(self, **kwargs: Any) -> None:
        try:
            self.stats = self.stream.run(stop=self.stop, **kwargs)
        except BaseException as exc:
            self.error = exc

    def caught_up_beat(self) -> Heartbeat:
        """The first heartbeat, sent after this call, that reports no lag.

        A heartbeat is sent between batches, so the last one kept may predate the batch that the
        caller just saw handled (and show no lag only because the producer had not sent the rest
        yet): only a heartbeat taken after the call describes what has been handled by then.
        """
        since = utcnow()
        wait_until(
            lambda: any(b.time > since and b.total_lag == 0 for b in self.beats),
            what="a heartbeat with no lag",
        )
        return next(b for b in self.beats if b.time > since and b.total_lag == 0)

    def __enter__(self) -> Runner:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), "the stream did not stop"


def stream_for(broker: TansuBroker, group: str = "test-listener", **kwargs: Any) -> AlertStream:
    kwargs.setdefault("poll_timeout_s", 0.1)
    kwargs.setdefault("backoff_initial_s", 0.2)
    kwargs.setdefault("backoff_max_s", 1.0)
    kwargs.setdefault("topic_recheck_s", 0.5)
    return AlertStream(broker.url(), ["alerts"], group, **kwargs)


def stored_uuids(ledger: Ledger) -> list[str]:
    with ledger.session() as s:
        return [u for u in s.scalars(select(MessageRow.message_uuid)) if u]


def committed_offsets(broker: TansuBroker, group: str, topic: str = "alerts") -> dict[int, int]:
    import confluent_kafka

    consumer = confluent_kafka.Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    try:
        partitions = [confluent_kafka.TopicPartition(topic, p) for p in range(broker.partitions)]
        return {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=10)}
    finally:
        consumer.close()


def assert_committed_to_the_end(committed: dict[int, int], on_broker: list[Any]) -> None:
    """Each partition committed up to its end; one the producer left empty has no commit.

    The producer picks partitions as it likes, so which ones hold messages differs between runs:
    a sum over partitions counts an empty one's "no commit" (-1001) as an offset.
    """
    for partition, offset in committed.items():
        held = sum(m.partition() == partition for m in on_broker)
        assert offset == held if held else offset < 0, (partition, offset, held)


def read_topic(broker: TansuBroker, topic: str = "alerts") -> list[Any]:
    """Every message now on the topic (a throwaway group reading from the beginning)."""
    import confluent_kafka

    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"reader-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer.assign([confluent_kafka.TopicPartition(topic, p, 0) for p in range(broker.partitions)])
    messages, ends = [], 0
    deadline = time.monotonic() + 20
    while ends < broker.partitions and time.monotonic() < deadline:
        for message in consumer.consume(100, 0.5):
            if message.error() is None:
                messages.append(message)
            elif message.error().code() == confluent_kafka.KafkaError._PARTITION_EOF:
                ends += 1
    consumer.close()
    return messages


def notices(count: int, prefix: str) -> list[bytes]:
    return [make_gcn_notice(event_id=f"{prefix}{i}") for i in range(count)]


def test_broker_restart_mid_stream_stores_every_message_once(
    tansu: TansuBroker, sqlite_ledger: Ledger
) -> None:
    ingestor = Ingestor(sqlite_ledger, TriggerRules())
    first, second = notices(40, "a"), notices(30, "b")
    with Publisher(tansu.url()) as publisher:
        first_ids = [publisher.send(raw, topic="alerts") for raw in first]
    outcomes: list[Any] = []
    runner = Runner(
        stream_for(tansu, batch_size=7),
        batch_handler=ingestor.handle_batch,
        after_batch=lambda results, committed: outcomes.extend(results),
    )
    with runner:
        wait_until(lambda: len(outcomes) >= 10, what="the first messages")
        tansu.restart(down_s=1.0)  # mid-stream: the broker comes back empty
        with Publisher(tansu.url()) as publisher:
            second_ids = [publisher.send(raw, topic="alerts") for raw in second]
            # Ten of the first messages again, with their original hop _id.
            for raw, hop_id in list(zip(first, first_ids, strict=True))[:10]:
                publisher.send(raw, topic="alerts", message_id=hop_id)
        wait_until(
            lambda: set(first_ids + second_ids) <= set(stored_uuids(sqlite_ledger)),
            what="every message stored",
        )
        wait_until(lambda: sum(o.status is IngestStatus.DUPLICATE for o in outcomes) >= 10)
        live = runner.caught_up_beat()
    assert runner.error is None and runner.stats is not None
    uuids = stored_uuids(sqlite_ledger)
    assert len(uuids) == len(set(uuids)) == 70  # every message exactly once
    assert sorted(uuids) == sorted(first_ids + second_ids)
    counts = {s: sum(o.status is s for o in outcomes) for s in IngestStatus}
    assert counts[IngestStatus.ACCEPTED] == 70
    assert runner.stats.reconnects >= 1
    assert any(not beat.connected for beat in runner.beats)  # the outage was visible
    assert live.connected and live.messages == len(outcomes)
    assert not runner.beats[-1].connected  # the last heartbeat, at stop

    # Offsets were committed only for stored messages: everything below each committed offset
    # on the (new) broker is in the ledger.
    committed = committed_offsets(tansu, "test-listener")
    on_broker = read_topic(tansu)
    assert len(on_broker) == 40
    assert_committed_to_the_end(committed, on_broker)
    stored = set(uuids)
    for message in on_broker:
        assert message.offset() < committed[message.partition()]
        assert str(uuid.UUID(bytes=dict(message.headers())["_id"])) in stored

    # A restarted consumer of the same group reprocesses nothing.
    handed: list[Any] = []
    with Runner(stream_for(tansu), handler=lambda raw, meta: handed.append(meta)) as again:
        wait_until(lambda: len(again.beats) >= 5, what="a few idle heartbeats")
    assert handed == [] and again.error is None


def test_offsets_are_committed_only_after_the_handler_returns(
    tansu: TansuBroker, sqlite_ledger: Ledger
) -> None:
    ingestor = Ingestor(sqlite_ledger, TriggerRules())
    raws = notices(12, "c")
    with Publisher(tansu.url()) as publisher:
        ids = [publisher.send(raw, topic="alerts") for raw in raws]
    calls: list[str] = []
    failures = {"left": 2}

    def flaky(raw: bytes, meta: Any) -> Any:
        hop_id = str(uuid.UUID(bytes=dict(meta.headers)["_id"]))
        calls.append(hop_id)
        if hop_id == ids[5] and failures["left"] > 0:
            failures["left"] -= 1
            raise ConnectionError("ledger unavailable")
        return ingestor.handle(raw, meta)

    one_partition = TansuBroker(topics=["alerts"], partitions=1)
    with one_partition as broker:
        with Publisher(broker.url()) as publisher:
            for raw, hop_id in zip(raws, ids, strict=True):
                publisher.send(raw, topic="alerts", message_id=hop_id)
        with Runner(stream_for(broker), handler=flaky) as runner:
            wait_until(lambda: failures["left"] == 1, what="the first failure")
            # Nothing after the failed message is committed; the five before it are.
            assert committed_offsets(broker, "test-listener") == {0: 5}
            wait_until(lambda: set(ids) <= set(stored_uuids(sqlite_ledger)), what="all stored")
        assert runner.stats is not None and runner.stats.handler_failures == 2
        assert calls.count(ids[5]) == 3  # failed twice, then handled
        assert all(calls.count(i) == 1 for i in ids[:5])  # committed before: not handed again
        assert committed_offsets(broker, "test-listener") == {0: 12}
        # With a limit, the handler's error surfaces.
        broken = Runner(
            stream_for(broker, group="strict"),
            handler=lambda raw, meta: (_ for _ in ()).throw(RuntimeError("always")),
            max_consecutive_failures=2,
        )
        with broken:
            wait_until(lambda: not broken.thread.is_alive(), what="the stream to give up")
        assert isinstance(broken.error, RuntimeError)


def test_a_committed_offset_into_a_replaced_log_is_detected(
    tansu: TansuBroker, sqlite_ledger: Ledger
) -> None:
    import confluent_kafka

    ingestor = Ingestor(sqlite_ledger, TriggerRules())
    with TansuBroker(topics=["alerts"], partitions=1) as broker:
        with Publisher(broker.url()) as publisher:
            old_ids = [publisher.send(raw, topic="alerts") for raw in notices(20, "d")]
        # A long first back-off keeps the stream away while the new log is prepared.
        stream = stream_for(broker, backoff_initial_s=4.0, backoff_max_s=4.0)
        with Runner(stream, batch_handler=ingestor.handle_batch) as runner:
            wait_until(lambda: set(old_ids) <= set(stored_uuids(sqlite_ledger)))
            wait_until(lambda: committed_offsets(broker, "test-listener") == {0: 20})
            broker.restart(down_s=0.5)
            with Publisher(broker.url()) as publisher:
                new_ids = [publisher.send(raw, topic="alerts") for raw in notices(30, "e")]
            # The old numbering reaches the new broker (the race the check is for).
            committer = confluent_kafka.Consumer(
                {"bootstrap.servers": broker.bootstrap, "group.id": "test-listener"}
            )
            committer.commit(
                offsets=[confluent_kafka.TopicPartition("alerts", 0, 20)], asynchronous=False
            )
            committer.close()
            wait_until(
                lambda: set(new_ids) <= set(stored_uuids(sqlite_ledger)),
                timeout=40,
                what="the messages before the stale offset",
            )
        assert runner.stats is not None and runner.stats.log_resets == 1
    assert len(stored_uuids(sqlite_ledger)) == 50


def test_the_same_alert_published_twice_gives_one_accepted_and_one_duplicate(
    tansu: TansuBroker, sqlite_ledger: Ledger
) -> None:
    ingestor = Ingestor(sqlite_ledger, TriggerRules())
    raw = make_lvk_alert("S250104ab", skymap=make_multiorder_skymap())
    publish(tansu.url("alerts"), None, raw)
    publish(tansu.url("alerts"), None, raw)  # another _id, same content
    outcomes: list[Any] = []
    with Runner(stream_for(tansu), handler=lambda r, m: outcomes.append(ingestor.handle(r, m))):
        wait_until(lambda: len(outcomes) == 2)
    assert sorted(o.status.value for o in outcomes) == ["accepted", "duplicate"]
    follow_ups = [o for o in outcomes if o.accepted]
    assert len(follow_ups) == 1 and follow_ups[0].alert.skymap is not None


def test_a_poison_message_is_quarantined_and_the_stream_moves_on(
    tansu: TansuBroker, sqlite_ledger: Ledger
) -> None:
    import json

    record = json.loads(make_lvk_alert("S250105ab"))
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(500):  # serialising it raised outside the parser: the batch failed forever
        node["x"] = {}
        node = node["x"]
    record["event"]["mchirp_source"] = deep
    for raw in (notices(1, "before")[0], json.dumps(record).encode(), notices(1, "after")[0]):
        publish(tansu.url("alerts"), None, raw)
    ingestor = Ingestor(sqlite_ledger, TriggerRules())
    outcomes: list[Any] = []

    def handle(items: Any) -> Any:
        results = ingestor.handle_batch(items)
        outcomes.extend(results)
        return results

    with Runner(stream_for(tansu), batch_handler=handle) as runner:
        wait_until(lambda: len(outcomes) >= 3, what="three outcomes")
    assert sorted(o.status.value for o in outcomes) == ["accepted", "accepted", "quarantined"]
    assert runner.stats is not None and runner.stats.handler_failures == 0
    on_broker = read_topic(tansu)
    assert len(on_broker) == 3
    assert_committed_to_the_end(committed_offsets(tansu, "test-listener"), on_broker)


def test_missing_topics_are_waited_for(tansu: TansuBroker) -> None:
    got: list[tuple[str, bytes]] = []
    stream = AlertStream(
        tansu.url(),
        ["alerts", "late"],
        "waiter",
        poll_timeout_s=0.1,
        backoff_initial_s=0.2,
        topic_recheck_s=0.3,
    )
    publish(tansu.url(), "alerts", b"first")
    with Runner(stream, handler=lambda raw, meta: got.append((meta.topic, raw))) as runner:
        wait_until(lambda: got == [("alerts", b"first")])
        assert runner.beats[-1].missing_topics == ("late",)
        tansu.create_topic("late", partitions=1)
        publish(tansu.url(), "late", b"second")
        wait_until(lambda: ("late", b"second") in got, what="the new topic's message")
        wait_until(lambda: runner.beats[-1].missing_topics == ())
    # No topic at all yet: the stream waits, reporting why.
    with TansuBroker() as empty:
        lonely = AlertStream(empty.url("nowhere"), group_id="g", backoff_initial_s=0.1,
                             backoff_max_s=0.2, poll_timeout_s=0.1)  # fmt: skip
        seen: list[bytes] = []
        with Runner(lonely, handler=lambda raw, meta: seen.append(raw)) as waiting:
            wait_until(lambda: any(b.last_error for b in waiting.beats))
            assert "exists yet" in (waiting.beats[-1].last_error or "")
            publish(empty.url(), "nowhere", b"hello")  # the producer creates the topic
            wait_until(lambda: seen == [b"hello"])


def test_heartbeat_reports_offsets_lag_and_outages(tansu: TansuBroker) -> None:
    for raw in notices(6, "h"):
        publish(tansu.url("alerts"), None, raw)
    seen: list[tuple[int, int]] = []
    with Runner(
        stream_for(tansu), handler=lambda raw, meta: seen.append((meta.partition, meta.offset))
    ) as runner:
        wait_until(lambda: len(seen) == 6)
        beat = runner.caught_up_beat()
        assert beat.connected and beat.messages == 6 and beat.group_id == "test-listener"
        assert sum(o + 1 for o in beat.last_offsets.values()) == 6
        # The producer picks partitions as it likes (all six on one, now and then): the lag is
        # known, and zero, for each partition read from; one never read from has no position.
        assert beat.lag == {f"alerts/{partition}": 0 for partition, _ in seen}
        tansu.stop()
        wait_until(lambda: not runner.beats[-1].connected, what="a disconnected heartbeat")
        assert runner.beats[-1].last_error
        payload = runner.beats[-1].to_dict()
        assert payload["connected"] is False and isinstance(payload["time"], str)
        tansu.start()
        wait_until(lambda: runner.beats[-1].connected, what="reconnection")


def test_publisher_sends_large_alerts_and_hop_headers(tansu: TansuBroker) -> None:
    skymap = make_multiorder_skymap(order=6)  # ~2 MB map: a real-size alert
    raw = make_lvk_alert("S250105ab", skymap=skymap, external_coinc={"combined_skymap": skymap})
    assert len(raw) > 4_000_000
    fixed = uuid.uuid4()
    with Publisher(tansu.url("alerts")) as publisher:
        sent = publisher.send(raw, test=True, message_id=fixed)
        publisher.send({"hello": "world"}, headers={"x-origin": "test"})
        publisher.send((DATA / "voevent-swift-bat-pos.xml").read_bytes())
        publisher.send(b"TITLE: GCN CIRCULAR")
    assert sent == str(fixed)
    messages = sorted(read_topic(tansu), key=lambda m: dict(m.headers())["_format"])
    by_format = {dict(m.headers())["_format"]: m for m in messages}
    assert set(by_format) == {b"json", b"voevent", b"blob"}
    big = next(m for m in messages if len(m.value()) > 1_000_000)
    headers = dict(big.headers())
    assert big.value() == raw and uuid.UUID(bytes=headers["_id"]) == fixed
    assert headers["_test"] == b"true"
    small = next(m for m in messages if m.value() == b'{"hello": "world"}')
    assert dict(small.headers())["x-origin"] == b"test"
    with pytest.raises(ValueError, match="no topic"):
        Publisher(tansu.url()).send(b"x")


def test_cli_publish(tansu: TansuBroker) -> None:
    from typer.testing import CliRunner

    from followup.cli import app

    fixed = str(uuid.uuid4())
    path = DATA / "gcn-icecube-gold-track.json"
    result = CliRunner().invoke(
        app,
        ["publish", str(path), "--topic", "alerts", "--broker", tansu.url(), "--id", fixed],
    )
    assert result.exit_code == 0, result.output
    assert fixed in result.output and "gcn-json" in result.output
    (message,) = read_topic(tansu)
    assert message.value() == path.read_bytes()
    assert str(uuid.UUID(bytes=dict(message.headers())["_id"])) == fixed
    bad = CliRunner().invoke(app, ["publish", str(path), "--topic", "alerts", "--broker",
                                   "kafka://127.0.0.1:1", "--timeout", "2"])  # fmt: skip
    assert bad.exit_code == 1 and "failed" in bad.output


def test_tansu_broker_restarts_empty_on_the_same_port() -> None:
    broker = TansuBroker(topics=["one"])
    with broker:
        port, pid = broker.port, broker.pid
        assert broker.list_topics() == ["one"]
        publish(broker.url("one"), None, b"x")
        broker.restart(recreate_topics=False)
        assert broker.port == port and broker.pid != pid and broker.restarts == 1
        assert broker.list_topics() == []  # memory storage: everything is gone
        broker.restart()
        assert broker.list_topics() == ["one"]
        assert read_topic(broker, "one") == []
        assert broker.url(["a", "b"]) == f"kafka://127.0.0.1:{port}/a,b"
    assert not broker.is_running
    with pytest.raises(BrokerError):
        TansuBroker(port, binary="/bin/false", startup_timeout_s=2).start()


def test_stream_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="no topic"):
        AlertStream("kafka://127.0.0.1:9092", [], "g")
    with pytest.raises(ValueError, match="group_id"):
        AlertStream("127.0.0.1:9092", ["t"], " ")
    with pytest.raises(ValueError, match="one broker"):
        AlertStream("kafka://a:1,b:2/t", group_id="g")
    with pytest.raises(ValueError, match="start_at"):
        AlertStream("127.0.0.1:9092", ["t"], "g", start_at="middle")
    stream = AlertStream("kafka://127.0.0.1:9092/t1,t2", ["t2", "t3"], "g")
    assert stream.topics == ("t1", "t2", "t3") and "g" in repr(stream)
    with pytest.raises(ValueError, match="exactly one"):
        stream.run()


def test_a_publisher_that_could_not_deliver_lets_go_of_its_producer() -> None:
    """librdkafka stops dialling only once its producer is freed: the error must not hold it."""
    import weakref

    class Unsent:
        def close(self) -> int:
            return 1

    publisher = Publisher("kafka://127.0.0.1:1/alerts")
    producer = Unsent()
    freed = weakref.ref(producer)
    publisher._producer, producer = producer, None
    with pytest.raises(RuntimeError, match="1 messages were not delivered") as caught:
        publisher.close()
    assert caught.value.__traceback__ is not None  # the frames are still alive here
    assert freed() is None


def test_a_publisher_to_an_absent_broker_closes_its_kafka_handle() -> None:
    """hop raises on close when a message timed out; the librdkafka handle is closed anyway."""
    publisher = Publisher("kafka://127.0.0.1:1", produce_timeout_s=1.0)
    publisher.send(b"x", topic="alerts")
    handles = [record.producer._producer for record in publisher._producer.producers.values()]
    assert handles
    with pytest.raises(Exception, match=r"deliver|timed out"):
        publisher.close()
    for handle in handles:
        with pytest.raises(RuntimeError, match="closed"):
            handle.flush(0)
