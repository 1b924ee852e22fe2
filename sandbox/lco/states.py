"""The portal's state names for requests, request groups and scheduled blocks, and how they combine.

Written from observation-portal (``observation_portal/common/state_changes.py``), not taken from
the clients: the stand-in must say what the portal says, whatever a client expects.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

__all__ = ["BLOCK_STATE", "RequestState", "aggregate_states"]


class RequestState(StrEnum):
    """States of a request and of a request group."""

    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    WINDOW_EXPIRED = "WINDOW_EXPIRED"
    FAILURE_LIMIT_REACHED = "FAILURE_LIMIT_REACHED"
    CANCELED = "CANCELED"


BLOCK_STATE: dict[RequestState, str] = {
    RequestState.PENDING: "PENDING",
    RequestState.COMPLETED: "COMPLETED",
    RequestState.CANCELED: "CANCELED",
    RequestState.WINDOW_EXPIRED: "NOT_ATTEMPTED",
    RequestState.FAILURE_LIMIT_REACHED: "FAILED",
}
"""State of the scheduled block (``/api/requests/{id}/observations/``) of a request in a state."""


def aggregate_states(states: Iterable[str], operator: str) -> str:
    """A request group's state from its requests' (``aggregate_request_states``)."""
    present = set(states)
    priority = ["WINDOW_EXPIRED", "PENDING", "COMPLETED", "FAILURE_LIMIT_REACHED", "CANCELED"]
    if operator == "MANY":
        priority = ["PENDING", "COMPLETED", "WINDOW_EXPIRED", "FAILURE_LIMIT_REACHED", "CANCELED"]
    for state in priority:
        if state in present:
            return state
    return RequestState.PENDING.value
