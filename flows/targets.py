"""Stage flow ``select-targets``: from the alert's sky map or position to ranked, visible targets."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.runtime import load_runtime
from followup.models import utcnow
from followup.strategies import choose_strategy
from followup.targeting import Plan
from tasks.alerts import load_alert
from tasks.artifacts import publish_markdown, publish_table
from tasks.targets import fetch_alert_skymap, plan_alert_targets, record_version

__all__ = ["select_targets", "table_rows"]


def table_rows(table: Any) -> list[dict[str, Any]]:
    """An astropy table as JSON-able rows (units dropped into the column names)."""
    names = [
        f"{n} [{table[n].unit}]" if getattr(table[n], "unit", None) else n for n in table.colnames
    ]
    rows = []
    for row in table:
        values = []
        for name in table.colnames:
            value = row[name]
            value = getattr(value, "value", value)
            values.append(value.item() if hasattr(value, "item") else value)
        rows.append(dict(zip(names, values, strict=True)))
    return rows


@flow(name="select-targets", flow_run_name="select-targets-{event_id}")
def select_targets(alert_id: int, event_id: str = "", settings: str = "default") -> Plan:
    """Plan the event's targets, store them as the event's next plan version, and in the ledger.

    Fields of the instrument's fixed grid holding the most observable probability, galaxies in
    the credible volume, or the position of a well-localised source; each with its visibility
    windows from the LCO sites. Targets never visible are kept in the plan's dropped list with
    the reason. Each alert of an event makes a new plan version, diffed from the last (fields
    added, kept, dropped; probability gained): only the added targets are stored, and
    ``observe`` cancels the requests of the dropped ones. A rerun reuses the alert's version.
    """
    runtime = load_runtime(settings)
    alert = load_alert(runtime.ledger, alert_id)
    if alert.skymap_to_fetch:  # a task only when there is something to fetch
        alert = fetch_alert_skymap(alert)
    strategy = choose_strategy(alert, runtime.strategies)
    plan = plan_alert_targets(
        alert,
        strategy,
        max_targets=runtime.settings.max_targets,
        start=utcnow(),
        span_hours=runtime.settings.planning_span_hours,
        catalog=runtime.settings.get_galaxy_catalog(),
    )
    version = record_version(
        runtime.ledger,
        plan,
        strategy,
        alert_id=alert_id,
        alert=alert,
        max_fields=runtime.settings.max_targets,
    )
    publish_markdown(
        "plan-version",
        alert.event_id,
        version.markdown(),
        f"{version.summary()}",
    )
    publish_table(
        "targets",
        alert.event_id,
        table_rows(plan.to_table()),
        f"{len(plan.targets)} {plan.strategy} target(s) of {alert.event_id}, covering "
        f"{100 * plan.covered_probability:.1f}% ({plan.strategy_reason})",
    )
    if plan.dropped:
        publish_table(
            "dropped-targets",
            alert.event_id,
            table_rows(plan.dropped_table()),
            f"targets of {alert.event_id} that cannot be observed, with the reason",
        )
    return plan
