"""The Kafka side of the listener: a hop-client consumer loop that never loses a message, and a publisher.

:class:`AlertStream` reads topics with a fixed consumer group, hands every message (raw bytes and
hop's ``Metadata``) to a handler, and commits a partition's offset only after the handler has
returned for every message before it. It survives what a long-running listener meets:

* the broker going away: it backs off, reconnects, and resumes from the committed offsets;
* missing topics: it reads the topics that exist and picks the others up when they appear;
* a broker that comes back empty (the local Tansu broker keeps messages in memory only): the
  consumer is rebuilt after every connection loss, so it asks the broker for its committed
  offsets again (none: it starts from the earliest message), offsets out of range are reset to
  the earliest, and a committed offset that points into a different log is detected by checking
  the message just before it against the one this process handled there;
* a failing handler (the ledger is down): the offset is not committed, the consumer is rebuilt
  after a growing pause and the message is handed over again.

Messages handed over twice (after any of the above) are the handler's to recognise; the
:class:`followup.ingest.Ingestor` does so by hop ``_id``. The loop calls ``on_heartbeat`` every
``heartbeat_interval_s`` with the last offset and lag of each partition, also while disconnected,
so a silent listener can be told from a quiet sky.

Everything here is plain hop-client/confluent-kafka (no Prefect).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from followup.models import utcnow

if TYPE_CHECKING:
    from hop.auth import Auth

__all__ = [
    "AlertStream",
    "Heartbeat",
    "Publisher",
    "StreamStats",
    "broker_address",
    "publish",
    "sniff_hop_format",
]

logger = logging.getLogger(__name__)

Handler = Callable[[bytes, Any], Any]
BatchHandler = Callable[[Sequence[tuple[bytes, Any]]], Sequence[Any]]

_RECENT_PER_PARTITION = 256  # commit points remembered per partition
_CONNECTION_ERRORS = {"_TRANSPORT", "_ALL_BROKERS_DOWN", "_RESOLVE", "_AUTHENTICATION"}


def broker_address(url_or_broker: str) -> tuple[str, list[str]]:
    """Split ``kafka://host:port/t1,t2`` (or ``host:port``) into the broker and the topics.

    Raises:
        ValueError: No broker in the URL, or more than one (hop reads from one).
    """
    text = url_or_broker.strip()
    if not text.startswith("kafka://"):
        text = "kafka://" + text
    parsed = urlparse(text)
    netloc = parsed.netloc.rsplit("@", 1)[-1]
    if not netloc:
        raise ValueError(f"no broker in {url_or_broker!r}; expected kafka://host:port")
    if "," in netloc:
        raise ValueError("one broker address only (hop-client reads from a single bootstrap)")
    topics = [t for t in parsed.path.lstrip("/").split(",") if t]
    return netloc, topics


def _hop_auth(auth: Auth | None) -> Auth | Literal[False]:
    """Return the ``auth`` argument for hop: the ``Auth``, or False (never the user's auth.toml).

    Raises:
        TypeError: ``auth`` is neither None nor a ``hop.auth.Auth`` (a credentials Block builds
            one with ``get_auth()``).
    """
    if auth is None or auth is False:
        return False
    from hop.auth import Auth

    if not isinstance(auth, Auth):
        raise TypeError(f"auth must be a hop.auth.Auth or None, not {type(auth).__name__}")
    return auth


def _url_username(auth: Any) -> str:
    username = getattr(auth, "username", None)
    return f"{username}@" if isinstance(username, str) and username else ""


@dataclass(frozen=True)
class Heartbeat:
    """The listener's liveness report.

    Attributes:
        time: When it was made (UTC).
        group_id: Consumer group.
        topics: Topics asked for.
        missing_topics: Topics that do not exist on the broker (yet).
        connected: True while a consumer is open and working.
        messages: Messages handled since the stream started.
        messages_since_last: Messages handled since the previous heartbeat.
        last_offsets: Last handled offset by ``topic/partition``.
        lag: Messages waiting by ``topic/partition`` (high watermark minus position), when known.
        total_lag: Sum of the known lags, or None when none is known.
        reconnects: Consumers rebuilt after a failure.
        handler_failures: Handler calls that raised.
        last_error: The most recent problem, or None.
        last_message_at: When the last message was handled.
    """

    time: datetime
    group_id: str
    topics: tuple[str, ...]
    missing_topics: tuple[str, ...]
    connected: bool
    messages: int
    messages_since_last: int
    last_offsets: dict[str, int]
    lag: dict[str, int]
    total_lag: int | None
    reconnects: int
    handler_failures: int
    last_error: str | None
    last_message_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (for a Prefect event payload)."""
        return {
            "time": self.time.isoformat(),
            "group_id": self.group_id,
            "topics": list(self.topics),
            "missing_topics": list(self.missing_topics),
            "connected": self.connected,
            "messages": self.messages,
            "messages_since_last": self.messages_since_last,
            "last_offsets": dict(self.last_offsets),
            "lag": dict(self.lag),
            "total_lag": self.total_lag,
            "reconnects": self.reconnects,
            "handler_failures": self.handler_failures,
            "last_error": self.last_error,
            "last_message_at": self.last_message_at.isoformat() if self.last_message_at else None,
        }


@dataclass
class StreamStats:
    """Counters of one :meth:`AlertStream.run`.

    Attributes:
        messages: Messages handed to the handler and returned from.
        batches: Batches handled.
        commits: Successful offset commits (one per partition per batch).
        reconnects: Consumers rebuilt after a failure.
        handler_failures: Handler calls that raised.
        skipped_verified: Messages not handed over again because the position check showed they
            were the last ones handled before a reconnect.
        log_resets: Partitions rewound to the beginning because their log changed under a
            committed offset.
    """

    messages: int = 0
    batches: int = 0
    commits: int = 0
    reconnects: int = 0
    handler_failures: int = 0
    skipped_verified: int = 0
    log_resets: int = 0


@dataclass
class _State:
    stats: StreamStats = field(default_factory=StreamStats)
    connected: bool = False
    last_error: str | None = None
    last_message_at: datetime | None = None
    last_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    since_last: int = 0
    last_beat: float = 0.0
    progressed: bool = False


class _Disconnected(Exception):
    """The consumer lost its broker, or its topics vanished: rebuild it."""


class AlertStream:
    """Read alert topics with hop-client, at least once, with offsets committed after handling.

    Args:
        url_or_broker: ``kafka://host:port`` (optionally with ``/topic1,topic2``) or
            ``host:port``.
        topics: Topics to read (added to those in the URL).
        group_id: Fixed consumer group id: a restarted listener resumes where this one stopped
            (Hopskotch requires it to start with the credential's username).
        auth: None for a broker without authentication, else a ``hop.auth.Auth`` (the
            credentials Blocks build their streams with theirs). The user's ``auth.toml`` is
            never read.
        start_at: Where a group without committed offsets starts: ``"earliest"`` (default: read
            what the broker still holds; the ledger drops what it has seen) or ``"latest"``.
        batch_size: Most messages fetched and handled per batch.
        poll_timeout_s: Longest wait for messages before the loop checks ``stop`` and the
            heartbeat.
        backoff_initial_s: First pause after a failure; doubled after each further failure.
        backoff_max_s: Longest pause.
        topic_recheck_s: How often missing topics are looked for.

    Example:
        >>> stream = AlertStream("kafka://127.0.0.1:9092", ["igwn.gwalert"], "followup-listener")
        >>> stream.run(ingestor.handle, stop=stop_event)  # doctest: +SKIP
    """

    def __init__(
        self,
        url_or_broker: str,
        topics: Sequence[str] = (),
        group_id: str = "followup-listener",
        *,
        auth: Auth | None = None,
        start_at: Any = "earliest",
        batch_size: int = 500,
        poll_timeout_s: float = 0.25,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        topic_recheck_s: float = 5.0,
    ) -> None:
        broker, url_topics = broker_address(url_or_broker)
        wanted = list(dict.fromkeys([*url_topics, *topics]))
        if not wanted:
            raise ValueError("no topic to read: give topics or put them in the URL")
        if not group_id or not group_id.strip():
            raise ValueError("a fixed, non-empty group_id is required to resume after a restart")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.broker = broker
        self.topics = tuple(wanted)
        self.group_id = group_id
        self.auth = _hop_auth(auth)
        self.start_at = _start_position(start_at)
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.topic_recheck_s = topic_recheck_s
        self._lost = threading.Event()
        self._recent: dict[tuple[str, int], OrderedDict[int, bytes]] = {}

    def __repr__(self) -> str:
        return (
            f"AlertStream(broker={self.broker!r}, topics={list(self.topics)!r}, "
            f"group_id={self.group_id!r})"
        )

    # ------------------------------------------------------------------ run loop

    def run(
        self,
        handler: Handler | None = None,
        *,
        batch_handler: BatchHandler | None = None,
        on_heartbeat: Callable[[Heartbeat], None] | None = None,
        heartbeat_interval_s: float = 30.0,
        stop: threading.Event | None = None,
        after_batch: Callable[[Sequence[Any], bool], None] | None = None,
        max_consecutive_failures: int | None = None,
    ) -> StreamStats:
        """Consume until ``stop`` is set.

        Args:
            handler: Called as ``handler(raw, metadata)`` for each message, in order; its return
                value is collected for ``after_batch``.
            batch_handler: Instead of ``handler``: called with the list of ``(raw, metadata)`` of
                each fetched batch (faster: one ledger transaction per batch); returns one result
                per message.
            on_heartbeat: Called with a :class:`Heartbeat` every ``heartbeat_interval_s`` seconds,
                connected or not. Its exceptions are logged, never raised.
            heartbeat_interval_s: Seconds between heartbeats.
            stop: Set it (from any thread) to end the loop within ``poll_timeout_s``.
            after_batch: Called after each handled batch with the handler results and whether
                the offsets were committed (False when the connection was lost meanwhile: the
                broker will hand the messages over again).
            max_consecutive_failures: Re-raise the handler's exception after this many failures
                in a row; None retries forever (with growing pauses), reporting the error in the
                heartbeat.

        Returns:
            Counters of this run.

        Raises:
            ValueError: Neither or both of ``handler`` and ``batch_handler`` given.
            Exception: The handler's exception, after ``max_consecutive_failures`` failures.
        """
        if (handler is None) == (batch_handler is None):
            raise ValueError("give exactly one of handler and batch_handler")
        stop = stop or threading.Event()
        state = _State()
        delay = self.backoff_initial_s
        failures = 0
        first = True
        while not stop.is_set():
            consumer = None
            state.progressed = False
            try:
                present = self._present_topics(state)
                if not present:
                    raise _Disconnected(f"none of the topics {list(self.topics)} exists yet")
                consumer = self._open(present)
                if not first:
                    state.stats.reconnects += 1
                first = False
                state.connected = True
                self._consume(
                    consumer,
                    present,
                    state,
                    stop,
                    handler,
                    batch_handler,
                    on_heartbeat,
                    heartbeat_interval_s,
                    after_batch,
                )
                delay = self.backoff_initial_s
                failures = 0
                continue  # stopped, or topics appeared: reopen (or leave) at once
            except _HandlerFailed as exc:
                if state.progressed:  # messages were handled since the last failure
                    failures, delay = 0, self.backoff_initial_s
                failures += 1
                state.stats.handler_failures += 1
                state.last_error = f"handler failed: {type(exc.cause).__name__}: {exc.cause}"
                logger.error("handler failed (%d in a row): %s", failures, exc.cause)
                if max_consecutive_failures is not None and failures >= max_consecutive_failures:
                    raise exc.cause from None
            except _Disconnected as exc:
                if state.progressed:
                    failures, delay = 0, self.backoff_initial_s
                state.last_error = str(exc)
                logger.warning("stream interrupted: %s", exc)
            except Exception as exc:  # the broker, librdkafka or hop failed: back off and retry
                if state.progressed:
                    failures, delay = 0, self.backoff_initial_s
                state.last_error = f"{type(exc).__name__}: {exc}"
                logger.warning("stream failure: %s", state.last_error)
            finally:
                state.connected = False
                if consumer is not None:
                    self._close(consumer)
            self._pause(delay, stop, state, on_heartbeat, heartbeat_interval_s)
            delay = min(delay * 2, self.backoff_max_s)
        self._beat(state, on_heartbeat, force=True)
        return state.stats

    def _pause(
        self,
        delay: float,
        stop: threading.Event,
        state: _State,
        on_heartbeat: Callable[[Heartbeat], None] | None,
        interval: float,
    ) -> None:
        deadline = time.monotonic() + delay
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if on_heartbeat is not None and time.monotonic() - state.last_beat >= interval:
                self._beat(state, on_heartbeat, force=True)
            stop.wait(min(remaining, interval, 1.0))

    # ------------------------------------------------------------------ connection

    def _url(self, topics: Sequence[str] = ()) -> str:
        return f"kafka://{_url_username(self.auth)}{self.broker}/{','.join(topics)}"

    def _present_topics(self, state: _State) -> list[str]:
        from hop.io import list_topics

        available = list_topics(self._url(), auth=self.auth, timeout=5.0)
        present = [t for t in self.topics if t in available]
        state.missing = tuple(t for t in self.topics if t not in available)
        if state.missing:
            logger.info("topics not on the broker yet: %s", ", ".join(state.missing))
        return present

    def _open(self, topics: Sequence[str]) -> Any:
        from hop import Stream

        self._lost.clear()
        stream = Stream(auth=self.auth, start_at=self.start_at)
        config = {
            "error_callback": self._on_kafka_error,
            "reconnect_max_time": _seconds(2.0),
        }
        return stream.open(
            self._url(topics), "r", group_id=self.group_id, ignoretest=False, **config
        )

    def _on_kafka_error(self, error: Any) -> None:
        # Called by librdkafka from inside consume(): a lost connection means the broker may come
        # back as a different (empty) log, so the consumer is rebuilt rather than trusted.
        name = error.name() if hasattr(error, "name") else str(error)
        if name in _CONNECTION_ERRORS or getattr(error, "fatal", lambda: False)():
            if not self._lost.is_set():
                logger.warning("kafka connection problem: %s", error)
            self._lost.set()
        else:
            logger.warning("kafka error: %s", error)

    @staticmethod
    def _close(consumer: Any) -> None:
        try:
            consumer.close()
        except Exception as exc:  # closing a consumer of a dead broker may fail; nothing to save
            logger.debug("closing the consumer failed: %s", exc)

    # ------------------------------------------------------------------ consuming

    def _consume(
        self,
        consumer: Any,
        present: Sequence[str],
        state: _State,
        stop: threading.Event,
        handler: Handler | None,
        batch_handler: BatchHandler | None,
        on_heartbeat: Callable[[Heartbeat], None] | None,
        interval: float,
        after_batch: Callable[[Sequence[Any], bool], None] | None,
    ) -> None:
        import confluent_kafka
        from hop.io import Metadata

        kafka = _kafka_consumer(consumer)
        checks = self._position_checks(kafka)
        recheck_at = time.monotonic() + self.topic_recheck_s
        while not stop.is_set():
            if self._lost.is_set():
                raise _Disconnected("lost the connection to the broker")
            # consume(n, timeout) waits for n messages or the whole timeout: ask for the first
            # one, then take what has already arrived, so a lone alert is not held back.
            messages = kafka.consume(1, self.poll_timeout_s)
            if messages and self.batch_size > 1:
                messages += kafka.consume(self.batch_size - 1, 0)
            batch: list[tuple[bytes, Any]] = []
            raw_messages = []
            rewound: set[tuple[str, int]] = set()
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() == confluent_kafka.KafkaError._PARTITION_EOF:
                        continue
                    raise _Disconnected(f"kafka error on {message.topic()}: {error}")
                key = (message.topic(), message.partition())
                if key in rewound:
                    continue  # fetched from the replaced log's stale position
                if key in checks:
                    verdict = self._check_position(kafka, message, checks, state)
                    if verdict == "handled":
                        continue
                    if verdict == "rewound":
                        rewound.add(key)
                        continue
                value = message.value() or b""
                batch.append((value, Metadata.from_message(message)))
                raw_messages.append(message)
            if batch:
                results = self._handle(batch, handler, batch_handler, consumer, state)
                committed = self._commit(consumer, raw_messages, state)
                if committed:
                    state.last_error = None
                if after_batch is not None:
                    try:
                        after_batch(results, committed)
                    except Exception:
                        logger.exception("after_batch callback failed")
            self._beat(state, on_heartbeat, interval=interval, kafka=kafka)
            if state.missing and time.monotonic() >= recheck_at:
                recheck_at = time.monotonic() + self.topic_recheck_s
                if set(self._present_topics(state)) != set(present):
                    logger.info("new topics appeared; reopening the consumer")
                    return

    def _handle(
        self,
        batch: list[tuple[bytes, Any]],
        handler: Handler | None,
        batch_handler: BatchHandler | None,
        consumer: Any,
        state: _State,
    ) -> list[Any]:
        results: list[Any] = []
        if batch_handler is not None:
            try:
                results = list(batch_handler(batch))
            except Exception as exc:
                raise _HandlerFailed(exc) from exc
            if len(results) != len(batch):
                raise _HandlerFailed(
                    ValueError(f"batch_handler returned {len(results)} results for {len(batch)}")
                )
            done = len(batch)
        else:
            assert handler is not None
            done = 0
            try:
                for raw, meta in batch:
                    results.append(handler(raw, meta))
                    done += 1
            except Exception as exc:
                # Commit what was handled before the failure, then let run() back off.
                self._commit(consumer, [m._raw for _, m in batch[:done]], state)
                self._account(batch[:done], state)
                raise _HandlerFailed(exc) from exc
        self._account(batch[:done], state)
        return results

    @staticmethod
    def _account(done: Sequence[tuple[bytes, Any]], state: _State) -> None:
        if not done:
            return
        state.progressed = True
        state.stats.messages += len(done)
        state.stats.batches += 1
        state.since_last += len(done)
        state.last_message_at = utcnow()
        for _, meta in done:
            state.last_offsets[(meta.topic, meta.partition)] = meta.offset

    def _commit(self, consumer: Any, messages: Sequence[Any], state: _State) -> bool:
        """Commit, synchronously, the offset after the last handled message of each partition."""
        if not messages:
            return True
        if self._lost.is_set():
            # The broker may already be a new, empty one: an offset from the old log must not
            # reach it. The messages will be read again and recognised by the handler.
            return False
        last: dict[tuple[str, int], Any] = {}
        for message in messages:
            last[(message.topic(), message.partition())] = message
        from hop.io import Metadata

        try:
            for message in last.values():
                consumer.mark_done(Metadata.from_message(message), asynchronous=False)
                state.stats.commits += 1
                # A committed offset C is checked after a reconnect against the message at C - 1.
                self._remember(message)
        except Exception as exc:
            self._lost.set()
            state.last_error = f"commit failed: {exc}"
            logger.warning("offset commit failed: %s", exc)
            return False
        return True

    # ------------------------------------------------------------------ position checks

    @staticmethod
    def _identity(message: Any) -> bytes:
        for name, value in message.headers() or ():
            if name == "_id" and value:
                return bytes(value)
        value = message.value() or b""
        return hashlib.blake2b(
            value[:4096] + value[-4096:] + len(value).to_bytes(8, "big"), digest_size=16
        ).digest()

    def _remember(self, message: Any) -> None:
        key = (message.topic(), message.partition())
        recent = self._recent.setdefault(key, OrderedDict())
        recent[message.offset()] = self._identity(message)
        while len(recent) > _RECENT_PER_PARTITION:
            recent.popitem(last=False)

    def _position_checks(self, kafka: Any) -> dict[tuple[str, int], tuple[int, bytes]]:
        """After a reconnect, re-read the message before each committed offset to check the log.

        A committed offset is only meaningful in the log it was committed in. For each partition
        whose committed offset ``C`` follows a message this process committed (at ``C - 1``), the
        consumer starts at ``C - 1``; the first message it gets there is compared with the one
        remembered. Same message: skipped, and reading goes on from ``C``. Another message: the
        log was replaced (a broker that restarted empty and got new messages), and the partition
        is rewound to its beginning.
        """
        if not self._recent:
            return {}
        import confluent_kafka

        try:
            assignment = kafka.assignment()
            committed = kafka.committed(assignment, timeout=5.0)
        except Exception as exc:
            logger.warning("could not read committed offsets to check them: %s", exc)
            return {}
        checks: dict[tuple[str, int], tuple[int, bytes]] = {}
        positions = []
        for tp in committed:
            key = (tp.topic, tp.partition)
            recent = self._recent.get(key, {})
            before = tp.offset - 1
            if tp.offset > 0 and before in recent:
                checks[key] = (before, recent[before])
                positions.append(confluent_kafka.TopicPartition(tp.topic, tp.partition, before))
            else:
                positions.append(
                    confluent_kafka.TopicPartition(
                        tp.topic,
                        tp.partition,
                        tp.offset if tp.offset >= 0 else confluent_kafka.OFFSET_STORED,
                    )
                )
        if checks:
            kafka.assign(positions)
        return checks

    def _check_position(
        self,
        kafka: Any,
        message: Any,
        checks: dict[tuple[str, int], tuple[int, bytes]],
        state: _State,
    ) -> str:
        """Compare the first message of a checked partition with the one remembered.

        Returns:
            ``handled`` (the same message: skip it), ``rewound`` (another message: the partition
            now reads from its beginning) or ``moved`` (the broker put us elsewhere, e.g. after
            an out-of-range reset: read on).
        """
        import confluent_kafka

        key = (message.topic(), message.partition())
        offset, identity = checks.pop(key)
        if message.offset() != offset:
            return "moved"
        if self._identity(message) == identity:
            state.stats.skipped_verified += 1
            return "handled"
        logger.warning(
            "%s/%d: the message at offset %d is not the one handled there before; the log was "
            "replaced, re-reading the partition from its beginning",
            key[0],
            key[1],
            offset,
        )
        state.stats.log_resets += 1
        self._recent.pop(key, None)
        beginning = confluent_kafka.TopicPartition(key[0], key[1], confluent_kafka.OFFSET_BEGINNING)
        try:
            kafka.seek(beginning)
        except Exception:
            kafka.assign(
                [
                    beginning
                    if (tp.topic, tp.partition) == key
                    else confluent_kafka.TopicPartition(
                        tp.topic, tp.partition, confluent_kafka.OFFSET_STORED
                    )
                    for tp in kafka.assignment()
                ]
            )
        return "rewound"

    # ------------------------------------------------------------------ heartbeat

    def _beat(
        self,
        state: _State,
        on_heartbeat: Callable[[Heartbeat], None] | None,
        *,
        interval: float = 0.0,
        force: bool = False,
        kafka: Any = None,
    ) -> None:
        if on_heartbeat is None:
            return
        now = time.monotonic()
        if not force and now - state.last_beat < interval:
            return
        state.last_beat = now
        lag = self._lag(kafka) if kafka is not None else {}
        beat = Heartbeat(
            time=utcnow(),
            group_id=self.group_id,
            topics=self.topics,
            missing_topics=state.missing,
            connected=state.connected,
            messages=state.stats.messages,
            messages_since_last=state.since_last,
            last_offsets={f"{t}/{p}": o for (t, p), o in sorted(state.last_offsets.items())},
            lag=lag,
            total_lag=sum(lag.values()) if lag else None,
            reconnects=state.stats.reconnects,
            handler_failures=state.stats.handler_failures,
            last_error=state.last_error,
            last_message_at=state.last_message_at,
        )
        state.since_last = 0
        try:
            on_heartbeat(beat)
        except Exception:
            logger.exception("heartbeat callback failed")

    @staticmethod
    def _lag(kafka: Any) -> dict[str, int]:
        lag: dict[str, int] = {}
        try:
            assignment = kafka.assignment()
            positions = kafka.position(assignment)
        except Exception:
            return lag
        for tp in positions:
            try:
                # Cached watermarks come with every fetch response; no broker round trip.
                _low, high = kafka.get_watermark_offsets(tp, cached=True)
            except Exception:
                continue
            if high is not None and high >= 0 and tp.offset >= 0:
                lag[f"{tp.topic}/{tp.partition}"] = max(0, high - tp.offset)
        return lag


class _HandlerFailed(Exception):
    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _kafka_consumer(consumer: Any) -> Any:
    """The confluent-kafka consumer inside hop's Consumer (hop 0.13 / adc-streaming 2.x).

    The loop polls, commits and reads watermarks itself (hop's generator gives no control back
    while a topic is quiet, so no heartbeat, stop check or batch boundary); hop still builds the
    consumer (URL, credentials, group, assignment) and hands over ``Metadata``.

    Raises:
        RuntimeError: hop-client's internals changed.
    """
    try:
        kafka = consumer._consumer._consumer
    except AttributeError as exc:
        raise RuntimeError(
            "this hop-client version hides its Kafka consumer differently; followup.stream "
            "supports hop-client 0.13 with adc-streaming 2.x"
        ) from exc
    if not hasattr(kafka, "consume"):
        raise RuntimeError("unexpected hop-client internals: no confluent-kafka consumer")
    return kafka


def _start_position(value: Any) -> Any:
    from hop.io import StartPosition

    if isinstance(value, StartPosition):
        return value
    text = str(value).strip().upper()
    if text not in {"EARLIEST", "LATEST"}:
        raise ValueError(f"start_at must be 'earliest' or 'latest', not {value!r}")
    return StartPosition[text]


def _seconds(value: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=value)


# ---------------------------------------------------------------------- publishing


def sniff_hop_format(data: bytes) -> str:
    """Return hop's ``_format`` for raw bytes: ``avro``, ``json``, ``voevent`` or ``blob``.

    An Avro container is ``avro``; a circular in text form travels as a ``blob``.
    """
    if data.startswith(b"Obj\x01"):
        return "avro"
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head[:1] == b"{":
        return "json"
    if head[:1] == b"<" and b"VOEvent" in data[:4096]:
        return "voevent"
    return "blob"


class Publisher:
    """Publish alerts to Kafka with hop-client, as their issuers do (for drills and tests).

    Each message gets hop's standard headers: ``_id`` (a new UUID unless the caller gives one,
    e.g. to re-publish the same message), ``_format`` (from the content), ``_sender`` (with
    credentials) and ``_test`` when asked. Topics are written without hop's large-message offload
    (``automatic_offload=False``), so no topic needs a ``max.message.bytes`` setting.

    Args:
        url_or_broker: ``kafka://host:port`` or ``host:port``.
        auth: None, or a ``hop.auth.Auth``.
        produce_timeout_s: Longest wait for the broker to take each message.
    """

    def __init__(
        self, url_or_broker: str, *, auth: Auth | None = None, produce_timeout_s: float = 30.0
    ):
        self.broker, topics = broker_address(url_or_broker)
        self.default_topic = topics[0] if len(topics) == 1 else None
        self.auth = _hop_auth(auth)
        self.produce_timeout_s = produce_timeout_s
        self._producer: Any = None
        self.sent = 0

    def __repr__(self) -> str:
        return f"Publisher(broker={self.broker!r})"

    def _open(self) -> Any:
        if self._producer is None:
            from hop import Stream

            url = f"kafka://{_url_username(self.auth)}{self.broker}"
            self._producer = Stream(auth=self.auth).open(
                url, "w", automatic_offload=False, produce_timeout=_seconds(self.produce_timeout_s)
            )
        return self._producer

    def send(
        self,
        data: bytes | Mapping[str, Any],
        *,
        topic: str | None = None,
        headers: Sequence[tuple[str, bytes | str]] | Mapping[str, bytes | str] | None = None,
        test: bool = False,
        message_id: str | uuid.UUID | None = None,
    ) -> str:
        """Queue one message.

        Args:
            data: Raw bytes (sent unchanged) or a mapping (sent as UTF-8 JSON).
            topic: Topic (default: the one in the URL).
            headers: Extra headers; an ``_id`` here is kept (re-publishing the same message).
            test: Add hop's ``_test`` header.
            message_id: The hop ``_id`` to use (a UUID); a new one when None.

        Returns:
            The message's ``_id`` as a UUID string.

        Raises:
            ValueError: No topic, or a malformed ``_id``.
        """
        topic = topic or self.default_topic
        if not topic:
            raise ValueError("no topic: give topic= or put one topic in the URL")
        if isinstance(data, Mapping):
            payload = json.dumps(dict(data)).encode("utf-8")
        elif isinstance(data, bytes | bytearray | memoryview):
            payload = bytes(data)
        else:
            raise TypeError(f"data must be bytes or a mapping, not {type(data).__name__}")
        items = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
        out: list[tuple[str, bytes]] = []
        given_id: bytes | None = None
        for name, value in items:
            value_bytes = value.encode("utf-8") if isinstance(value, str) else bytes(value)
            if name == "_id":
                given_id = value_bytes
                continue
            out.append((name, value_bytes))
        if message_id is not None:
            hop_id = uuid.UUID(str(message_id))
        elif given_id is not None:
            hop_id = (
                uuid.UUID(bytes=given_id) if len(given_id) == 16 else uuid.UUID(given_id.decode())
            )
        else:
            hop_id = uuid.uuid4()
        out.insert(0, ("_id", hop_id.bytes))
        names = {name for name, _ in out}
        if "_format" not in names:
            out.append(("_format", sniff_hop_format(payload).encode()))
        username = getattr(self.auth, "username", None)
        if username and "_sender" not in names:
            out.append(("_sender", username.encode("utf-8")))
        if test and "_test" not in names:
            out.append(("_test", b"true"))
        self._open().write_raw(payload, out, topic=topic)
        self.sent += 1
        return str(hop_id)

    def flush(self, timeout_s: float | None = None) -> int:
        """Wait for queued messages; returns how many are still queued."""
        if self._producer is None:
            return 0
        return int(self._producer.flush(_seconds(timeout_s or self.produce_timeout_s)))

    def close(self) -> None:
        """Send what is queued and close.

        Raises:
            RuntimeError: Messages could not be delivered before the produce timeout.
        """
        if self._producer is None:
            return
        producer, self._producer = self._producer, None
        # hop's producer keeps one adc producer per topic, each around a librdkafka handle whose
        # callbacks point back at it: a cycle the garbage collector cannot see through, so the
        # handle lives (and dials a broker that was not there, writing so to stderr) until it is
        # closed. hop's close raises when a message timed out and then closes nothing.
        clients = [record.producer for record in getattr(producer, "producers", {}).values()]
        try:
            unsent = producer.close()
        finally:
            del producer
            for client in clients:
                _close_kafka_handle(client)
        if unsent:
            raise RuntimeError(f"{unsent} messages were not delivered to {self.broker}")

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close_kafka_handle(client: Any) -> None:
    """Drop what an adc producer still queues and close its librdkafka handle (at once)."""
    handle = getattr(client, "_producer", None)
    if handle is None or not hasattr(handle, "close"):
        return
    with contextlib.suppress(Exception):
        handle.purge()
        handle.close()


def publish(
    url: str,
    topic: str | None,
    data: bytes | Mapping[str, Any],
    *,
    headers: Sequence[tuple[str, bytes | str]] | Mapping[str, bytes | str] | None = None,
    test: bool = False,
    auth: Auth | None = None,
) -> str:
    """Publish one message and wait until the broker has it.

    Args:
        url: ``kafka://host:port`` (or with ``/topic``) or ``host:port``.
        topic: Topic (None: the one in the URL).
        data: Raw bytes, or a mapping sent as JSON.
        headers: Extra headers (an ``_id`` among them is kept).
        test: Mark it as a test message (hop ``_test`` header).
        auth: None, or a ``hop.auth.Auth``.

    Returns:
        The message's hop ``_id``.

    Raises:
        RuntimeError: The broker did not take it before the timeout.
    """
    with Publisher(url, auth=auth) as publisher:
        return publisher.send(data, topic=topic, headers=headers, test=test)
