"""One error tree for followup, split by cause (after httpx's exception hierarchy).

Callers decide what to do from the class alone: a :class:`ServiceUnavailable` is worth retrying, an
:class:`UncertainOutcome` is looked up (never blindly resent), a :class:`RequestRejected` is not
retried, and an :class:`AlertParseError` sends a message to quarantine. Which HTTP status or
transport failure becomes which class is one table, in :mod:`followup.http`.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AlertParseError",
    "AuthenticationError",
    "CatalogError",
    "ClaimHeld",
    "FollowupError",
    "LedgerError",
    "NotFound",
    "PhotometryError",
    "ReductionError",
    "RequestRejected",
    "ServiceError",
    "ServiceUnavailable",
    "SkymapError",
    "TargetingError",
    "UncertainOutcome",
]


class FollowupError(Exception):
    """Base class of every error raised by followup."""


class ServiceError(FollowupError):
    """A remote service (LCO, HERMES, TNS, GCN, a catalog) answered badly or not at all.

    Attributes:
        operation: What was being done, for example ``"submit_request_group"``.
        status_code: HTTP status, or None when no response arrived.
        url: The URL that was called (never with credentials in it).
        body: The parsed JSON body, or the response text, or None.
    """

    def __init__(
        self,
        message: str,
        *,
        operation: str = "",
        status_code: int | None = None,
        url: str = "",
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.operation = operation
        self.status_code = status_code
        self.url = url
        self.body = body


class ServiceUnavailable(ServiceError):
    """Nothing was done: unreachable, throttled (429), 503, or a read that failed. Retry later.

    Attributes:
        retry_after: Seconds the server asked us to wait (Retry-After, x-rate-limit-reset), if any.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class UncertainOutcome(ServiceError):
    """A creating call went out and no usable answer came back: the service may have acted on it.

    A sibling of :class:`ServiceUnavailable`, not a kind of it, so that no retry policy that
    retries unavailability resends it by accident. The caller looks the effect up (a request
    group by its name, a TNS object by position) and decides from what it finds.
    """


class ClaimHeld(ServiceUnavailable):
    """Another caller holds the claim on a request or report and did not let go in time.

    Nothing was sent by this caller. It is a kind of :class:`ServiceUnavailable` so that the
    calling task retries later, when the holder has finished (or its lease has run out).
    """


class AuthenticationError(ServiceError):
    """401 or 403: the credentials are missing, wrong or lack permission. Not retryable."""


class RequestRejected(ServiceError):
    """400, 405, 409, 422 (any 4xx not named elsewhere): the content was refused.

    ``body`` carries the service's field messages. Not retryable: the same request is refused
    again.
    """


class NotFound(ServiceError):
    """404 or 410 for an object that was expected to exist."""


class AlertParseError(FollowupError):
    """A message could not be turned into an :class:`followup.models.Alert`.

    Attributes:
        reason: Short machine-friendly reason stored with the quarantined message.
    """

    def __init__(self, reason: str, *, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class SkymapError(FollowupError):
    """A sky map is unreadable, empty, all zero or otherwise unusable."""


class TargetingError(FollowupError):
    """No target could be planned (for example nothing visible from any site)."""


class ReductionError(FollowupError):
    """A frame could not be calibrated (missing extension, mismatched shapes, truncated file)."""


class PhotometryError(FollowupError):
    """A frame could not be measured (no WCS, target off the frame, no reference stars)."""


class CatalogError(FollowupError):
    """A reference catalog could not be read or queried."""


class LedgerError(FollowupError):
    """The ledger refused a write, for example a second request under the same unique key."""
