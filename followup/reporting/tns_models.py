"""What the TNS bot API answers (objects, report replies, rate limits) and how a report ended.

Read by :class:`followup.reporting.tns.TnsClient`; re-exported there.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "TnsFeedback",
    "TnsObject",
    "TnsObjectDetails",
    "TnsOutcome",
    "TnsOutcomeStatus",
    "TnsRateLimit",
    "TnsReply",
]


class TnsObject(BaseModel):
    """An object as the TNS search lists it.

    Attributes:
        objname: The designation without prefix, e.g. ``"2026abc"``.
        prefix: ``"AT"``, ``"SN"``...
        objid: TNS's numeric id.
    """

    objname: str
    prefix: str | None = None
    objid: int | None = None

    @property
    def full_name(self) -> str:
        """Prefix and name, e.g. ``"AT 2026abc"``."""
        return f"{self.prefix} {self.objname}" if self.prefix else self.objname


class TnsObjectDetails(TnsObject):
    """An object as ``get/object`` describes it.

    Attributes:
        ra_deg: Right ascension in degrees.
        dec_deg: Declination in degrees.
        internal_names: Internal names reporters gave it.
        discovery_date: Discovery date as TNS writes it.
        reporting_group: Name of the discovery reporting group.
        discoverer: Reporter string of the discovery report.
        object_type: Classification name, if classified.
        raw: The ``data`` TNS returned.
    """

    ra_deg: float | None = None
    dec_deg: float | None = None
    internal_names: list[str] = Field(default_factory=list)
    discovery_date: str | None = None
    reporting_group: str | None = None
    discoverer: str | None = None
    object_type: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict, repr=False)


class TnsFeedback(BaseModel):
    """One feedback message of a processed report (a key of ``feedback.at_report[i]``).

    Attributes:
        code: Message code: 100 created, 101 existing object, 121 name changed, ...
        message: TNS's text.
        objname: Object name the message is about.
        new_object_name: New name (code 121).
        prefix: Name prefix (code 101).
    """

    code: int
    message: str = ""
    objname: str | None = None
    new_object_name: str | None = None
    prefix: str | None = None


class TnsReply(BaseModel):
    """The answer of ``get/bulk-report-reply``.

    Attributes:
        report_id: The report asked about.
        processed: False while TNS answers 404 (not processed yet, or not found).
        objname: The object the report ended up on (``new_object_name`` after a 121).
        codes: Every feedback code, in order.
        feedback: The feedback messages.
        raw: TNS's JSON body.
    """

    report_id: str
    processed: bool
    objname: str | None = None
    codes: list[int] = Field(default_factory=list)
    feedback: list[TnsFeedback] = Field(default_factory=list)
    raw: dict[str, Any] = Field(default_factory=dict, repr=False)

    @property
    def created(self) -> bool:
        """True when the report created a new object (code 100)."""
        return 100 in self.codes

    @property
    def existing(self) -> bool:
        """True when the report was added to an object TNS already had (code 101)."""
        return 101 in self.codes

    @property
    def renamed(self) -> bool:
        """True when TNS changed the object's name (code 121)."""
        return 121 in self.codes


class TnsRateLimit(BaseModel):
    """TNS's rate-limit headers of the last reply.

    Attributes:
        limit: ``x-rate-limit-limit``.
        remaining: ``x-rate-limit-remaining``.
        reset_s: ``x-rate-limit-reset``, seconds until the window resets.
        cone_limit: ``x-cone-rate-limit-limit`` (cone searches).
        cone_remaining: ``x-cone-rate-limit-remaining``.
        cone_reset_s: ``x-cone-rate-limit-reset``.
        seen_at: The client's clock when the headers arrived.
    """

    limit: int | None = None
    remaining: int | None = None
    reset_s: float | None = None
    cone_limit: int | None = None
    cone_remaining: int | None = None
    cone_reset_s: float | None = None
    seen_at: float | None = Field(default=None, repr=False)


class TnsOutcomeStatus(StrEnum):
    """How :meth:`TnsClient.report_and_confirm` ended."""

    CREATED = "created"
    """The reply confirmed a new object (code 100, or 121 with its new name)."""
    ATTACHED = "attached"
    """The reply confirmed the report was added to an object TNS already had (code 101)."""
    ALREADY_KNOWN = "already_known"
    """An object was found before sending; nothing was sent."""
    FOUND = "found"
    """The reply did not confirm (504, lasting 404, identical-report guard) but a search found it."""
    UNCONFIRMED = "unconfirmed"
    """A report may have arrived but nothing confirmed it within the wait; do not resend blindly."""
    NOT_STORED = "not_stored"
    """TNS answered 200 without a report id each time: nothing stored, safe to try later."""


class TnsOutcome(BaseModel):
    """The result of :meth:`TnsClient.report_and_confirm`.

    Attributes:
        status: How it ended.
        objname: The TNS designation (without prefix), when known.
        report_id: The report id TNS gave, when one was given.
        sends: ``set/bulk-report`` requests that reached TNS (429-refused ones not counted).
        reply: The last bulk-report reply, if one was processed.
        url: Link to the object page, when the name is known.
        notes: What happened and why, in order (for the ledger and the UI).
    """

    status: TnsOutcomeStatus
    objname: str | None = None
    report_id: str | None = None
    sends: int = 0
    reply: TnsReply | None = None
    url: str | None = None
    notes: list[str] = Field(default_factory=list)

    @property
    def confirmed(self) -> bool:
        """True when TNS is known to hold the object (by its reply or by a search)."""
        return self.status in {
            TnsOutcomeStatus.CREATED,
            TnsOutcomeStatus.ATTACHED,
            TnsOutcomeStatus.ALREADY_KNOWN,
            TnsOutcomeStatus.FOUND,
        }
