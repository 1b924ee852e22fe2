"""The alarm automations fire into the sandbox's webhook receiver: a listener that stops beating,
a follow-up run that fails, a run that waits for a person.

One real Prefect server (the session's), the sandbox webhook receiver in this process, and the
real ``listen`` flow reading a real (Tansu) Kafka broker for the heartbeat alarm.
"""

from __future__ import annotations

import contextvars
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect import flow

from deployments.automations import (
    ALARMS,
    AlarmOptions,
    apply_automations,
    build_automations,
    remove_automations,
    save_alarm_webhook,
)
from flows.events import APPROVAL_WAITING, LISTENER_HEARTBEAT, emit_followup_event
from followup.http import client_settings

LISTENER = "ops-test"
OPTIONS = AlarmOptions(heartbeat_within_s=10, listener=LISTENER, prefix="opstest")
# Created once the listener beats: a proactive trigger fires for a window without heartbeats
# from its creation on (a listener that never started is down too).
HEARTBEAT_OPTIONS = AlarmOptions(heartbeat_within_s=10, listener=LISTENER, prefix="opstest-hb")


def test_the_alarms_are_three_automations_calling_one_webhook() -> None:
    from uuid import uuid4

    block_id = uuid4()
    automations = build_automations(block_id, OPTIONS)
    assert [a.name for a in automations] == [f"opstest-{alarm}" for alarm in ALARMS]
    silent, failed, waiting = automations
    assert silent.trigger.posture == "Proactive"
    assert silent.trigger.expect == {LISTENER_HEARTBEAT}
    assert silent.trigger.within.total_seconds() == 10
    assert silent.trigger.match.model_dump() == {
        "prefect.resource.id": "followup.listener.ops-test"
    }
    assert failed.trigger.expect == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}
    assert failed.trigger.match_related.model_dump() == {
        "prefect.resource.role": "deployment",
        "prefect.resource.name": "followup",
    }
    assert waiting.trigger.expect == {APPROVAL_WAITING}
    for automation in automations:
        assert all(a.type == "call-webhook" and a.block_document_id == block_id for a in
                   automation.actions)  # fmt: skip


def test_a_heartbeat_window_below_prefects_minimum_is_refused() -> None:
    from uuid import uuid4

    with pytest.raises(ValueError, match="10 s"):
        build_automations(uuid4(), AlarmOptions(heartbeat_within_s=5))


# ---------------------------------------------------------------------- against a real server


@pytest.fixture(scope="module")
def receiver() -> Any:
    from sandbox.serving import ServedApp
    from sandbox.webhook import create_app

    served = ServedApp(create_app()).start()
    yield served.url
    served.stop()


@pytest.fixture(scope="module")
def alarms(prefect_server, receiver) -> list[Any]:
    from prefect.blocks.webhook import Webhook

    save_alarm_webhook(f"{receiver}/hooks/alarms", "opstest-alarms")
    created = apply_automations("opstest-alarms", OPTIONS)
    # Applying again replaces them: still one automation of each name.
    created = apply_automations("opstest-alarms", OPTIONS)
    # The URL is a secret: the API hands it out obfuscated.
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        document = client.read_block_document_by_name(
            "opstest-alarms", "webhook", include_secrets=False
        )
        assert receiver not in str(document.data)
        for alarm in ALARMS:
            assert len(client.read_automations_by_name(OPTIONS.name(alarm))) == 1
    assert str(Webhook.load("opstest-alarms").url.get_secret_value()).startswith(receiver)
    yield created
    # The session's server lives on: leave no automation calling a receiver that is gone.
    remove_automations(OPTIONS)
    remove_automations(HEARTBEAT_OPTIONS)


def hooks(receiver: str, alarm: str, automation: str | None = None) -> list[dict[str, Any]]:
    calls = httpx.get(f"{receiver}/sandbox/hooks", params={"name": "alarms"}, timeout=10).json()
    return [
        c
        for c in calls
        if isinstance(c["body"], dict)
        and c["body"].get("alarm") == alarm
        and (automation is None or c["body"].get("automation") == automation)
    ]


def wait_for_hooks(
    receiver: str, alarm: str, timeout: float = 30.0, automation: str | None = None
) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = hooks(receiver, alarm, automation)
        if found:
            return found
        time.sleep(0.5)
    return hooks(receiver, alarm, automation)


@flow(name="approve", flow_run_name="approve-probe")
def _asks_for_a_person(event_id: str) -> None:
    emit_followup_event(
        APPROVAL_WAITING, event_id, payload={"subject": f"requests:{event_id}", "timeout_s": 600}
    )


@pytest.mark.slow
def test_an_approval_waiting_calls_the_webhook_with_a_link_to_the_run(alarms, receiver) -> None:
    from prefect.client.orchestration import get_client

    state = _asks_for_a_person("MS250101ap", return_state=True)
    (hook,) = wait_for_hooks(receiver, "approval-waiting")
    body = hook["body"]
    assert hook["kind"] == "json"
    assert body["event_id"] == "MS250101ap"
    assert body["subject"] == "requests:MS250101ap"
    assert body["timeout_s"] == 600
    run_id = str(state.state_details.flow_run_id)
    assert body["flow_run_id"] == run_id
    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        assert body["flow_run"] == client.read_flow_run(run_id).name == "approve-probe"
    assert body["flow_run_url"].endswith(f"/runs/flow-run/{run_id}")
    assert "MS250101ap waits for a person" in body["text"]


