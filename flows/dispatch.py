"""Start flow runs of a deployment at once, in warm worker processes, with no poll interval.

A served deployment starts its runs in a fresh Python process after the runner's next poll: 10-15 s
with the defaults, 2-3 s at best. For an alert that is too slow. The :class:`Dispatcher` keeps a
small pool of spawned processes that have already imported the flow, creates the run from the
deployment itself (so the run belongs to the deployment in the UI, can be retried and rerun like any
other) and executes it in one of those processes immediately. The run is created in PENDING state, so
no runner or worker polling for SCHEDULED runs can pick it up a second time.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import wait as futures_wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any
from uuid import UUID

from followup.http import client_settings

__all__ = ["Dispatcher", "Warmer", "execute_flow_run", "load_entrypoint"]

logger = logging.getLogger(__name__)


def load_entrypoint(entrypoint: str) -> Any:
    """Import ``"package.module:attribute"`` and return the attribute."""
    module_name, _, attribute = entrypoint.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


Warmer = str | tuple[str, tuple[Any, ...]]
"""``"module:function"``, or ``("module:function", args)`` to call it with arguments."""


def _warm(entrypoints: tuple[str, ...], warmers: tuple[Warmer, ...]) -> None:
    """Pool initializer: import the flows and Prefect's engine, and run the warmers."""
    for entrypoint in entrypoints:
        load_entrypoint(entrypoint)
    import prefect.flow_engine  # noqa: F401

    for warmer in warmers:
        entrypoint, args = (warmer, ()) if isinstance(warmer, str) else warmer
        load_entrypoint(entrypoint)(*args)


