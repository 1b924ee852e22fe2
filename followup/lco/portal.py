"""Client of the LCO Observation Portal: validate, submit, read, list and cancel request groups.

``https://observe.lco.global/api/``. :meth:`PortalClient.get_request_states` answers the batched
status question of a polling cycle in one paged query.

Example:
    >>> with PortalClient("my-token") as portal:  # doctest: +SKIP
    ...     group = portal.submit_request_group(build_request_group(spec))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import httpx
from pydantic import SecretStr

from followup.exceptions import RequestRejected
from followup.http import ServiceClient, TokenAuth, flatten_errors
from followup.lco.models import (
    CancelOutcome,
    InstrumentType,
    ObservationBlock,
    Profile,
    Request,
    RequestGroup,
    RequestStatus,
    Semester,
    ValidationResult,
    portal_time,
)
from followup.models import LcoState

__all__ = ["DEFAULT_PORTAL_URL", "PortalClient"]

DEFAULT_PORTAL_URL = "https://observe.lco.global"
"""Root of the Observation Portal; the API lives under ``/api/``."""


def _states(value: str | LcoState | Iterable[str | LcoState] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str | LcoState):
        value = [value]
    return [LcoState(item).value for item in value]


class PortalClient(ServiceClient):
    """Client of the LCO Observation Portal API (``/api/...``); it never retries by itself.

    Errors follow the table of :mod:`followup.http`. For this API that means:
        * 400/405/409/422 -> :class:`~followup.exceptions.RequestRejected`; ``body`` is the
          portal's parsed error body and the message carries its field messages flattened to
          ``requests[0].windows[0].end: Window end time must be in the future`` lines.
        * 401/403 -> :class:`~followup.exceptions.AuthenticationError`; 404 ->
          :class:`~followup.exceptions.NotFound`.
        * 429, 503, connection failures, and timeouts or 5xx of reads (every GET, validate,
          cancel) -> :class:`~followup.exceptions.ServiceUnavailable`, with ``retry_after`` from
          Retry-After: the calling task retries.
        * a timeout, dropped connection or 500/502/504 of :meth:`submit_request_group` ->
          :class:`~followup.exceptions.UncertainOutcome`, because the group may have been stored:
          :meth:`find_request_group_by_name` before any new submission.

    Args:
        token: Portal API token (``Authorization: Token``); None for anonymous reads.
        base_url: Portal root (default ``https://observe.lco.global``; a trailing ``/api`` is
            accepted and removed).
        timeout: Seconds (or an ``httpx.Timeout``) for each HTTP call; 30 by default.
        transport: An httpx transport to use instead of the network (tests, the sandbox).
    """

    service = "LCO portal"

    def __init__(
        self,
        token: str | SecretStr | None,
        *,
        base_url: str | None = None,
        timeout: float | httpx.Timeout = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        root = (base_url or DEFAULT_PORTAL_URL).rstrip("/")
        root = root.removesuffix("/api")
        super().__init__(
            root,
            auth=TokenAuth(token) if token else None,
            timeout=timeout,
            transport=transport,
            secrets=[token] if token else [],
            follow_redirects=True,
        )

    # ---------------------------------------------------------------- request groups

    def validate_request_group(self, payload: Mapping[str, Any]) -> ValidationResult:
        """Ask the portal whether a group would be accepted, without storing it.

        ``POST /api/requestgroups/validate/``; the portal answers 200 either way.

        Returns:
            Durations when valid; the nested errors (see ``ValidationResult.messages``) when not.

        Raises:
            AuthenticationError: Bad or missing token.
            ServiceUnavailable: The portal could not answer (the calling task retries).
        """
        response = self._request(
            "POST",
            "/api/requestgroups/validate/",
            operation="validate_request_group",
            json=dict(payload),
        )
        data = self._json(response, operation="validate_request_group")
        return ValidationResult.model_validate(data)

    def submit_request_group(self, payload: Mapping[str, Any]) -> RequestGroup:
        """Submit a request group (``POST /api/requestgroups/``, 201 with the stored group).

        Never retried blindly: a timeout or 5xx after the body went out raises
        :class:`UncertainOutcome`; look the group's name up with
        :meth:`find_request_group_by_name` before submitting again.

        Returns:
            The stored group with its ``id``, ``state`` and request ids.

        Raises:
            RequestRejected: The portal refused the content (field messages in the text, the
                nested body in ``body``).
            UncertainOutcome: Sent, but no clear answer: the group may exist.
            AuthenticationError: Bad or missing token.
            ServiceUnavailable: Throttled (429), 503 or unreachable: nothing was stored.
        """
        response = self._request(
            "POST",
            "/api/requestgroups/",
            operation="submit_request_group",
            creates=True,
            json=dict(payload),
        )
        data = self._json(response, operation="submit_request_group", creates=True)
        return RequestGroup.model_validate(data)

    def get_request_group(self, group_id: int) -> RequestGroup:
        """Read one request group (``GET /api/requestgroups/{id}/``).

        Raises:
            NotFound: No such group, or not visible with this token.
            ServiceUnavailable: The portal could not answer (the calling task retries).
        """
        data = self._get_json(f"/api/requestgroups/{int(group_id)}/", operation="get_request_group")
        return RequestGroup.model_validate(data)

    def get_request(self, request_id: int) -> Request:
        """Read one request (``GET /api/requests/{id}/``).

        Raises:
            NotFound: No such request, or not visible with this token.
            ServiceUnavailable: The portal could not answer (the calling task retries).
        """
        data = self._get_json(f"/api/requests/{int(request_id)}/", operation="get_request")
        return Request.model_validate(data)

    def list_request_observations(
        self, request_id: int, *, exclude_canceled: bool = False
    ) -> list[ObservationBlock]:
        """Scheduled blocks of a request (``GET /api/requests/{id}/observations/``, a plain list).

        Raises:
            NotFound: No such request.
            ServiceUnavailable: The portal could not answer (the calling task retries).
        """
        params = {"exclude_canceled": "true"} if exclude_canceled else None
        data = self._get_json(
            f"/api/requests/{int(request_id)}/observations/",
            operation="list_request_observations",
            params=params,
            kind=list,
        )
        return [ObservationBlock.model_validate(item) for item in data]

    def list_request_groups(
        self,
        *,
        name: str | None = None,
        state: str | LcoState | Iterable[str | LcoState] | None = None,
        exclude_state: str | LcoState | Iterable[str | LcoState] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        modified_after: datetime | None = None,
        request_id: int | None = None,
        proposal: str | None = None,
        page_size: int = 1000,
    ) -> list[RequestGroup]:
        """List request groups matching the portal's filters, following every page.

        Args:
            name: Case-insensitive substring of the group name (the portal's ``icontains``).
            state: One state or several (any of them).
            exclude_state: States to leave out.
            created_after: Groups created at or after this time.
            created_before: Groups created at or before this time.
            modified_after: Groups modified at or after this time.
            request_id: The group holding this request.
            proposal: Proposal id.
            page_size: ``limit`` of each page.

        Returns:
            Every matching group, newest first (the portal orders by ``-id``).

        Raises:
            ServiceUnavailable: The portal could not answer (the calling task retries).
        """
        if page_size < 1:
            raise ValueError(f"page_size must be >= 1, got {page_size}")
        params: list[tuple[str, Any]] = [("limit", page_size)]
        if name is not None:
            params.append(("name", name))
        params += [("state", value) for value in _states(state)]
        params += [("exclude_state", value) for value in _states(exclude_state)]
        for key, value in (
            ("created_after", created_after),
            ("created_before", created_before),
            ("modified_after", modified_after),
        ):
            if value is not None:
                params.append((key, portal_time(value)))
        if request_id is not None:
            params.append(("request_id", int(request_id)))
        if proposal is not None:
            params.append(("proposal", proposal))
        return [
            RequestGroup.model_validate(item)
            for item in self._paginate(
                "/api/requestgroups/", operation="list_request_groups", params=params
            )
        ]

    def find_request_group_by_name(
        self, name: str, *, created_after: datetime | None = None
    ) -> RequestGroup | None:
        """Find the group with exactly this name (the look-up after an uncertain submit).

        The portal's ``name`` filter is a substring match; this keeps exact matches only. When
        several groups carry the name (only possible if someone submitted it twice), the newest
        is returned.

        Args:
            name: The exact group name.
            created_after: Optional lower bound on creation time to keep the query small.

        Returns:
            The group, or None when the portal holds none with this name.

        Raises:
            ServiceUnavailable: The portal could not answer (the calling task retries).
        """
        matches = [
            group
            for group in self.list_request_groups(name=name, created_after=created_after)
            if group.name == name
        ]
        return max(matches, key=lambda group: group.id) if matches else None

    def cancel_request_group(self, group_id: int) -> CancelOutcome:
        """Cancel a request group (``POST /api/requestgroups/{id}/cancel/``).

        A group that is already CANCELED is answered 200 by the portal (``canceled=True``). A
        group that already finished (COMPLETED, WINDOW_EXPIRED, FAILURE_LIMIT_REACHED) is
        refused with 400; that refusal is returned, not raised, with the group re-read so the
        caller records its real state (one extra GET). Repeating a cancel is safe, so a lost
        answer is a :class:`ServiceUnavailable`, not an :class:`UncertainOutcome`.

        Raises:
            NotFound: No such group.
            AuthenticationError: Bad or missing token.
            ServiceUnavailable: The portal could not answer (the calling task retries).
        """
        path = f"/api/requestgroups/{int(group_id)}/cancel/"
        try:
            response = self._request("POST", path, operation="cancel_request_group")
            data = self._json(response, operation="cancel_request_group")
        except RequestRejected as exc:
            group = self.get_request_group(group_id)
            message = "; ".join(flatten_errors(exc.body)) or str(exc)
            return CancelOutcome(
                group=group, canceled=group.state is LcoState.CANCELED, message=message
            )
        group = RequestGroup.model_validate(data)
        return CancelOutcome(group=group, canceled=group.state is LcoState.CANCELED)

    def get_request_states(
        self,
        request_ids: Iterable[int] | None = None,
        *,
        created_after: datetime | None = None,
        name: str | None = None,
        page_size: int = 1000,
    ) -> dict[int, RequestStatus]:
        """The states of many requests from one paged listing: the batched query of a poll cycle.

        Lists the request groups created since ``created_after`` (and/or whose name contains
        ``name``, e.g. an event id that every group name starts with) and reads the state of
        every request in them. That is ``ceil(groups / page_size)`` GET calls, one for up to
        ``page_size`` groups, whatever the number of requests; never one call per request.

        Args:
            request_ids: Requests of interest; None returns every request in the listing.
            created_after: Lower bound on group creation: pass the oldest ``created`` time (or
                submission time) of the requests being followed, minus a margin for clock skew.
            name: Substring every group name of interest contains.
            page_size: Groups per page.

        Returns:
            ``{request_id: RequestStatus}``. A requested id missing from the result was not in
            the listing (created before ``created_after``, another name, or not visible): read
            it with :meth:`get_request`.

        Raises:
            ValueError: Neither ``created_after`` nor ``name`` was given (that would list every
                group of every proposal).
            ServiceUnavailable: The portal could not answer (the calling task retries).
        """
        if created_after is None and not name:
            raise ValueError("get_request_states needs created_after or name to bound the query")
        wanted = None if request_ids is None else {int(rid) for rid in request_ids}
        states: dict[int, RequestStatus] = {}
        for group in self.list_request_groups(
            name=name, created_after=created_after, page_size=page_size
        ):
            for request in group.requests:
                if wanted is None or request.id in wanted:
                    states[request.id] = RequestStatus(
                        request_id=request.id,
                        group_id=group.id,
                        group_name=group.name,
                        state=request.state,
                        group_state=group.state,
                        modified=request.modified,
                    )
        return states

    # ---------------------------------------------------------------- account and configuration

    def get_instruments(self) -> dict[str, InstrumentType]:
        """Instrument types the portal schedules (``GET /api/instruments/``), keyed by type.

        Raises:
            ServiceUnavailable: The portal could not answer (the calling task retries).
        """
        data = self._get_json("/api/instruments/", operation="get_instruments")
        return {key: InstrumentType.model_validate(value) for key, value in data.items()}

    def list_semesters(self, *, ending_after: datetime | None = None) -> list[Semester]:
        """The portal's semesters (``GET /api/semesters/``), earliest first.

        A request window must fit inside one of them (the portal's ``WindowSerializer``);
        :func:`~followup.lco.payloads.clip_to_semester` uses them.

        Args:
            ending_after: Only semesters that end after this time (the portal's ``end_gt``).

        Raises:
            ServiceUnavailable: The portal could not answer (the calling task retries).
        """
        params: list[tuple[str, Any]] = [("limit", 100)]
        if ending_after is not None:
            params.append(("end_gt", portal_time(ending_after)))
        semesters = [
            Semester.model_validate(item)
            for item in self._paginate("/api/semesters/", operation="list_semesters", params=params)
        ]
        return sorted(semesters, key=lambda semester: semester.start)

    def get_profile(self) -> Profile:
        """The token owner's profile and proposals (``GET /api/profile/``).

        Raises:
            AuthenticationError: Bad or missing token.
            ServiceUnavailable: The portal could not answer (the calling task retries).
        """
        return Profile.model_validate(self._get_json("/api/profile/", operation="get_profile"))

    def request_url(self, request_id: int) -> str:
        """Link to a request's page in the portal (for people, not the API)."""
        return f"{self.base_url}/requests/{int(request_id)}"