@pytest.mark.slow
def test_a_failed_followup_run_calls_the_webhook(alarms, receiver) -> None:
    from prefect.client.orchestration import get_client
    from prefect.deployments.runner import EntrypointType

    from flows.dispatch import execute_flow_run
    from flows.followup import followup

    deployment_id = followup.to_deployment(
        name="followup", entrypoint_type=EntrypointType.MODULE_PATH
    ).apply()
    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        run = client.create_flow_run_from_deployment(
            deployment_id,
            parameters={
                "alert_id": 999,
                "event_id": "MS250101fl",
                "alert_type": "preliminary",
                "settings": "no-such-settings",
            },
        )
    assert execute_flow_run("flows.followup:followup", str(run.id)) == "Failed"
    (hook,) = wait_for_hooks(receiver, "run-failed")
    body = hook["body"]
    assert body["flow_run_id"] == str(run.id)
    assert body["flow_run"] == "followup-MS250101fl-preliminary"
    assert body["state"] == "Failed"
    assert body["parameters"]["settings"] == "no-such-settings"
    assert body["flow_run_url"].endswith(f"/runs/flow-run/{run.id}")
    assert "no-such-settings" in body["text"]  # the failure's message says what was missing


@pytest.fixture
def listener_blocks(tmp_path: Path) -> str:
    from blocks import HopCredentials, ListenerSettings, StartedBy, TriggerRulesBlock
    from sandbox.broker import TansuBroker
    from tests.blocks_support import followup_settings

    broker = TansuBroker(topics=["igwn.gwalert"], log_path=tmp_path / "tansu.log").start()
    followup_settings(tmp_path).save(LISTENER, overwrite=True)
    ListenerSettings(
        hop=HopCredentials(
            broker_url=f"kafka://{broker.bootstrap}", topics=["igwn.gwalert"], group_id=LISTENER
        ),
        rules=TriggerRulesBlock(),
        followup_settings=LISTENER,
        started_by=StartedBy.TRIGGER,  # no dispatcher: nothing to run in this test
        heartbeat_interval_s=2.0,
    ).save(LISTENER, overwrite=True)
    yield LISTENER
    broker.stop()


def heartbeats_of(flow_run_id: str) -> list[dict[str, Any]]:
    from prefect.settings import PREFECT_API_URL

    response = httpx.post(
        f"{PREFECT_API_URL.value()}/events/filter",
        json={
            "filter": {
                "event": {"name": [LISTENER_HEARTBEAT]},
                "resource": {"id": [f"followup.listener.{LISTENER}"]},
                "related": {"id": [f"prefect.flow-run.{flow_run_id}"]},
            },
            "limit": 50,
        },
        timeout=10,
    )
    response.raise_for_status()
    return response.json()["events"]


@pytest.mark.slow
def test_the_listener_flow_beats_until_cancelled_then_the_silence_alarm_fires(
    alarms, receiver, listener_blocks
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    from flows.listen import listen

    result: dict[str, Any] = {}

    def run() -> None:
        result["state"] = listen(
            listener_blocks, name=LISTENER, check_interval_s=1.0, return_state=True
        )

    # The flow runs in a thread with this test's context (the session server's settings).
    thread = threading.Thread(target=contextvars.copy_context().run, args=(run,), daemon=True)
    thread.start()

    def listen_run() -> Any:
        with get_client(sync_client=True, httpx_settings=client_settings()) as client:
            from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[f"listener-{LISTENER}"]))
            )
        return runs[0] if runs else None

    deadline = time.monotonic() + 60
    run_ = None
    while time.monotonic() < deadline and not (run_ and heartbeats_of(str(run_.id))):
        run_ = run_ or listen_run()
        time.sleep(0.5)
    assert run_ is not None, "the listen flow never started"
    # Beating: no alarm while heartbeats arrive (for more than one window).
    apply_automations("opstest-alarms", HEARTBEAT_OPTIONS)
    silent = HEARTBEAT_OPTIONS.name("listener-silent")
    time.sleep(HEARTBEAT_OPTIONS.heartbeat_within_s + 3)
    assert hooks(receiver, "listener-silent", silent) == []
    beats = heartbeats_of(str(run_.id))
    assert len(beats) >= 3, "the listener emitted no heartbeats from its flow run"
    assert beats[0]["payload"]["group_id"] == LISTENER

    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        client.set_flow_run_state(run_.id, Cancelling(message="stopped by the test"))
    thread.join(60)
    assert not thread.is_alive(), "the listener did not stop after its run was cancelled"
    assert result["state"].is_cancelled(), result["state"]
    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        assert client.read_flow_run(run_.id).state.is_cancelled()

    stopped = time.monotonic()
    (alarm, *_) = wait_for_hooks(receiver, "listener-silent", timeout=45, automation=silent)
    assert "no listener heartbeat for 10 s" in alarm["body"]["text"]
    assert time.monotonic() - stopped < 45
    # Flush what the listener's threads queued while the session's server is still there.
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    EventsWorker.drain_all()
    APILogWorker.drain_all()
