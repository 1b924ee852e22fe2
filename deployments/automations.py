"""Automations that alarm the people on call: listener silent, follow-up failed, approval waiting.

Each automation calls one webhook, a Prefect :class:`prefect.blocks.webhook.Webhook` block whose
URL is a secret (a Slack incoming webhook, a paging service, a chat bridge, or the sandbox's
receiver). The JSON it posts has a ``text`` line for people (Slack shows it as the message) and the
fields a program needs (``alarm``, ``event_id``, ``flow_run_url``...).

``followup automations --webhook-url URL`` (or :func:`apply_automations`) saves the block and
creates or replaces the automations; they show under Automations in the UI, where they can be
switched off or edited.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from flows.events import APPROVAL_WAITING, LISTENER_HEARTBEAT
from followup.http import client_settings

__all__ = [
    "ALARMS",
    "ALARM_WEBHOOK",
    "AlarmOptions",
    "apply_automations",
    "build_automations",
    "remove_automations",
    "save_alarm_webhook",
]

ALARM_WEBHOOK = "followup-alarms"
"""Default name of the Webhook block the alarms call."""

ALARMS = ("listener-silent", "run-failed", "approval-waiting")
"""The alarms, in the order :func:`build_automations` returns them."""

# Jinja templates of the JSON bodies. Values are passed through ``tojson`` so that quotes and
# newlines in names or messages cannot break the JSON.
_LISTENER_SILENT = """{
  "alarm": "listener-silent",
  "text": %(text)s,
  "within_s": %(within)s,
  "automation": {{ automation.name | tojson }}
}"""
_FOLLOWUP_FAILED = """{
  "alarm": "run-failed",
  "text": {{ ("followup: run " ~ flow_run.name ~ " " ~ event.event.split(".")[-1] ~ ": " ~ (event.payload.validated_state.message or "no message") ~ " " ~ (flow_run|ui_url or "")) | tojson }},
  "flow_run": {{ flow_run.name | tojson }},
  "flow_run_id": {{ flow_run.id | string | tojson }},
  "flow_run_url": {{ (flow_run|ui_url) | tojson }},
  "state": {{ event.event.split(".")[-1] | tojson }},
  "parameters": {{ flow_run.parameters | tojson }}
}"""
# The approval event comes from the paused run (its flow run is a related resource); emitted
# elsewhere it has none, and the run fields are left empty.
_APPROVAL_WAITING = """{% set run_url = (flow_run|ui_url) if flow_run else none %}{
  "alarm": "approval-waiting",
  "text": {{ ("followup: " ~ event.resource["prefect.resource.name"] ~ " waits for a person: " ~ event.payload.subject ~ " (answer within " ~ event.payload.timeout_s ~ " s) " ~ (run_url or "")) | tojson }},
  "event_id": {{ event.resource["prefect.resource.name"] | tojson }},
  "subject": {{ event.payload.subject | tojson }},
  "timeout_s": {{ event.payload.timeout_s | tojson }},
  "flow_run": {{ (flow_run.name if flow_run else none) | tojson }},
  "flow_run_id": {{ ((flow_run.id | string) if flow_run else none) | tojson }},
  "flow_run_url": {{ run_url | tojson }}
}"""


@dataclass(frozen=True)
class AlarmOptions:
    """What the alarms watch.

    Attributes:
        heartbeat_within_s: Alarm when no ``followup.listener.heartbeat`` arrived for this long
            (seconds, at least 10; three heartbeat intervals is a good value).
        listener: Listener name to watch (``followup.listener.<name>``), or ``*`` for any.
        followup_deployment: Name of the deployment whose failed or crashed runs alarm.
        prefix: Prefix of the automations' names (``<prefix>-listener-silent`` ...).
    """

    heartbeat_within_s: float = 120.0
    listener: str = "*"
    followup_deployment: str = "followup"
    prefix: str = "followup"

    def name(self, alarm: str) -> str:
        """The automation name of ``alarm``."""
        return f"{self.prefix}-{alarm}"


def build_automations(webhook_block_id: UUID, options: AlarmOptions | None = None) -> list[Any]:
    """The three alarm automations (not yet created), each calling the webhook block.

    Args:
        webhook_block_id: Id of the Webhook block document to call.
        options: What to watch.

    Returns:
        ``prefect.automations.Automation`` objects, in the order of :data:`ALARMS`.

    Raises:
        ValueError: ``heartbeat_within_s`` is below Prefect's 10 s minimum for proactive triggers.
    """
    from prefect.automations import Automation
    from prefect.events.actions import CallWebhook
    from prefect.events.schemas.automations import EventTrigger, Posture

    options = options or AlarmOptions()
    if options.heartbeat_within_s < 10:
        raise ValueError(
            f"heartbeat_within_s={options.heartbeat_within_s} is below 10 s, the shortest "
            "window Prefect allows for a proactive trigger"
        )
    within = f"{options.heartbeat_within_s:g}"

    def call(template: str) -> CallWebhook:
        return CallWebhook(block_document_id=webhook_block_id, payload=template)

    listener_silent = Automation(
        name=options.name("listener-silent"),
        description=(
            f"No {LISTENER_HEARTBEAT} event for {within} s: the listener is down or stuck, and "
            "alerts are not being read. Calls the alarm webhook, and again after every further "
            f"{within} s of silence."
        ),
        trigger=EventTrigger(
            expect={LISTENER_HEARTBEAT},
            match={"prefect.resource.id": f"followup.listener.{options.listener}"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=options.heartbeat_within_s),
        ),
        actions=[
            call(
                _LISTENER_SILENT
                % {
                    "text": json.dumps(
                        f"followup: no listener heartbeat for {within} s. Is the listener "
                        "running? Alerts are not being read."
                    ),
                    "within": within,
                }
            )
        ],
    )
    followup_failed = Automation(
        name=options.name("run-failed"),
        description=(
            f"A run of the {options.followup_deployment} deployment failed or crashed: an alert "
            "may be left without follow-up. Calls the alarm webhook with a link to the run."
        ),
        trigger=EventTrigger(
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={
                "prefect.resource.role": "deployment",
                "prefect.resource.name": options.followup_deployment,
            },
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[call(_FOLLOWUP_FAILED)],
    )
    approval_waiting = Automation(
        name=options.name("approval-waiting"),
        description=(
            f"A run paused for a person ({APPROVAL_WAITING}): telescope time or a public report "
            "waits for approval in the UI. Calls the alarm webhook with a link to the form."
        ),
        trigger=EventTrigger(
            expect={APPROVAL_WAITING},
            match={"prefect.resource.id": "followup.event.*"},
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[call(_APPROVAL_WAITING)],
    )
    return [listener_silent, followup_failed, approval_waiting]


def save_alarm_webhook(
    url: str,
    name: str = ALARM_WEBHOOK,
    *,
    headers: dict[str, str] | None = None,
    allow_private_urls: bool = True,
) -> UUID:
    """Save the Webhook block the alarms call (the URL is stored as a secret).

    Args:
        url: Where alarms are posted (JSON with a ``text`` field).
        name: Block document name.
        headers: Extra headers (for example an ``Authorization`` header); stored as secrets.
        allow_private_urls: Allow addresses on private networks (a local receiver); set False
            when the URL comes from people you do not trust.

    Returns:
        The block document id.
    """
    from prefect.blocks.webhook import Webhook
    from pydantic import SecretStr

    block = Webhook(
        method="POST",
        url=SecretStr(url),
        headers={"Content-Type": "application/json", **(headers or {})},
        allow_private_urls=allow_private_urls,
    )
    return block.save(name, overwrite=True)


def _webhook_id(name: str) -> UUID:
    from prefect.blocks.webhook import Webhook

    block = Webhook.load(name)
    block_id = block._block_document_id
    if block_id is None:  # pragma: no cover - a loaded block always has its document id
        raise ValueError(f"Webhook block {name!r} has no document id")
    return block_id


def remove_automations(options: AlarmOptions | None = None) -> list[str]:
    """Delete the alarm automations of ``options.prefix``; return the names deleted."""
    from prefect.client.orchestration import get_client

    options = options or AlarmOptions()
    deleted = []
    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        for alarm in ALARMS:
            for automation in client.read_automations_by_name(options.name(alarm)):
                client.delete_automation(automation.id)
                deleted.append(automation.name)
    return deleted


def apply_automations(
    webhook_block: str = ALARM_WEBHOOK, options: AlarmOptions | None = None
) -> list[Any]:
    """Create the alarm automations, replacing earlier ones of the same names.

    Args:
        webhook_block: Name of the Webhook block to call (see :func:`save_alarm_webhook`).
        options: What to watch.

    Returns:
        The created automations (with their ids).

    Raises:
        ValueError: No Webhook block of that name.
    """
    options = options or AlarmOptions()
    block_id = _webhook_id(webhook_block)
    remove_automations(options)
    return [automation.create() for automation in build_automations(block_id, options)]
