"""Stage flow ``select-targets``: from the alert's sky map or position to ranked, visible targets."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.runtime import load_runtime
from followup.models import utcnow
from followup.strategies import choose_strategy
from followup.targeting import Plan
from tasks.alerts import load_alert
from tasks.artifacts import publish_table
from tasks.targets import fetch_alert_skymap, plan_alert_targets, store_targets

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
    """Plan the event's targets and store them in the ledger.

    Fields tiling the credible region, galaxies in the credible volume, or the position of a
    well-localised source; each with its visibility windows from the LCO sites. Targets never
    visible are kept in the plan's dropped list with the reason.
    """
    runtime = load_runtime(settings)
    alert = fetch_alert_skymap(load_alert(runtime.ledger, alert_id))
    strategy = choose_strategy(alert, runtime.strategies)
    plan = plan_alert_targets(
        alert,
        strategy,
        max_targets=runtime.settings.max_targets,
        start=utcnow(),
        span_hours=runtime.settings.planning_span_hours,
        catalog=runtime.settings.get_galaxy_catalog(),
    )
    store_targets(runtime.ledger, plan)
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
