"""Tasks that read alerts back from the ledger."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from followup.alerts import parse_message
from followup.ledger import Ledger
from followup.models import Alert

__all__ = ["load_alert"]


@task(name="load alert", task_run_name="load alert {alert_id}", cache_policy=NO_CACHE)
def load_alert(ledger: Ledger, alert_id: int) -> Alert:
    """The alert exactly as received: its raw bytes and headers, parsed again (sky map included)."""
    stored = ledger.alerts.get_stored(alert_id)
    alert = parse_message(stored.raw, headers=stored.headers, topic=stored.topic)
    get_run_logger().info(
        "%s %s from %s (%s)", alert.event_id, alert.alert_type.value, alert.source, alert.format
    )
    return alert
