"""The listener: Kafka alerts in, ledger records and Prefect events out, follow-up runs started.

For every message, in order: store the raw bytes and metadata, parse, dedupe, judge against the
trigger rules (the Prefect-free :class:`followup.ingest.Ingestor`), start the follow-up run of an
accepted alert at once (or leave it to the deployment trigger), emit ``followup.alert.<status>``,
and only then commit the Kafka offset. A heartbeat event says the listener is alive.

Nothing is lost: an accepted alert whose run was never started (the listener died in between) is
found in the ledger when the message comes again, and at every start. Nothing is done twice: the
ledger keys messages by hop ``_id`` and alerts by event, type and issue time.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from blocks import FollowupSettings, ListenerSettings, StartedBy
from flows.dispatch import Dispatcher
from flows.events import emit_alert_decision, emit_heartbeat
from flows.retract import event_tag
from followup.ingest import Ingestor, IngestOutcome, IngestStatus
from followup.ledger import Ledger
from followup.models import AlertDecision, utcnow
from followup.rules import TriggerRules
from followup.stream import AlertStream, Heartbeat

__all__ = ["FLOWS", "WARMERS", "Listener", "area90", "run_listener"]

logger = logging.getLogger(__name__)

FOLLOWUP = "followup/followup"
RETRACT = "retract/retract"
FLOWS = {FOLLOWUP: "flows.followup:followup", RETRACT: "flows.retract:retract"}
"""The deployments the listener starts, and their flows (warm in the dispatcher's workers)."""
WARMERS = ("followup.visibility:warm_up",)
"""Run once in each worker, so that the first alert does not pay for cold caches (the listener
adds ``flows.runtime:warm_up`` with its settings' name: the block loaded, the ledger opened)."""


def area90(skymap: bytes) -> float:
    """90% credible area of sky-map bytes in deg2 (for the area rule)."""
    from followup.skymap import read_skymap

    return float(read_skymap(skymap).area90)


class Listener:
    """Turns ingest outcomes into follow-up runs and Prefect events.

    Args:
        ledger: The ledger.
        rules: Trigger rules.
        name: Name of this listener (its heartbeat resource is ``followup.listener.<name>``).
        settings: Name of the FollowupSettings document passed to the runs.
        started_by: ``LISTENER`` to start runs with ``dispatcher``; ``TRIGGER`` to leave them to
            the deployments' event triggers.
        dispatcher: Starts deployment runs at once (needed with ``StartedBy.LISTENER``).
        emit: Emits Prefect events (injectable for tests).
    """

    def __init__(
        self,
        ledger: Ledger,
        rules: TriggerRules,
        *,
        name: str = "default",
        settings: str = "default",
        started_by: StartedBy = StartedBy.LISTENER,
        dispatcher: Dispatcher | None = None,
        emit: Callable[..., Any] = emit_alert_decision,
    ) -> None:
        if started_by is StartedBy.LISTENER and dispatcher is None:
            raise ValueError("a listener that starts runs itself needs a dispatcher")
        self.ledger = ledger
        self.ingestor = Ingestor(ledger, rules, area_fn=area90)
        self.name = name
        self.settings = settings
        self.started_by = StartedBy(started_by)
        self.dispatcher = dispatcher
        self.emit = emit
        self.counts: dict[str, int] = {}

    # ------------------------------------------------------------------ per message

    def handle_batch(self, items: Sequence[tuple[bytes, Any]]) -> list[IngestOutcome]:
        """Ingest a batch and act on each outcome; raising keeps the offsets uncommitted."""
        outcomes = self.ingestor.handle_batch(items)
        for outcome in outcomes:
            self.counts[outcome.status.value] = self.counts.get(outcome.status.value, 0) + 1
            self._act(outcome)
        return outcomes

    def _act(self, outcome: IngestOutcome) -> None:
        status = outcome.status
        if status is IngestStatus.ACCEPTED:
            self.start_followup(outcome.alert_id, outcome.event_id, outcome.alert_type)
        elif status is IngestStatus.RETRACTED:
            self._retract(outcome)
        elif status is IngestStatus.DUPLICATE:
            self._recover_duplicate(outcome)
        else:
            self.emit(
                status,
                event_id=outcome.event_id,
                message_id=outcome.message_id,
                alert_id=outcome.alert_id,
                alert_type=outcome.alert_type.value if outcome.alert_type else None,
                source=outcome.alert.source if outcome.alert else None,
                reason=outcome.reason,
            )

    def start_followup(
        self, alert_id: int | None, event_id: str | None, alert_type: Any
    ) -> str | None:
        """Start (or leave to the trigger) the follow-up run of an accepted alert."""
        if alert_id is None or event_id is None:
            return None
        kind = getattr(alert_type, "value", alert_type) or "alert"
        run_id = None
        if self.dispatcher is not None and self.started_by is StartedBy.LISTENER:
            run_id = self.dispatcher.dispatch(
                FOLLOWUP,
                {
                    "alert_id": alert_id,
                    "event_id": event_id,
                    "alert_type": kind.lower(),
                    "settings": self.settings,
                },
                name=f"followup-{event_id}-{kind.lower()}",
                tags=[event_tag(event_id)],
            )
            self.ledger.alerts.set_flow_run(alert_id, run_id)
            logger.info("%s %s: started follow-up run %s", event_id, kind, run_id)
        self.emit(
            IngestStatus.ACCEPTED,
            event_id=event_id,
            message_id=self._message_id(alert_id),
            alert_id=alert_id,
            alert_type=kind,
            reason=None,
            started_by=self.started_by,
        )
        return run_id

    def _retract(self, outcome: IngestOutcome) -> None:
        event_id = outcome.event_id
        if event_id and self.dispatcher is not None and self.started_by is StartedBy.LISTENER:
            run_id = self.dispatcher.dispatch(
                RETRACT,
                {"event_id": event_id, "settings": self.settings},
                name=f"retract-{event_id}",
                tags=[event_tag(event_id)],
            )
            logger.info("%s retracted: started retraction run %s", event_id, run_id)
        self.emit(
            IngestStatus.RETRACTED,
            event_id=event_id,
            message_id=outcome.message_id,
            alert_id=outcome.alert_id,
            alert_type="RETRACTION",
            reason=outcome.reason,
            started_by=self.started_by,
        )

    def _recover_duplicate(self, outcome: IngestOutcome) -> None:
        """A message seen before: start its run if it was accepted but never got one."""
        if outcome.alert_id is None or self.started_by is not StartedBy.LISTENER:
            return
        row, _ = self.ledger.alerts.get(outcome.alert_id)
        if row.decision == AlertDecision.ACCEPTED and row.flow_run_id is None:
            logger.warning("%s was accepted but never started: starting it now", row.event_id)
            self.start_followup(row.id, row.event_id, row.alert_type)

    def _message_id(self, alert_id: int) -> int:
        row, _ = self.ledger.alerts.get(alert_id)
        return row.message_id

    def recover(self, hours: float) -> list[str]:
        """Start the runs of accepted alerts of the last ``hours`` that never got one."""
        if self.started_by is not StartedBy.LISTENER:
            return []
        started = []
        for row in self.ledger.alerts.without_run(since=utcnow() - timedelta(hours=hours)):
            run_id = self.start_followup(row.id, row.event_id, row.alert_type)
            if run_id:
                started.append(run_id)
        return started

    # ------------------------------------------------------------------ the loop

    def on_heartbeat(self, heartbeat: Heartbeat) -> None:
        """Emit the heartbeat event with the stream's offsets, lag and this listener's counts."""
        emit_heartbeat(self.name, {**heartbeat.to_dict(), "counts": dict(self.counts)})

    def run(
        self,
        streams: Sequence[AlertStream],
        *,
        stop: threading.Event,
        heartbeat_interval_s: float = 30.0,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        """Read every stream (one thread each) until ``stop`` is set; ``on_ready`` once started."""
        # Each thread runs in a copy of the caller's context: Prefect's settings (the API URL)
        # and, inside the listen flow, its run context, so heartbeats name the run.
        threads = [
            threading.Thread(
                target=contextvars.copy_context().run,
                args=(stream.run,),
                kwargs={
                    "batch_handler": self.handle_batch,
                    "on_heartbeat": self.on_heartbeat,
                    "heartbeat_interval_s": heartbeat_interval_s,
                    "stop": stop,
                },
                name=f"stream-{i}",
                daemon=True,
            )
            for i, stream in enumerate(streams)
        ]
        for thread in threads:
            thread.start()
        if on_ready is not None:
            on_ready()
        for thread in threads:
            thread.join()


def run_listener(
    listener_settings: str = "default",
    *,
    stop: threading.Event,
    name: str = "default",
    on_ready: Callable[[], None] | None = None,
    runs_grace_s: float | None = None,
) -> Listener:
    """Load the listener's blocks and run it until ``stop`` is set.

    Every stream ends its batch and commits the offsets of what it stored before it returns, so
    a stopped listener leaves no stored message uncommitted.

    Args:
        listener_settings: Name of the :class:`blocks.ListenerSettings` document.
        stop: Set it to stop reading (then running follow-up runs are waited for).
        name: Name of this listener in heartbeat events.
        on_ready: Called once the streams are being read.
        runs_grace_s: Wait at most this long for running follow-up runs once stopped, then stop
            their processes (the runs end Crashed); None waits for them to finish.
    """
    config = ListenerSettings.load(listener_settings)
    ledger = FollowupSettings.load(config.followup_settings).get_ledger()
    dispatcher = None
    if config.started_by is StartedBy.LISTENER:
        warmers = (*WARMERS, ("flows.runtime:warm_up", (config.followup_settings,)))
        dispatcher = Dispatcher(FLOWS, workers=config.workers, warmers=warmers).start()
    listener = Listener(
        ledger,
        config.rules.to_rules(),
        name=name,
        settings=config.followup_settings,
        started_by=config.started_by,
        dispatcher=dispatcher,
    )
    recovered = listener.recover(config.recover_hours)
    if recovered:
        logger.warning("started %d follow-up run(s) that were never started", len(recovered))
    streams = config.get_streams()
    logger.info("listening to %s", ", ".join(repr(s) for s in streams))
    try:
        listener.run(
            streams, stop=stop, heartbeat_interval_s=config.heartbeat_interval_s, on_ready=on_ready
        )
    finally:
        logger.info("streams stopped; their offsets are committed")
        if dispatcher is not None:
            cut = dispatcher.shutdown(wait=True, grace_s=runs_grace_s)
            if cut:
                logger.warning("follow-up runs cut short (they end Crashed): %s", ", ".join(cut))
        ledger.dispose()
    return listener
