"""One error tree for followup, split by cause (after httpx's exception hierarchy).

Callers decide what to do from the class alone: a :class:`ServiceUnavailable` is worth retrying, a
:class:`RequestRejected` is not, and an :class:`AlertParseError` sends a message to quarantine.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AlertParseError",
    "AuthenticationError",
    "CatalogError",
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
    """Timeouts, connection errors, 429 and 5xx: retrying later may succeed.

    Attributes:
        retry_after: Seconds the server asked us to wait (Retry-After, x-rate-limit-reset), if any.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class UncertainOutcome(ServiceUnavailable):
    """The request body was sent but no answer came back: the remote side may have acted on it.

    A client must look the effect up (for example a request group by name) before any retry.
    """


class AuthenticationError(ServiceError):
    """401 or 403: the credentials are missing, wrong or lack permission. Not retryable."""


class RequestRejected(ServiceError):
    """400, 409 or 422: the service refused the content. ``body`` carries its field messages."""


class NotFound(ServiceError):
    """404 for an object that was expected to exist."""


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
