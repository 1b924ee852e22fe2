"""Tasks of target selection: plan, store, plot."""

from __future__ import annotations

from datetime import datetime

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from followup.galaxies import GalaxyCatalog
from followup.ledger import Ledger
from followup.models import Alert, ObservingStrategy
from followup.replanning import PlanVersion, record_plan_version, version_targets
from followup.skymap import SkyMap, read_skymap
from followup.skymap.fetch import SkymapFetcher, with_fetched_skymap
from followup.targeting import Plan, plan_targets, plot_plan
from tasks.retry import SERVICE_RETRIES

__all__ = [
    "fetch_alert_skymap",
    "plan_alert_targets",
    "plot_targets",
    "record_version",
]


@task(name="plan targets", cache_policy=NO_CACHE, **SERVICE_RETRIES)
def plan_alert_targets(
    alert: Alert,
    strategy: ObservingStrategy,
    *,
    max_targets: int,
    start: datetime,
    span_hours: float,
    catalog: GalaxyCatalog | None = None,
) -> Plan:
    """Ranked, visible targets for the alert with the strategy's instrument and airmass limit."""
    plan = plan_targets(
        alert,
        instrument_type=strategy.instrument_type,
        max_targets=min(max_targets, strategy.max_targets),
        start=start,
        span_hours=span_hours,
        max_airmass=strategy.max_airmass,
        min_moon_distance_deg=strategy.min_lunar_distance_deg,
        min_probability=strategy.min_probability,
        catalog=catalog,
        allow_empty=True,
    )
    get_run_logger().info(
        "%s: %s, %d target(s), %d dropped, covering %.1f%% (%.2f s)",
        alert.event_id,
        plan.strategy,
        len(plan.targets),
        len(plan.dropped),
        100 * plan.covered_probability,
        plan.planning_seconds,
    )
    return plan


@task(name="record plan version", cache_policy=NO_CACHE)
def record_version(
    ledger: Ledger,
    plan: Plan,
    strategy: ObservingStrategy,
    *,
    alert_id: int,
    alert: Alert,
    max_fields: int | None = None,
) -> PlanVersion:
    """Store the alert's plan as the event's next version, and the targets that version adds.

    The version is diffed from the last (a rerun reuses it); a target stored before is kept. One
    task, not two: both are ledger writes on the path from the alert to the telescope
    request, where every task run costs its round trips to the Prefect API.
    """
    version = record_plan_version(
        ledger, plan, strategy, alert_id=alert_id, alert=alert, max_fields=max_fields
    )
    stored = ledger.events.save_targets(plan.event_id, version_targets(plan, version))
    get_run_logger().info(
        "%s%s; %d target(s) stored",
        version.summary(),
        " (recorded before)" if version.reused else "",
        len(stored),
    )
    return version


@task(name="plot targets", cache_policy=NO_CACHE)
def plot_targets(alert: Alert, plan: Plan) -> bytes:
    """The sky plot of the plan: the map, its credible contour, the chosen targets (PNG)."""
    skymap: SkyMap | None = None
    source = alert.external_coinc.combined_skymap if alert.external_coinc else None
    source = source or alert.skymap
    if source:
        skymap = read_skymap(source)
    return plot_plan(skymap, plan)


@task(name="fetch sky map", cache_policy=NO_CACHE, **SERVICE_RETRIES)
def fetch_alert_skymap(alert: Alert) -> Alert:
    """The alert with its sky map fetched, when it carries only a URL (allowed hosts only)."""
    if not alert.skymap_to_fetch:
        return alert
    with SkymapFetcher() as fetcher:
        fetched = with_fetched_skymap(alert, fetcher)
    get_run_logger().info(
        "%s: fetched the sky map from %s (%d bytes)",
        alert.event_id,
        alert.skymap_url,
        len(fetched.skymap or b""),
    )
    return fetched
