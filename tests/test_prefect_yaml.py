"""``prefect.yaml`` and ``deployments.serve.build_deployments()`` declare the same deployments, and
``prefect --no-prompt deploy --all`` turns the file into working deployments on a real server:
schedules present, triggers firing with typed parameters, a worker running a run through the
pull step."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from deployments.serve import build_deployments
from followup.http import client_settings
from tests.stack_support import wait_for

REPO = Path(__file__).resolve().parents[1]
POOL = "followup"


def load_prefect_yaml() -> dict[str, Any]:
    return yaml.safe_load((REPO / "prefect.yaml").read_text())


def yaml_deployments() -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in load_prefect_yaml()["deployments"]}


def served_deployments() -> dict[str, Any]:
    return {d.name: d for d in build_deployments()}


def trigger_spec(trigger: Any) -> dict[str, Any]:
    """The parts of a trigger both declarations must agree on."""
    data = trigger if isinstance(trigger, dict) else trigger.model_dump(mode="json")
    return {
        "name": data["name"],
        "expect": sorted(data["expect"]),
        "match": dict(data["match"]),
        "parameters": dict(data["parameters"]),
        "enabled": data.get("enabled", True),
        "posture": data.get("posture", "Reactive"),
    }


def schedule_spec(schedule: Any) -> dict[str, Any]:
    """A schedule as ``{"interval": s}`` or ``{"cron": ...}``, with its time zone and activity."""
    if isinstance(schedule, dict):
        kind = {k: schedule[k] for k in ("interval", "cron") if k in schedule}
        return {**kind, "timezone": schedule.get("timezone"), "active": schedule.get("active")}
    inner = schedule.schedule
    if hasattr(inner, "interval"):
        kind = {"interval": inner.interval.total_seconds()}
    else:
        kind = {"cron": inner.cron}
    return {**kind, "timezone": inner.timezone, "active": schedule.active}


# ---------------------------------------------------------------------- the two declarations agree


def test_the_file_and_build_deployments_declare_the_same_deployments() -> None:
    assert set(yaml_deployments()) == set(served_deployments())


@pytest.mark.parametrize("name", sorted(served_deployments()))
def test_each_deployment_agrees(name: str) -> None:
    declared, served = yaml_deployments()[name], served_deployments()[name]
    # "flows.followup:followup" and "flows.followup.followup" name the same object.
    assert declared["entrypoint"].replace(":", ".") == served.entrypoint
    assert declared.get("parameters", {}) == served.parameters
    if "description" in declared:
        assert declared["description"] == served.description
    assert sorted(map(trigger_spec, declared.get("triggers", []))) == sorted(
        map(trigger_spec, served.triggers or [])
    ), "triggers differ"
    declared_schedules = sorted(map(schedule_spec, declared.get("schedules", [])), key=str)
    served_schedules = sorted(map(schedule_spec, served.schedules or []), key=str)
    assert declared_schedules == served_schedules, "schedules differ"
    limit = declared.get("concurrency_limit")
    if limit is None:
        assert served.concurrency_limit is None
    else:
        assert served.concurrency_limit == limit["limit"]
        assert served.concurrency_options.collision_strategy.value == limit["collision_strategy"]
    assert declared["work_pool"]["name"] == POOL


def test_the_file_builds_nothing_and_pulls_into_the_checkout() -> None:
    config = load_prefect_yaml()
    assert config["build"] is None and config["push"] is None
    (step,) = config["pull"]
    assert step == {
        "prefect.deployments.steps.set_working_directory": {"directory": "{{ $FOLLOWUP_ROOT }}"}
    }


def test_every_entrypoint_names_a_flow_module_of_the_project() -> None:
    from prefect.flows import load_flow_from_entrypoint

    for name, declared in yaml_deployments().items():
        module, _, attribute = declared["entrypoint"].partition(":")
        # Modules, not script paths: a script's folder on sys.path would shadow packages.
        assert module.startswith("flows.") and not module.endswith(".py"), name
        assert (REPO / (module.replace(".", "/") + ".py")).is_file(), name
        assert load_flow_from_entrypoint(declared["entrypoint"]).fn.__name__ == attribute


# ---------------------------------------------------------------------- deploy --all on a server


def prefect_cli(server: Any, *args: str, env: dict[str, str] | None = None, timeout: float = 180):
    full_env = {**os.environ, "PREFECT_API_URL": server.api_url, **(env or {})}
    result = subprocess.run(
        [sys.executable, "-m", "prefect", *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"prefect {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def deployed(prefect_server) -> dict[str, Any]:
    """Create the pool and run ``prefect --no-prompt deploy --all`` from the repository root."""
    from prefect.client.orchestration import get_client

    prefect_cli(prefect_server, "work-pool", "create", POOL, "--type", "process", "--overwrite")
    started = time.monotonic()
    result = prefect_cli(prefect_server, "--no-prompt", "deploy", "--all")
    deploy_s = time.monotonic() - started
    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        deployments = {d.name: d for d in client.read_deployments() if d.work_pool_name == POOL}
    return {"deployments": deployments, "output": result.stdout, "deploy_s": deploy_s}


@pytest.mark.slow
def test_deploy_all_creates_every_deployment_in_the_pool(deployed) -> None:
    deployments = deployed["deployments"]
    assert set(deployments) == set(yaml_deployments())
    for name, declared in yaml_deployments().items():
        deployment = deployments[name]
        assert deployment.entrypoint == declared["entrypoint"]
        assert deployment.work_pool_name == POOL
        assert deployment.parameters == declared.get("parameters", {})
        assert deployment.pull_steps == load_prefect_yaml()["pull"]
    from prefect.client.orchestration import get_client

    from flows.candidate import FOLLOW_CANDIDATE

    with get_client(
        sync_client=True, httpx_settings=client_settings()
    ) as client:  # the name process-frames starts it by
        assert client.read_deployment_by_name(FOLLOW_CANDIDATE).work_pool_name == POOL
    listener = deployments["listener"]
    assert listener.global_concurrency_limit is not None
    assert listener.global_concurrency_limit.limit == 1
    assert listener.concurrency_options.collision_strategy.value == "CANCEL_NEW"


@pytest.mark.slow
def test_deploy_all_creates_each_schedule(deployed) -> None:
    deployments = deployed["deployments"]
    for name, declared in yaml_deployments().items():
        expected = sorted(map(schedule_spec, declared.get("schedules", [])), key=str)
        found = sorted(map(schedule_spec, deployments[name].schedules), key=str)
        assert found == expected, name
    refresh = deployments["refresh-requests"].schedules[0].schedule
    assert refresh.interval.total_seconds() == 300
    nightly = deployments["rerun-photometry"].schedules[0].schedule
    assert (nightly.cron, nightly.timezone) == ("0 12 * * *", "UTC")


@pytest.mark.slow
def test_deploy_all_creates_each_trigger_as_an_automation(deployed) -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        for name, declared in yaml_deployments().items():
            for trigger in declared.get("triggers", []):
                (automation,) = client.read_automations_by_name(trigger["name"])
                assert automation.enabled
                assert automation.trigger.expect == set(trigger["expect"])
                assert automation.trigger.match.model_dump() == trigger["match"]
                (action,) = automation.actions
                assert action.type == "run-deployment"
                assert action.deployment_id == deployed["deployments"][name].id


def runs_of(deployment_id: Any) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )


@pytest.mark.slow
def test_the_followup_trigger_fires_with_typed_parameters_for_trigger_events_only(
    deployed,
) -> None:
    from flows.events import emit_alert_decision

    followup = deployed["deployments"]["followup"]
    event_id = f"MS{int(time.time()) % 10**6:06d}tr"
    other = f"{event_id}x"
    # The listener started this one itself: the trigger must leave it alone.
    emit_alert_decision(
        "accepted",
        event_id=other,
        message_id=1,
        alert_id=41,
        alert_type="PRELIMINARY",
        started_by="listener",
    )
    emit_alert_decision(
        "accepted",
        event_id=event_id,
        message_id=2,
        alert_id=42,
        alert_type="PRELIMINARY",
        source="LVK",
        started_by="trigger",
    )

    def triggered() -> list[Any]:
        return [r for r in runs_of(followup.id) if r.parameters.get("event_id") == event_id]

    (run,) = wait_for(triggered, 30)
    assert run.parameters == {
        "alert_id": 42,
        "event_id": event_id,
        "alert_type": "preliminary",
        "settings": "default",
    }
    assert run.work_pool_name == POOL
    time.sleep(2)  # give a wrongly matching trigger time to fire
    assert not [r for r in runs_of(followup.id) if r.parameters.get("event_id") == other]
    assert len(triggered()) == 1


@pytest.mark.slow
def test_the_retract_trigger_fires_for_retractions(deployed) -> None:
    from flows.events import emit_alert_decision

    retract = deployed["deployments"]["retract"]
    event_id = f"MS{int(time.time()) % 10**6:06d}rt"
    emit_alert_decision(
        "retracted",
        event_id=event_id,
        message_id=3,
        alert_id=43,
        alert_type="RETRACTION",
        started_by="trigger",
    )
    (run,) = wait_for(
        lambda: [r for r in runs_of(retract.id) if r.parameters.get("event_id") == event_id], 30
    )
    assert run.parameters == {"event_id": event_id, "settings": "default"}


@pytest.mark.slow
def test_a_process_worker_runs_a_deployed_flow_through_the_pull_step(
    deployed, prefect_server, tmp_path: Path
) -> None:
    """The scheduled refresh-requests deployment, run by ``prefect worker start`` from elsewhere."""
    from prefect.client.orchestration import get_client

    from deployments.processes import ManagedProcess
    from tests.blocks_support import followup_settings

    followup_settings(tmp_path).save("yaml-smoke", overwrite=True)
    refresh = deployed["deployments"]["refresh-requests"]
    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        # Its own queue, so the worker runs this run only (not the trigger tests' runs).
        run = client.create_flow_run_from_deployment(
            refresh.id, parameters={"settings": "yaml-smoke"}, work_queue_name="smoke"
        )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    worker = ManagedProcess(
        "worker",
        [
            sys.executable,
            "-m",
            "prefect",
            "worker",
            "start",
            "--pool",
            POOL,
            "--work-queue",
            "smoke",
        ],
        env={
            **os.environ,
            "PREFECT_API_URL": prefect_server.api_url,
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "FOLLOWUP_ROOT": str(REPO),
        },
        log_dir=tmp_path,
        cwd=elsewhere,
    )
    worker.start()
    try:

        def final() -> Any:
            with get_client(sync_client=True, httpx_settings=client_settings()) as client:
                current = client.read_flow_run(run.id)
            return current if current.state and current.state.is_final() else None

        done = wait_for(final, timeout=120, interval=1.0)
    finally:
        worker.stop()
    assert done is not None, worker.tail(60)
    assert done.state.is_completed(), f"{done.state}\n{worker.tail(60)}"
    assert done.name.startswith("refresh-requests-")


def test_the_deployment_process_frames_starts_is_declared_in_both() -> None:
    """``process-frames`` starts ``follow-candidate`` by name: both declarations must hold it."""
    from flows.candidate import FOLLOW_CANDIDATE, follow_candidate

    flow_name, _, deployment = FOLLOW_CANDIDATE.partition("/")
    assert flow_name == follow_candidate.name
    declared, served = yaml_deployments()[deployment], served_deployments()[deployment]
    assert declared["entrypoint"] == "flows.candidate:follow_candidate"
    assert served.flow_name == flow_name
    # Only the settings are fixed: the event and the candidate come with each run.
    assert declared["parameters"] == {"settings": "default"}
    required = set(follow_candidate.parameters.required)
    assert required == {"event_id", "candidate_name", "vetted"}
