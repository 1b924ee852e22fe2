"""Retry policy of every task that calls a service: retry only what retrying can fix."""

from __future__ import annotations

from typing import Any

from followup.exceptions import ServiceUnavailable

__all__ = ["RETRY_DELAYS_S", "retry_if_unavailable"]

# Growing delays: a brief outage passes in seconds, a throttled API needs a minute.
RETRY_DELAYS_S = [2, 10, 30, 60]


def retry_if_unavailable(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry timeouts, 429 and 5xx; never rejections or bugs."""
    try:
        state.result()
    except ServiceUnavailable:
        return True
    except Exception:
        return False
    return False
