"""What a flow run needs from its settings block, loaded once per process and reused briefly.

Flows take only the name of a :class:`blocks.FollowupSettings` document. Loading it is an API
call; a follow-up run loads it in each stage, so the loaded settings and the strategies are kept
for a short while per process (a warm dispatcher worker serves many runs, and edits made in the UI
apply within a minute). The block builds the ledger (one per database per process) and the rest.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property

from pydantic import SecretStr

from blocks import FollowupSettings
from followup.drills import check_drill_fence
from followup.ledger import Ledger
from followup.models import Alert, ReportDestination
from followup.reporting.outbox import ReportClient
from followup.strategies import StrategyBook

__all__ = ["LcoToken", "Runtime", "load_runtime", "warm_up"]

logger = logging.getLogger(__name__)

_TTL_S = 60.0
_cache: dict[str, tuple[float, Runtime]] = {}
_lock = threading.Lock()


@dataclass
class Runtime:
    """The settings of a run and what is built from them (never passed as a flow parameter)."""

    name: str
    settings: FollowupSettings
    ledger: Ledger = field(repr=False)

    @cached_property
    def strategies(self) -> StrategyBook:
        """Observing strategies and approval rules (the settings' YAML, else the packaged ones)."""
        return self.settings.get_strategies()

    def fence(self, alert: Alert, service: str) -> None:
        """Let ``alert`` reach ``service`` (LCO, HERMES, TNS, GCN) only if real, or to a sandbox.

        Called where the flow hands the service's client to a submitting or sending task.

        Raises:
            followup.drills.DrillFenced: ``alert`` is a test or mock alert and the service is
                not a sandbox (:func:`followup.drills.check_drill_fence`).
        """
        settings = self.settings
        url = {
            "LCO": settings.lco.portal_url,
            "HERMES": settings.hermes.base_url,
            "TNS": settings.tns.base_url,
            "GCN": settings.gcn.base_url,
        }[service]
        check_drill_fence(
            alert, service=service, url=url, sandbox_endpoints=settings.sandbox_endpoints
        )

    def report_client(self, alert: Alert, destination: ReportDestination) -> ReportClient:
        """The client that sends ``alert``'s report to ``destination``, once the fence allows it.

        Raises:
            followup.drills.DrillFenced: ``alert`` is a test or mock alert and the destination is
                not a sandbox.
        """
        credentials = {
            ReportDestination.HERMES: self.settings.hermes,
            ReportDestination.TNS: self.settings.tns,
            ReportDestination.GCN: self.settings.gcn,
        }[destination]
        self.fence(alert, destination.value.upper())
        return credentials.get_client()


def load_runtime(name: str) -> Runtime:
    """Load the settings block ``name`` (cached for a minute in this process)."""
    with _lock:
        cached = _cache.get(name)
        if cached is not None and time.monotonic() - cached[0] < _TTL_S:
            return cached[1]
        settings = FollowupSettings.load(name)
        runtime = Runtime(name=name, settings=settings, ledger=settings.get_ledger())
        _cache[name] = (time.monotonic(), runtime)
        return runtime


@dataclass(frozen=True)
class LcoToken:
    """The LCO token of the settings ``name``, read where it is called (a Dask worker).

    Given to an archive client as its credential source: what is pickled and shipped to Dask is
    this name, never the token.
    """

    name: str

    def __call__(self) -> SecretStr:
        """Load the settings (cached for a minute per process) and return their LCO token."""
        return load_runtime(self.name).settings.lco.api_token


def warm_up(name: str) -> float:
    """Load the settings ``name`` and open the ledger, in a worker process before its first run.

    The ledger's engine stays for the life of the process, so the first alert a worker takes does
    not pay for opening and checking the database. A failure is logged, not raised: the worker
    still serves runs, which then report the problem themselves.

    Returns:
        Seconds spent.
    """
    started = time.perf_counter()
    try:
        load_runtime(name)
    except Exception:
        logger.warning("could not load the settings %r ahead of the first run", name, exc_info=True)
    return time.perf_counter() - started
