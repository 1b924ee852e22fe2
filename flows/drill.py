"""Flow ``drill``: replay a mock (or test) alert through the whole loop, on test alerts only.

The alert is a fresh mock LVK BNS alert (:func:`followup.alerts.mock.make_mock_bns_alert`), or a
file from the listener's drills folder (``ListenerSettings.drills_dir``): nothing outside that
folder is read, symbolic links included, and no error quotes a file's content. What the alert
then reaches is fenced by the settings (:mod:`followup.drills`).
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from blocks import ListenerSettings
from followup.alerts import parse_message
from followup.alerts.mock import make_mock_bns_alert
from followup.drills import DrillFileError, read_drill_file

__all__ = ["drill"]


@flow(name="drill", flow_run_name="drill-{listener_settings}")
def drill(
    listener_settings: str = "default", alert_file: str = "", topic: str = ""
) -> dict[str, str]:
    """Publish a mock alert to the listener's stream, marked as a test, and let the loop run.

    Args:
        listener_settings: The ListenerSettings document whose broker and topic receive the alert
            (and whose ``drills_dir`` holds the alert files).
        alert_file: An alert file in the drills folder to replay (a mock or test alert); empty
            for a fresh mock LVK BNS alert made here.
        topic: Topic to publish to (default: the listener's first topic).

    Returns:
        The event id and the hop message id.

    Raises:
        DrillFileError: The file is outside the drills folder, unreadable, not an alert, or a
            real (non-test) alert: drills never replay real alerts.
    """
    config = ListenerSettings.load(listener_settings)
    if alert_file:
        raw = read_drill_file(config.drills_dir, alert_file)
        try:
            alert = parse_message(raw)
        except Exception:  # the parser's message may quote the file: it is not passed on
            raise DrillFileError(f"{alert_file!r} is not an alert followup can read") from None
        if not alert.is_test:
            raise DrillFileError(
                f"the alert in {alert_file!r} is not a mock or test alert: drills replay test "
                "alerts only"
            )
    else:
        raw = make_mock_bns_alert().raw
        alert = parse_message(raw)
    target_topic = topic or config.hop.topics[0]
    with config.hop.get_publisher() as publisher:
        message_id = publisher.send(raw, topic=target_topic, test=True)
    get_run_logger().info(
        "published %s %s to %s", alert.event_id, alert.alert_type.value, target_topic
    )
    return {"event_id": alert.event_id, "message_id": message_id}
