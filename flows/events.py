"""Prefect events of followup: names, resources and one function to emit each.

Every event about an astrophysical event uses the resource ``followup.event.<event id>`` so that the
Prefect UI's event feed, automations and deployment triggers can follow one event across alerts,
runs, requests and reports. Labels carry what a trigger template needs (alert id, alert type).

Events:
    followup.alert.accepted / .rejected / .quarantined / .retracted: the listener's decision.
    followup.listener.heartbeat: the listener is alive (automations alarm when it stops).
    followup.request.submitted / .completed / .canceled: LCO request lifecycle.
    followup.approval.waiting: a run paused for a person (automations notify on-call people).
    followup.report.sent: a report left for HERMES, TNS or GCN.
"""

from __future__ import annotations

from typing import Any

from prefect.events import emit_event
from prefect.events.schemas.events import Event

from blocks import StartedBy
from followup.ingest import IngestStatus

__all__ = [
    "ALERT_ACCEPTED",
    "ALERT_QUARANTINED",
    "ALERT_REJECTED",
    "ALERT_RETRACTED",
    "APPROVAL_WAITING",
    "LISTENER_HEARTBEAT",
    "REPORT_SENT",
    "REQUEST_CANCELED",
    "REQUEST_COMPLETED",
    "REQUEST_SUBMITTED",
    "emit_alert_decision",
    "emit_followup_event",
    "emit_heartbeat",
    "event_resource",
]

ALERT_ACCEPTED = "followup.alert.accepted"
ALERT_REJECTED = "followup.alert.rejected"
ALERT_QUARANTINED = "followup.alert.quarantined"
ALERT_RETRACTED = "followup.alert.retracted"
LISTENER_HEARTBEAT = "followup.listener.heartbeat"
REQUEST_SUBMITTED = "followup.request.submitted"
REQUEST_COMPLETED = "followup.request.completed"
REQUEST_CANCELED = "followup.request.canceled"
APPROVAL_WAITING = "followup.approval.waiting"
REPORT_SENT = "followup.report.sent"


def event_resource(event_id: str, **labels: Any) -> dict[str, str]:
    """The resource of an astrophysical event, with extra labels (values become strings)."""
    resource = {
        "prefect.resource.id": f"followup.event.{event_id}",
        "prefect.resource.name": event_id,
    }
    resource.update({f"followup.{k.replace('_', '-')}": str(v) for k, v in labels.items()})
    return resource


def emit_followup_event(
    name: str, event_id: str, *, payload: dict[str, Any] | None = None, **labels: Any
) -> Event | None:
    """Emit ``name`` about an astrophysical event."""
    return emit_event(name, resource=event_resource(event_id, **labels), payload=payload or {})


def emit_alert_decision(
    status: IngestStatus,
    *,
    event_id: str | None,
    message_id: int,
    alert_id: int | None = None,
    alert_type: str | None = None,
    source: str | None = None,
    reason: str | None = None,
    started_by: StartedBy = StartedBy.LISTENER,
) -> Event | None:
    """Emit the listener's decision on one message.

    ``followup.alert.accepted`` and ``followup.alert.retracted`` carry the label
    ``followup.started-by``: ``listener`` when the listener has started the run (follow-up or
    retraction) itself, ``trigger`` when the ``followup`` or ``retract`` deployment's trigger
    should start it (:class:`blocks.StartedBy`). The deployment triggers match only
    ``trigger``, so no alert gets two runs.

    A quarantined message has no event yet; its resource is ``followup.message.<id>``.
    """
    name = {
        IngestStatus.ACCEPTED: ALERT_ACCEPTED,
        IngestStatus.REJECTED: ALERT_REJECTED,
        IngestStatus.QUARANTINED: ALERT_QUARANTINED,
        IngestStatus.RETRACTED: ALERT_RETRACTED,
    }[status]
    payload = {"reason": reason, "message_id": message_id, "alert_id": alert_id}
    if event_id is None:
        resource = {
            "prefect.resource.id": f"followup.message.{message_id}",
            "prefect.resource.name": f"message {message_id}",
        }
        return emit_event(name, resource=resource, payload=payload)
    labels: dict[str, Any] = {"message_id": message_id}
    if alert_id is not None:
        labels["alert_id"] = alert_id
    if alert_type is not None:
        labels["alert_type"] = alert_type.lower()
    if source is not None:
        labels["source"] = source
    if status in (IngestStatus.ACCEPTED, IngestStatus.RETRACTED):
        labels["started_by"] = started_by
    return emit_followup_event(name, event_id, payload=payload, **labels)


def emit_heartbeat(listener: str, payload: dict[str, Any]) -> Event | None:
    """Emit the listener's heartbeat (last offsets, lag, counts)."""
    resource = {
        "prefect.resource.id": f"followup.listener.{listener}",
        "prefect.resource.name": f"listener {listener}",
    }
    return emit_event(LISTENER_HEARTBEAT, resource=resource, payload=payload)
