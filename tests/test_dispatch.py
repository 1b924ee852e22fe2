"""The dispatcher starts deployment runs at once in warm processes, exactly once."""

from __future__ import annotations

import threading
import time

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

from flows.dispatch import Dispatcher
from followup.http import client_settings
from tests.dispatch_flows import probe
from tests.stack_support import patient

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dispatcher(prefect_server):
    deployment_id = probe.to_deployment(name="probe").apply()
    d = Dispatcher(
        {"dispatch-probe/probe": "tests.dispatch_flows:probe"},
        workers=1,
        warmers=(("tests.dispatch_flows:warm", ("ready",)),),
    ).start()
    yield d, deployment_id
    d.shutdown()


def wait_final(flow_run_id: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(flow_run_id)
            if run.state and run.state.is_final():
                return run
            time.sleep(0.2)
    raise AssertionError(f"flow run {flow_run_id} did not finish")


def test_dispatched_run_belongs_to_the_deployment_and_completes(dispatcher) -> None:
    d, deployment_id = dispatcher
    started = time.monotonic()
    run_id = d.dispatch("dispatch-probe/probe", {"x": 21}, name="probe-21")
    run = wait_final(run_id)
    assert run.state.is_completed(), run.state
    assert run.deployment_id == deployment_id
    assert run.name == "probe-21"
    # No runner or worker serves this deployment: only the dispatcher can have run it.
    assert time.monotonic() - started < 30
    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )
    assert [r.id for r in runs if r.name == "probe-21"] == [run.id]


def test_a_killed_worker_leaves_a_crashed_run_and_a_working_pool(dispatcher) -> None:
    d, _ = dispatcher
    dead = wait_final(d.dispatch("dispatch-probe/probe", {"x": 1, "die": True}, name="probe-dies"))
    assert dead.state.is_crashed(), dead.state
    alive = wait_final(d.dispatch("dispatch-probe/probe", {"x": 2}, name="probe-after"))
    assert alive.state.is_completed()


def test_a_run_shows_crashed_only_once_its_subflows_do(dispatcher) -> None:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    d, _ = dispatcher
    parent = wait_final(d.dispatch("dispatch-probe/probe", {"x": 4, "die_in_subflow": True}))
    assert parent.state.is_crashed(), parent.state
    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent.id])
            )
        )
    assert len(children) == 1
    (child,) = children
    assert child.state.is_crashed(), child.state
    assert f"its parent run {parent.id} crashed" in child.state.message
    # Marked before its parent: a reader that sees the parent Crashed never sees it Running.
    assert child.state.timestamp <= parent.state.timestamp


def test_a_deployment_registered_after_the_dispatcher_started_is_waited_for(
    prefect_server,
) -> None:
    from prefect.exceptions import ObjectNotFound

    late = Dispatcher(
        {"dispatch-probe/probe-late": "tests.dispatch_flows:probe"},
        deployment_wait_s=patient(60),
    )
    # serve registers its deployments while the listener starts beside it
    registering = threading.Timer(1.0, lambda: probe.to_deployment(name="probe-late").apply())
    registering.start()
    try:
        found = late.deployment_id("dispatch-probe/probe-late")
    finally:
        registering.join()
    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        assert found == client.read_deployment_by_name("dispatch-probe/probe-late").id
    never = Dispatcher({"dispatch-probe/never": "tests.dispatch_flows:probe"}, deployment_wait_s=1)
    with pytest.raises(ObjectNotFound):
        never.deployment_id("dispatch-probe/never")


def test_workers_run_their_warmers_with_arguments_before_any_run(dispatcher) -> None:
    d, _ = dispatcher
    warm = wait_final(d.dispatch("dispatch-probe/probe", {"x": 3, "warmed": "ready"}))
    assert warm.state.is_completed(), warm.state
    cold = wait_final(d.dispatch("dispatch-probe/probe", {"x": 3, "warmed": "other"}))
    assert cold.state.is_failed(), cold.state
