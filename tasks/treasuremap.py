"""Task of the Treasure Map: bring the event's pointings there up to date."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from followup.ledger import Ledger, PointingRow
from followup.treasuremap import FieldPointing, TreasureMapClient, share_pointings
from tasks.retry import SERVICE_RETRIES

__all__ = ["update_pointings"]


@task(
    name="update Treasure Map pointings",
    task_run_name="update Treasure Map pointings of {event_id}",
    cache_policy=NO_CACHE,
    **SERVICE_RETRIES,
)
def update_pointings(
    client: TreasureMapClient,
    ledger: Ledger,
    event_id: str,
    fields: Sequence[FieldPointing],
    instrument_ids: Mapping[str, int],
) -> list[PointingRow]:
    """Plan, complete and cancel the event's pointings (retried only when the map is unavailable)."""
    rows = share_pointings(ledger, client, event_id, fields, instrument_ids=instrument_ids)
    counts: dict[str, int] = {}
    for row in rows:
        key = "refused" if row.error else row.status
        counts[key] = counts.get(key, 0) + 1
    get_run_logger().info("Treasure Map pointings of %s: %s", event_id, counts)
    return rows