def execute_flow_run(entrypoint: str, flow_run_id: str, heartbeats: bool = False) -> str:
    """Execute an existing flow run in this process; return the name of its final state.

    Args:
        entrypoint: ``"module:attribute"`` of the flow.
        flow_run_id: The run to execute.
        heartbeats: Keep Prefect's flow-run heartbeats. Off by default: the dispatcher marks a run
            whose worker died as Crashed itself, and each (sub)flow run of a sync flow joins its
            heartbeat thread when it ends, which costs up to a second per subflow on the
            alert-to-telescope path (``select-targets`` ends before ``observe`` starts).
    """
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow_sync
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    flow = load_entrypoint(entrypoint)
    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        flow_run = client.read_flow_run(flow_run_id)
    updates = {} if heartbeats else {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    with temporary_settings(updates=updates):
        state = run_flow_sync(
            flow, flow_run=flow_run, parameters=flow_run.parameters, return_type="state"
        )
    return str(state.name)


def _descendants(client: Any, flow_run_id: str) -> list[str]:
    """Ids of every subflow run under a flow run, breadth first."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    found: list[str] = []
    pending = [flow_run_id]
    while pending:
        parent = pending.pop(0)
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[UUID(parent)])
            )
        )
        for child in children:
            found.append(str(child.id))
            pending.append(str(child.id))
    return found


class Dispatcher:
    """Creates runs of deployments and executes them in a pool of warm processes.

    Args:
        flows: ``{"<flow name>/<deployment name>": "module:attribute"}`` for every deployment this
            dispatcher may start, e.g. ``{"followup/followup": "flows.followup:followup"}``. Each
            worker imports all of them when it starts.
        workers: Processes in the pool (runs beyond this wait for a free process).
        warmers: Callables each worker runs once at start (to fill caches the first run would
            otherwise pay for): ``"module:function"`` or ``("module:function", args)``.
        heartbeats: Keep Prefect's flow-run heartbeats in the workers (see
            :func:`execute_flow_run`; off: they delay every subflow's end by up to a second).
        deployment_wait_s: How long a deployment not registered yet is waited for: serve
            registers them as it starts, and the listener may start beside it.
    """

    def __init__(
        self,
        flows: dict[str, str],
        *,
        workers: int = 2,
        warmers: tuple[Warmer, ...] = (),
        heartbeats: bool = False,
        deployment_wait_s: float = 120.0,
    ) -> None:
        if not flows:
            raise ValueError("a dispatcher needs at least one deployment to start")
        self.flows = dict(flows)
        self.workers = workers
        self.warmers = tuple(warmers)
        self.heartbeats = heartbeats
        self.deployment_wait_s = deployment_wait_s
        self._pool: ProcessPoolExecutor | None = None
        self._deployment_ids: dict[str, UUID] = {}
        self._lock = threading.Lock()
        self.futures: dict[str, Future[str]] = {}

    def start(self) -> Dispatcher:
        """Spawn the pool and wait until every process has imported the flows."""
        self._pool = self._new_pool()
        return self

    def _new_pool(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_warm,
            initargs=(tuple(self.flows.values()), self.warmers),
        )
        # Submitting no-ops forces every worker to start (and run the initializer) now.
        for future in [pool.submit(int) for _ in range(self.workers)]:
            future.result(timeout=300)
        return pool

    def deployment_id(self, deployment: str) -> UUID:
        """A deployment's id (looked up once; waited for up to ``deployment_wait_s``).

        Raises:
            prefect.exceptions.ObjectNotFound: The deployment is still not registered.
        """
        if deployment not in self._deployment_ids:
            from prefect.client.orchestration import get_client
            from prefect.exceptions import ObjectNotFound

            deadline = time.monotonic() + self.deployment_wait_s
            with get_client(sync_client=True, httpx_settings=client_settings()) as client:
                while True:
                    try:
                        found = client.read_deployment_by_name(deployment)
                        break
                    except ObjectNotFound:
                        if time.monotonic() >= deadline:
                            raise
                        logger.info("waiting for deployment %s to be registered", deployment)
                        time.sleep(0.5)
            self._deployment_ids[deployment] = found.id
        return self._deployment_ids[deployment]

    def dispatch(
        self,
        deployment: str,
        parameters: dict[str, Any],
        *,
        name: str | None = None,
        tags: list[str] | None = None,
    ) -> str:
        """Create a run of ``deployment`` and start executing it now.

        Returns:
            The flow run id.

        Raises:
            KeyError: The deployment is not one this dispatcher was given.
        """
        from prefect.client.orchestration import get_client
        from prefect.states import Pending

        entrypoint = self.flows[deployment]
        with get_client(sync_client=True, httpx_settings=client_settings()) as client:
            flow_run = client.create_flow_run_from_deployment(
                self.deployment_id(deployment),
                parameters=parameters,
                name=name,
                tags=tags,
                state=Pending(),
            )
        flow_run_id = str(flow_run.id)
        self._submit(entrypoint, flow_run_id)
        return flow_run_id

    def _submit(self, entrypoint: str, flow_run_id: str) -> None:
        with self._lock:
            if self._pool is None:
                self._pool = self._new_pool()
            try:
                future = self._pool.submit(
                    execute_flow_run, entrypoint, flow_run_id, self.heartbeats
                )
            except BrokenProcessPool:
                logger.warning("worker pool broke; starting a new one")
                self._pool = self._new_pool()
                future = self._pool.submit(
                    execute_flow_run, entrypoint, flow_run_id, self.heartbeats
                )
        self.futures[flow_run_id] = future
        # The callback runs in the executor's thread: give it the caller's context, which holds
        # the Prefect settings (API URL) the run was created with.
        context = contextvars.copy_context()
        future.add_done_callback(lambda f, run=flow_run_id: context.run(self._finished, run, f))

    def _finished(self, flow_run_id: str, future: Future[str]) -> None:
        self.futures.pop(flow_run_id, None)
        error = future.exception()
        if error is None:
            logger.info("flow run %s finished: %s", flow_run_id, future.result())
            return
        # The worker process died (killed, out of memory) or the engine failed before it could
        # record a final state: say so in Prefect, or the run would sit in Running forever.
        logger.error("flow run %s crashed in its worker: %r", flow_run_id, error)
        from prefect.client.orchestration import get_client
        from prefect.states import Crashed

        try:
            with get_client(sync_client=True, httpx_settings=client_settings()) as client:
                # Its subflows ran in the same process and died with it: they would sit in
                # Running too, so each unfinished one is marked, naming the run it died in.
                # The deepest first and the run itself last: once it shows Crashed, nothing
                # under it still shows Running (a person or a test reading it then sees all).
                for run_id, message in [
                    *(
                        (child, f"its parent run {flow_run_id} crashed: {error!r}")
                        for child in reversed(_descendants(client, flow_run_id))
                    ),
                    (flow_run_id, f"worker process failed: {error!r}"),
                ]:
                    run = client.read_flow_run(run_id)
                    if run.state is None or not run.state.is_final():
                        client.set_flow_run_state(run_id, Crashed(message=message), force=True)
        except Exception:  # the API may be down too; the ledger still knows the alert
            logger.exception("could not mark flow run %s crashed", flow_run_id)

    def shutdown(self, wait: bool = True, *, grace_s: float | None = None) -> list[str]:
        """Stop the pool (waiting for running flows when ``wait``).

        Args:
            wait: Wait for the running flows (forever, unless ``grace_s``).
            grace_s: Wait at most this long; then the worker processes get SIGINT (the engine
                marks their runs Crashed, the ledger's transactions roll back, claims of a dead
                process are taken over), and SIGKILL after ``grace_s`` more seconds.

        Returns:
            Ids of the flow runs that were cut short.
        """
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is None:
            return []
        if grace_s is None:
            pool.shutdown(wait=wait, cancel_futures=not wait)
            return []
        # The executor keeps its processes private; they are needed to stop them in time.
        processes = list(getattr(pool, "_processes", {}).values())
        running = dict(self.futures)
        pool.shutdown(wait=False, cancel_futures=True)
        _, late = futures_wait(list(running.values()), timeout=grace_s)
        cut = [run for run, future in running.items() if future in late]
        if cut:
            logger.warning("stopping %d flow run(s) still running: %s", len(cut), ", ".join(cut))
        for signum, patience in ((signal.SIGINT, grace_s), (signal.SIGKILL, 2.0)):
            alive = [p for p in processes if p.is_alive()]
            if not alive:
                break
            for process in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signum)
            deadline = time.monotonic() + patience
            for process in alive:
                process.join(max(0.0, deadline - time.monotonic()))
        return cut
