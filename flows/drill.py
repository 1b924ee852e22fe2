"""Flow ``drill``: replay a mock (or sample) alert through the whole loop, on test alerts only."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from blocks import ListenerSettings
from followup.alerts import parse_message
from followup.stream import publish

__all__ = ["drill"]


@flow(name="drill", flow_run_name="drill-{listener_settings}")
def drill(
    listener_settings: str = "default", alert_path: str = "", topic: str = ""
) -> dict[str, str]:
    """Publish a mock alert to the listener's stream, marked as a test, and let the loop run.

    Args:
        listener_settings: The ListenerSettings document whose broker and topic receive the alert.
        alert_path: An alert file to replay (it must be a mock or test alert); empty for a fresh
            mock LVK BNS alert made here.
        topic: Topic to publish to (default: the listener's first topic).

    Returns:
        The event id and the hop message id.

    Raises:
        ValueError: The file is a real (non-test) alert: drills never replay real alerts.
    """
    from deployments.demo import make_demo_alert

    config = ListenerSettings.load(listener_settings)
    raw = Path(alert_path).read_bytes() if alert_path else make_demo_alert().raw
    alert = parse_message(raw)
    if not alert.is_test:
        raise ValueError(
            f"{alert.event_id} is not a mock or test alert: drills replay test alerts only"
        )
    target_topic = topic or config.hop.topics[0]
    message_id = publish(
        config.hop.broker_url,
        target_topic,
        raw,
        test=True,
        auth=config.hop if config.hop.username else None,
    )
    get_run_logger().info(
        "published %s %s to %s", alert.event_id, alert.alert_type.value, target_topic
    )
    return {"event_id": alert.event_id, "message_id": message_id}
