"""Clients for the LCO Observation Portal and Science Archive, and the request-group payload builder.

Two httpx clients share one error policy (see :class:`PortalClient` for the exact rules):

* :class:`PortalClient` validates, submits, reads, lists and cancels request groups at
  ``https://observe.lco.global/api/`` and answers the batched status question of a polling cycle in
  one paged query (:meth:`PortalClient.get_request_states`).
* :class:`ArchiveClient` lists the frames of a request at ``https://archive-api.lco.global/frames/``
  (BANZAI level 91, else raw level 0 plus that night's calibrations) and downloads them with resume,
  an md5 check and a local cache keyed by basename and version.

Payloads come from data: :data:`INSTRUMENTS` describes each instrument type once, and
:func:`build_request_group` turns a :class:`~followup.models.Target` and an
:class:`~followup.models.ObservingStrategy` into the portal's RequestGroup JSON.
:func:`make_group_name` gives the deterministic group name that makes submission exactly-once.

Example:
    >>> client = PortalClient("my-token")  # doctest: +SKIP
    >>> payload = build_request_group(target, strategy, proposal="LCO2025A-001",
    ...     group_name=make_group_name("S250101ab", target.name, epoch=0, filters=["rp"]),
    ...     window_start=start, window_end=end)  # doctest: +SKIP
    >>> group = client.submit_request_group(payload)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from followup import __version__
from followup.exceptions import (
    AuthenticationError,
    NotFound,
    RequestRejected,
    ServiceError,
    ServiceUnavailable,
    UncertainOutcome,
)
from followup.models import Frame, LcoState, ObservingStrategy, Target, UtcDatetime

__all__ = [
    "CALIBRATION_TYPES",
    "DEFAULT_ARCHIVE_URL",
    "DEFAULT_PORTAL_URL",
    "INSTRUMENTS",
    "AcquisitionConfig",
    "ArchiveClient",
    "CancelOutcome",
    "ChecksumMismatch",
    "Configuration",
    "Constraints",
    "GuidingConfig",
    "InstrumentConfig",
    "InstrumentSpec",
    "InstrumentType",
    "Location",
    "ObservationBlock",
    "PortalClient",
    "PortalTarget",
    "Profile",
    "ProfileProposal",
    "Request",
    "RequestGroup",
    "RequestStatus",
    "TokenAuth",
    "ValidationResult",
    "Window",
    "build_request_group",
    "epoch_windows",
    "estimate_request_duration_s",
    "flatten_errors",
    "frame_from_record",
    "group_name_prefix",
    "make_group_name",
]

DEFAULT_PORTAL_URL = "https://observe.lco.global"
"""Root of the Observation Portal; the API lives under ``/api/``."""

DEFAULT_ARCHIVE_URL = "https://archive-api.lco.global"
"""Root of the Science Archive API; frames live under ``/frames/``."""

_USER_AGENT = f"followup/{__version__}"
_MAX_PAGES = 10_000  # a guard against a server whose ``next`` never ends

# --------------------------------------------------------------------------------------------
# Auth and errors
# --------------------------------------------------------------------------------------------


class TokenAuth(httpx.Auth):
    """``Authorization: Token <key>``, the scheme of the LCO portal and archive.

    The key is held as a :class:`pydantic.SecretStr` and never appears in a repr.

    Args:
        token: The API token from the portal profile page.
    """

    def __init__(self, token: str | SecretStr) -> None:
        self._token = token if isinstance(token, SecretStr) else SecretStr(token)

    def __repr__(self) -> str:
        return "TokenAuth(token=SecretStr('**********'))"

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        """Add the token header to a request."""
        request.headers["Authorization"] = f"Token {self._token.get_secret_value()}"
        yield request


class ChecksumMismatch(ServiceUnavailable):
    """A downloaded file did not match the archive's md5 (or was longer than announced).

    The partial file is deleted, so a retry downloads it afresh; retrying is reasonable because the
    usual cause is a corrupted transfer.
    """


def flatten_errors(errors: Any, prefix: str = "") -> list[str]:
    """Flatten a Django REST Framework error body into readable lines.

    DRF mirrors the payload: nested dicts for objects, lists with one entry per item (``{}`` for
    valid items) and lists of strings for the messages of one field. Group-level problems sit
    under ``non_field_errors``, which is dropped from the path.

    Args:
        errors: The parsed error body (dict, list or string).
        prefix: Path of ``errors`` inside the payload (used by the recursion).

    Returns:
        One ``"path: message"`` line per message, e.g.
        ``"requests[0].configurations[0].instrument_configs[0].exposure_count: Ensure this value
        is greater than or equal to 1."``; a message with no path stands alone.

    Example:
        >>> flatten_errors({"requests": [{"windows": [{"end": ["Window end time must be in the future"]}]}]})
        ['requests[0].windows[0].end: Window end time must be in the future']
    """
    lines: list[str] = []
    if isinstance(errors, Mapping):
        for key, value in errors.items():
            if key in ("non_field_errors", "detail", "errors"):
                path = prefix
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            lines += flatten_errors(value, path)
    elif isinstance(errors, list | tuple):
        if all(isinstance(item, str) for item in errors):
            lines += [f"{prefix}: {item}" if prefix else item for item in errors]
        else:
            for index, item in enumerate(errors):
                if isinstance(item, str):
                    lines.append(f"{prefix}: {item}" if prefix else item)
                else:
                    lines += flatten_errors(item, f"{prefix}[{index}]")
    elif errors not in (None, "", {}):
        lines.append(f"{prefix}: {errors}" if prefix else str(errors))
    return lines


def _parse_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text[:2000]


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), else None."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _redact(url: httpx.URL | str) -> str:
    """A URL fit for messages: signed download URLs lose their query (the signature)."""
    parts = urlsplit(str(url))
    if "signature" in parts.query.lower() or "x-amz" in parts.query.lower():
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return str(url)


# --------------------------------------------------------------------------------------------
# Response models (portal)
# --------------------------------------------------------------------------------------------


class _Remote(BaseModel):
    """Base of models read from a service: unknown fields are kept, not rejected."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Window(_Remote):
    """An observing window (UTC)."""

    start: UtcDatetime | None = None
    end: UtcDatetime


class Location(_Remote):
    """Where a request may run: a telescope class, optionally pinned to a site/enclosure/telescope."""

    telescope_class: str
    site: str | None = None
    enclosure: str | None = None
    telescope: str | None = None


class Constraints(_Remote):
    """Observing constraints of a configuration."""

    max_airmass: float = 1.6
    min_lunar_distance: float = 30.0
    max_lunar_phase: float | None = None
    max_seeing: float | None = None
    min_transparency: float | None = None
    extra_params: dict[str, Any] = Field(default_factory=dict)


class PortalTarget(_Remote):
    """The target of a configuration (ICRS: ra/dec in degrees; other types keep their fields)."""

    name: str
    type: str = "ICRS"
    ra: float | None = None
    dec: float | None = None
    proper_motion_ra: float | None = None
    proper_motion_dec: float | None = None
    epoch: float | None = None
    parallax: float | None = None
    extra_params: dict[str, Any] = Field(default_factory=dict)


class InstrumentConfig(_Remote):
    """Exposures of one configuration: time in seconds, count, readout mode, optical elements."""

    exposure_time: float
    exposure_count: int
    mode: str | None = None
    optical_elements: dict[str, str] = Field(default_factory=dict)
    rotator_mode: str | None = None
    extra_params: dict[str, Any] = Field(default_factory=dict)
    rois: list[dict[str, Any]] = Field(default_factory=list)


class AcquisitionConfig(_Remote):
    """Acquisition settings of a configuration."""

    mode: str = "OFF"
    exposure_time: float | None = None
    extra_params: dict[str, Any] = Field(default_factory=dict)


class GuidingConfig(_Remote):
    """Guiding settings of a configuration."""

    mode: str = "ON"
    optional: bool = True
    exposure_time: float | None = None
    optical_elements: dict[str, str] = Field(default_factory=dict)
    extra_params: dict[str, Any] = Field(default_factory=dict)


class Configuration(_Remote):
    """One configuration of a request: type, instrument, target, constraints and exposures."""

    id: int | None = None
    type: str
    instrument_type: str
    priority: int | None = None
    repeat_duration: float | None = None
    extra_params: dict[str, Any] = Field(default_factory=dict)
    target: PortalTarget
    constraints: Constraints = Field(default_factory=Constraints)
    instrument_configs: list[InstrumentConfig] = Field(default_factory=list)
    acquisition_config: AcquisitionConfig = Field(default_factory=AcquisitionConfig)
    guiding_config: GuidingConfig = Field(default_factory=GuidingConfig)


class Request(_Remote):
    """One request of a group, as the portal returns it.

    Attributes:
        id: Request id (the archive's ``request_id``/``REQNUM``).
        state: Portal state; terminal states can still turn COMPLETED later.
        duration: Estimated duration in seconds.
    """

    id: int
    state: LcoState
    duration: float | None = None
    acceptability_threshold: float | None = None
    configuration_repeats: int = 1
    optimization_type: str | None = None
    observation_note: str = ""
    extra_params: dict[str, Any] = Field(default_factory=dict)
    location: Location | None = None
    windows: list[Window] = Field(default_factory=list)
    configurations: list[Configuration] = Field(default_factory=list)
    created: UtcDatetime | None = None
    modified: UtcDatetime | None = None


class RequestGroup(_Remote):
    """A request group as the portal stores it (``POST/GET /api/requestgroups/``).

    Attributes:
        id: Request group id (``TRACKNUM`` in FITS headers).
        name: Group name (``GROUPID``), at most 50 characters.
        state: Aggregate state of the group's requests.
        observation_type: NORMAL, RAPID_RESPONSE, TIME_CRITICAL (or DIRECT/REAL_TIME for staff).
    """

    id: int
    name: str
    proposal: str
    state: LcoState
    observation_type: str
    operator: str = "SINGLE"
    ipp_value: float | None = None
    submitter: str | None = None
    created: UtcDatetime | None = None
    modified: UtcDatetime | None = None
    requests: list[Request] = Field(default_factory=list)

    @property
    def request_ids(self) -> list[int]:
        """Ids of the group's requests, in order."""
        return [request.id for request in self.requests]


class ValidationResult(_Remote):
    """The answer of ``POST /api/requestgroups/validate/`` (always HTTP 200).

    Attributes:
        request_durations: ``{"duration": s, "requests": [...]}`` when valid, ``{}`` otherwise.
        errors: The nested DRF errors, ``{}`` when valid.
    """

    request_durations: dict[str, Any] = Field(default_factory=dict)
    errors: dict[str, Any] | list[Any] | str = Field(default_factory=dict)

    @property
    def is_valid(self) -> bool:
        """True when the portal found no error (and so gave durations)."""
        return not self.errors

    @property
    def duration_s(self) -> float | None:
        """Total duration of the group in seconds, when valid."""
        value = self.request_durations.get("duration")
        return float(value) if value is not None else None

    @property
    def messages(self) -> list[str]:
        """The errors as ``path: message`` lines (see :func:`flatten_errors`)."""
        return flatten_errors(self.errors)


class CancelOutcome(_Remote):
    """What a cancel call achieved.

    Attributes:
        group: The group as the portal holds it after the call.
        canceled: True when the group is CANCELED now (by this call or an earlier one).
        message: The portal's refusal when the group had already finished (COMPLETED,
            WINDOW_EXPIRED or FAILURE_LIMIT_REACHED cannot be canceled), else None.
    """

    group: RequestGroup
    canceled: bool
    message: str | None = None


class RequestStatus(_Remote):
    """The state of one request as read by a batched status query.

    Attributes:
        request_id: Request id.
        group_id: Its request group id.
        group_name: Its request group name.
        state: The request's own state.
        group_state: The group's aggregate state.
        modified: When the request last changed at the portal.
    """

    request_id: int
    group_id: int
    group_name: str
    state: LcoState
    group_state: LcoState
    modified: UtcDatetime | None = None


class ObservationBlock(_Remote):
    """A scheduled block of a request (``GET /api/requests/{id}/observations/``)."""

    id: int
    state: str
    start: UtcDatetime | None = None
    end: UtcDatetime | None = None
    site: str | None = None
    enclosure: str | None = None
    telescope: str | None = None


class InstrumentType(_Remote):
    """One entry of ``GET /api/instruments/`` (keyed there by instrument type)."""

    type: str | None = None
    telescope_class: str = Field(alias="class")
    name: str | None = None
    optical_elements: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    modes: dict[str, Any] = Field(default_factory=dict)
    default_configuration_type: str | None = None
    configuration_types: dict[str, Any] = Field(default_factory=dict)
    camera_type: dict[str, Any] = Field(default_factory=dict)

    def schedulable_elements(self, kind: str = "filters") -> list[str]:
        """Codes of the schedulable optical elements of one kind (``filters``, ``slits``...)."""
        return [
            str(element["code"])
            for element in self.optical_elements.get(kind, [])
            if str(element.get("schedulable", True)).lower() == "true"
        ]


class ProfileProposal(_Remote):
    """A proposal the user belongs to."""

    id: str
    title: str = ""
    current: bool = True


class Profile(_Remote):
    """``GET /api/profile/``: the token owner and their proposals.

    Unknown fields are dropped here (not kept as elsewhere): the portal's profile carries the
    user's API tokens, which must not ride along in reprs, logs or artifacts.
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    username: str
    email: str | None = None
    is_staff: bool = False
    proposals: list[ProfileProposal] = Field(default_factory=list)
    available_instrument_types: list[str] = Field(default_factory=list)


# --------------------------------------------------------------------------------------------
# The shared HTTP layer
# --------------------------------------------------------------------------------------------


class _LcoHttp:
    """One ``httpx.Client`` with the error and retry policy both LCO clients share."""

    _service = "LCO"
    _default_base_url = ""
    _default_timeout = 30.0
    _strip_suffix = ""  # a path the caller may include in base_url, removed (the portal's /api)

    def __init__(
        self,
        token: str | SecretStr | None,
        *,
        base_url: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        transport: httpx.BaseTransport | None = None,
        max_retries: int = 3,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        max_retry_after_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        user_agent: str = _USER_AGENT,
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_retry_after_s = max_retry_after_s
        self._sleep = sleep
        root = (base_url or self._default_base_url).rstrip("/")
        if self._strip_suffix and root.endswith(self._strip_suffix):
            root = root[: -len(self._strip_suffix)]
        self._client_kwargs: dict[str, Any] = dict(
            base_url=root,
            auth=TokenAuth(token) if token else None,
            timeout=self._default_timeout if timeout is None else timeout,
            transport=transport,
            headers={"User-Agent": user_agent, "Accept": "application/json"},
            follow_redirects=True,
        )
        self._client = httpx.Client(**self._client_kwargs)

    def __getstate__(self) -> dict[str, Any]:
        """A copy for another process (a Dask worker): everything but the open connections."""
        state = self.__dict__.copy()
        del state["_client"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._client = httpx.Client(**self._client_kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={str(self._client.base_url)!r})"

    @property
    def base_url(self) -> str:
        """The service root this client talks to."""
        return str(self._client.base_url).rstrip("/")

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _backoff(self, attempt: int) -> float:
        return min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))

    def _request(
        self,
        method: str,
        url: str,
        *,
        operation: str,
        idempotent: bool,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        json_body: Any = None,
    ) -> httpx.Response:
        """Send one call with the retry policy, returning a 2xx/3xx response or raising.

        Retries (at most ``max_retries``, waits growing from ``backoff_s``):
            * 429: always (a throttled call was not processed), after Retry-After when it is at
              most ``max_retry_after_s``; otherwise ``ServiceUnavailable(retry_after=...)``.
            * connection failures before anything was sent: always.
            * timeouts, dropped connections and 5xx: only when ``idempotent``; for a
              non-idempotent call they raise :class:`UncertainOutcome` at once.

        Raises:
            UncertainOutcome: A non-idempotent call was sent and no clear answer came back.
            ServiceUnavailable: Retries ran out, or 429 asked for a longer wait.
            AuthenticationError: 401 or 403.
            NotFound: 404.
            RequestRejected: 400, 405, 409 or 422 (``body`` holds the parsed errors).
            ServiceError: Any other non-2xx answer.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._client.request(method, url, params=params, json=json_body)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                # Nothing reached the server: safe to send again, whatever the method.
                if attempt <= self.max_retries:
                    self._sleep(self._backoff(attempt))
                    continue
                raise ServiceUnavailable(
                    f"{operation}: cannot reach {self._service} at {_redact(url)}: {exc!r}",
                    operation=operation,
                    url=_redact(url),
                ) from exc
            except httpx.TransportError as exc:
                # The request went out (or may have): a timeout or a dropped connection.
                if not idempotent:
                    raise UncertainOutcome(
                        f"{operation}: no answer from {self._service} after sending "
                        f"{method} {_redact(url)} ({exc!r}); the request may have been acted on",
                        operation=operation,
                        url=_redact(url),
                    ) from exc
                if attempt <= self.max_retries:
                    self._sleep(self._backoff(attempt))
                    continue
                raise ServiceUnavailable(
                    f"{operation}: {self._service} did not answer {method} {_redact(url)} "
                    f"after {attempt} attempts: {exc!r}",
                    operation=operation,
                    url=_redact(url),
                ) from exc

            status = response.status_code
            if status < 400:
                return response
            retry_after = _retry_after(response)
            if status == 429:
                wait = retry_after if retry_after is not None else self._backoff(attempt)
                if attempt <= self.max_retries and wait <= self.max_retry_after_s:
                    self._sleep(wait)
                    continue
                raise self._error(response, operation, ServiceUnavailable, retry_after=retry_after)
            if status >= 500:
                if not idempotent:
                    raise self._error(
                        response, operation, UncertainOutcome, retry_after=retry_after
                    )
                if attempt <= self.max_retries:
                    self._sleep(
                        min(retry_after, self.max_retry_after_s)
                        if retry_after is not None
                        else self._backoff(attempt)
                    )
                    continue
                raise self._error(response, operation, ServiceUnavailable, retry_after=retry_after)
            raise self._error(response, operation)

    def _error(
        self,
        response: httpx.Response,
        operation: str,
        cls: type[ServiceError] | None = None,
        *,
        retry_after: float | None = None,
    ) -> ServiceError:
        """Translate a non-2xx response into the matching ``followup.exceptions`` class."""
        status = response.status_code
        if cls is None:
            if status in (401, 403):
                cls = AuthenticationError
            elif status == 404:
                cls = NotFound
            elif status in (400, 405, 409, 422):
                cls = RequestRejected
            elif status == 429 or status >= 500:
                cls = ServiceUnavailable
            else:
                cls = ServiceError
        body = _parse_body(response)
        lines = flatten_errors(body) if isinstance(body, dict | list) else [str(body)[:500]]
        detail = "; ".join(lines) if lines else response.reason_phrase
        url = _redact(response.request.url)
        message = f"{operation}: {status} from {response.request.method} {url}: {detail}"
        if cls is UncertainOutcome:
            message += " (the request may have been acted on: look it up before sending again)"
        extra: dict[str, Any] = {}
        if issubclass(cls, ServiceUnavailable):
            extra["retry_after"] = retry_after
        return cls(message, operation=operation, status_code=status, url=url, body=body, **extra)

    def _get_json(self, path: str, *, operation: str, params: Any = None) -> Any:
        return self._request(
            "GET", path, operation=operation, idempotent=True, params=params
        ).json()

    def _paginate(
        self, path: str, *, operation: str, params: Sequence[tuple[str, Any]]
    ) -> Iterator[dict[str, Any]]:
        """Yield every result of a DRF limit/offset listing, following ``next`` to the end."""
        page = self._get_json(path, operation=operation, params=list(params))
        seen: set[str] = set()
        for _ in range(_MAX_PAGES):
            yield from page.get("results", [])
            next_url = page.get("next")
            if not next_url:
                return
            if next_url in seen:
                raise ServiceError(
                    f"{operation}: the listing repeats its next page {next_url}",
                    operation=operation,
                    url=next_url,
                )
            seen.add(next_url)
            page = self._get_json(next_url, operation=operation)
        raise ServiceError(f"{operation}: more than {_MAX_PAGES} pages", operation=operation)


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _states(value: str | LcoState | Iterable[str | LcoState] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str | LcoState):
        value = [value]
    return [LcoState(item).value for item in value]


# --------------------------------------------------------------------------------------------
# Observation Portal
# --------------------------------------------------------------------------------------------


class PortalClient(_LcoHttp):
    """Client of the LCO Observation Portal API (``/api/...``).

    Error and retry policy (all calls go through one ``_request``):
        * 400/405/409/422 -> :class:`~followup.exceptions.RequestRejected`; ``body`` is the
          portal's parsed error body and the message carries its field messages flattened to
          ``requests[0].windows[0].end: Window end time must be in the future`` lines.
        * 401/403 -> :class:`~followup.exceptions.AuthenticationError`; 404 ->
          :class:`~followup.exceptions.NotFound`.
        * 429 -> waits for Retry-After (at most ``max_retry_after_s``) and tries again, for every
          call including submit (a throttled call was not processed); otherwise
          :class:`~followup.exceptions.ServiceUnavailable` with ``retry_after``.
        * timeouts, dropped connections and 5xx -> retried with exponential backoff for the
          idempotent calls (every GET, validate, cancel); for :meth:`submit_request_group` they
          raise :class:`~followup.exceptions.UncertainOutcome` at once, because the group may
          have been stored. The caller must then :meth:`find_request_group_by_name` before any
          new submission. Connection failures before anything was sent are retried for all.

    Args:
        token: Portal API token (``Authorization: Token``); None for anonymous reads.
        base_url: Portal root (default ``https://observe.lco.global``; a trailing ``/api`` is
            accepted and removed).
        timeout: Seconds (or an ``httpx.Timeout``) for each HTTP call; 30 by default.
        transport: An httpx transport to use instead of the network (tests, the sandbox).
        max_retries: Retries after the first attempt for retryable failures.
        backoff_s: First backoff wait in seconds; doubles each retry up to ``max_backoff_s``.
        max_backoff_s: Longest backoff wait in seconds.
        max_retry_after_s: Longest Retry-After (seconds) the client waits by itself.
        sleep: The function used to wait (tests pass a recorder).
        user_agent: The User-Agent header.
    """

    _service = "the LCO portal"
    _default_base_url = DEFAULT_PORTAL_URL
    _strip_suffix = "/api"

    # ---------------------------------------------------------------- request groups

    def validate_request_group(self, payload: Mapping[str, Any]) -> ValidationResult:
        """Ask the portal whether a group would be accepted, without storing it.

        ``POST /api/requestgroups/validate/``; the portal answers 200 either way.

        Returns:
            Durations when valid; the nested errors (see ``ValidationResult.messages``) when not.

        Raises:
            AuthenticationError: Bad or missing token.
            ServiceUnavailable: The portal stayed unavailable through the retries.
        """
        data = self._request(
            "POST",
            "/api/requestgroups/validate/",
            operation="validate_request_group",
            idempotent=True,
            json_body=dict(payload),
        ).json()
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
            ServiceUnavailable: Throttled beyond ``max_retry_after_s``, or unreachable.
        """
        data = self._request(
            "POST",
            "/api/requestgroups/",
            operation="submit_request_group",
            idempotent=False,
            json_body=dict(payload),
        ).json()
        return RequestGroup.model_validate(data)

    def get_request_group(self, group_id: int) -> RequestGroup:
        """Read one request group (``GET /api/requestgroups/{id}/``).

        Raises:
            NotFound: No such group, or not visible with this token.
            ServiceUnavailable: The portal stayed unavailable through the retries.
        """
        data = self._get_json(f"/api/requestgroups/{int(group_id)}/", operation="get_request_group")
        return RequestGroup.model_validate(data)

    def get_request(self, request_id: int) -> Request:
        """Read one request (``GET /api/requests/{id}/``).

        Raises:
            NotFound: No such request, or not visible with this token.
            ServiceUnavailable: The portal stayed unavailable through the retries.
        """
        data = self._get_json(f"/api/requests/{int(request_id)}/", operation="get_request")
        return Request.model_validate(data)

    def list_request_observations(
        self, request_id: int, *, exclude_canceled: bool = False
    ) -> list[ObservationBlock]:
        """Scheduled blocks of a request (``GET /api/requests/{id}/observations/``, a plain list).

        Raises:
            NotFound: No such request.
            ServiceUnavailable: The portal stayed unavailable through the retries.
        """
        params = {"exclude_canceled": "true"} if exclude_canceled else None
        data = self._get_json(
            f"/api/requests/{int(request_id)}/observations/",
            operation="list_request_observations",
            params=params,
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
            ServiceUnavailable: The portal stayed unavailable through the retries.
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
                params.append((key, _iso(value)))
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
            ServiceUnavailable: The portal stayed unavailable through the retries.
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
        caller records its real state (one extra GET). Retrying a cancel is safe, so timeouts
        and 5xx are retried.

        Raises:
            NotFound: No such group.
            AuthenticationError: Bad or missing token.
            ServiceUnavailable: The portal stayed unavailable through the retries.
        """
        path = f"/api/requestgroups/{int(group_id)}/cancel/"
        try:
            data = self._request(
                "POST", path, operation="cancel_request_group", idempotent=True
            ).json()
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
            ServiceUnavailable: The portal stayed unavailable through the retries.
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
            ServiceUnavailable: The portal stayed unavailable through the retries.
        """
        data = self._get_json("/api/instruments/", operation="get_instruments")
        return {key: InstrumentType.model_validate(value) for key, value in data.items()}

    def get_profile(self) -> Profile:
        """The token owner's profile and proposals (``GET /api/profile/``).

        Raises:
            AuthenticationError: Bad or missing token.
            ServiceUnavailable: The portal stayed unavailable through the retries.
        """
        return Profile.model_validate(self._get_json("/api/profile/", operation="get_profile"))

    def request_url(self, request_id: int) -> str:
        """Link to a request's page in the portal (for people, not the API)."""
        return f"{self.base_url}/requests/{int(request_id)}"


# --------------------------------------------------------------------------------------------
# Science Archive
# --------------------------------------------------------------------------------------------


def frame_from_record(record: Mapping[str, Any]) -> Frame:
    """Turn an archive frame record (``/frames/`` result) into a :class:`~followup.models.Frame`.

    The latest version (newest ``created``, the one the record's ``url`` serves) gives ``md5``
    and ``version_id``.

    Raises:
        KeyError: The record lacks ``id`` or ``basename``.
    """
    versions = list(record.get("version_set") or [])
    latest: Mapping[str, Any] | None = None
    if versions:
        latest = max(versions, key=lambda version: str(version.get("created") or ""))
    filename = record.get("filename")
    if not filename:
        extension = (latest or {}).get("extension", ".fits.fz")
        filename = f"{record['basename']}{extension}"
    url = record.get("url") or (latest or {}).get("url") or ""
    return Frame(
        frame_id=int(record["id"]),
        basename=str(record["basename"]),
        filename=str(filename),
        url=str(url),
        request_id=record.get("request_id", record.get("REQNUM")),
        reduction_level=int(record.get("reduction_level", record.get("RLEVEL", 0)) or 0),
        filter=record.get("primary_optical_element", record.get("FILTER")) or None,
        observation_date=record.get("observation_date", record.get("DATE_OBS")),
        exposure_time_s=record.get("exposure_time", record.get("EXPTIME")),
        configuration_type=record.get("configuration_type", record.get("OBSTYPE")),
        site_id=record.get("site_id", record.get("SITEID")),
        telescope_id=record.get("telescope_id", record.get("TELID")),
        instrument_id=record.get("instrument_id", record.get("INSTRUME")),
        md5=(latest or {}).get("md5"),
        version_id=(latest or {}).get("id"),
    )


CALIBRATION_TYPES = ("BIAS", "DARK", "SKYFLAT")
"""Archive configuration types of the calibration frames fetched beside raw science frames."""


class ArchiveClient(_LcoHttp):
    """Client of the LCO Science Archive (``/frames/``) with cached, resumable downloads.

    Uses the portal's API token (``Authorization: Token``). Downloads go to the record's signed
    ``url`` without the token (a signed URL must not carry a second credential); an expired URL
    (401/403) is refreshed once by re-reading the frame. The error and retry policy is
    :class:`PortalClient`'s; every archive call is idempotent.

    Args:
        token: Portal API token; None for public frames only.
        base_url: Archive API root (default ``https://archive-api.lco.global``).
        timeout: Seconds (or an ``httpx.Timeout``) for each HTTP call; 60 by default.
        transport: An httpx transport to use instead of the network.
        max_retries: Retries of retryable failures (and resumes of a broken download).
        backoff_s: First backoff wait in seconds.
        max_backoff_s: Longest backoff wait in seconds.
        max_retry_after_s: Longest Retry-After (seconds) the client waits by itself.
        sleep: The function used to wait.
        user_agent: The User-Agent header.
    """

    _service = "the LCO archive"
    _default_base_url = DEFAULT_ARCHIVE_URL
    _default_timeout = 60.0

    def list_frame_records(self, **filters: Any) -> list[dict[str, Any]]:
        """Raw frame records for any archive filters (``GET /frames/?...``), every page followed.

        Args:
            **filters: Archive query parameters (``request_id``, ``reduction_level``,
                ``instrument_id``, ``dayobs``, ``include_configuration_type`` (a list)...);
                None values are left out. ``limit`` defaults to 1000, the archive's maximum.

        Raises:
            ServiceUnavailable: The archive stayed unavailable through the retries.
        """
        params: list[tuple[str, Any]] = []
        filters.setdefault("limit", 1000)
        for key, value in filters.items():
            if value is None:
                continue
            if isinstance(value, list | tuple | set):
                params += [(key, item) for item in value]
            elif isinstance(value, date | datetime):
                params.append((key, value.isoformat()))
            else:
                params.append((key, value))
        return list(self._paginate("/frames/", operation="list_frames", params=params))

    def list_frames(
        self,
        request_id: int | None = None,
        *,
        reduction_level: int | None = 91,
        configuration_types: Sequence[str] | None = None,
        instrument_id: str | None = None,
        dayobs: date | None = None,
    ) -> list[Frame]:
        """Frames of a request at one reduction level, every page followed.

        Args:
            request_id: LCO request id; None to list by the other filters alone.
            reduction_level: 91 for BANZAI-reduced, 0 for raw, None for all.
            configuration_types: Keep only these (``EXPOSE``, ``BIAS``, ``DARK``, ``SKYFLAT``).
            instrument_id: Instrument id, e.g. ``fa16``.
            dayobs: Observing night (the archive's ``observation_day``).

        Returns:
            The frames, newest observation first.

        Raises:
            ServiceUnavailable: The archive stayed unavailable through the retries.
        """
        records = self.list_frame_records(
            request_id=request_id,
            reduction_level=reduction_level,
            include_configuration_type=list(configuration_types) if configuration_types else None,
            instrument_id=instrument_id,
            dayobs=dayobs,
        )
        return [frame_from_record(record) for record in records]

    def get_frame(self, frame_id: int) -> Frame:
        """One frame (``GET /frames/{id}/``), with a freshly signed download URL.

        Raises:
            NotFound: No such frame, or not visible with this token.
            ServiceUnavailable: The archive stayed unavailable through the retries.
        """
        return frame_from_record(self._get_json(f"/frames/{int(frame_id)}/", operation="get_frame"))

    def get_frame_headers(self, frame_id: int) -> dict[str, Any]:
        """The FITS header of a frame as the archive indexed it (``GET /frames/{id}/headers/``).

        Raises:
            NotFound: No such frame.
            ServiceUnavailable: The archive stayed unavailable through the retries.
        """
        data = self._get_json(f"/frames/{int(frame_id)}/headers/", operation="get_frame_headers")
        return dict(data.get("data", {}))

    def frames_for_request(self, request_id: int) -> list[Frame]:
        """The frames to reduce for a request: BANZAI-reduced if any, else raw plus calibrations.

        Calls: one listing at level 91; when it is empty, one at level 0 for the request and one
        per (instrument, night) of its raw frames for that night's BIAS, DARK and SKYFLAT frames.

        Returns:
            Level-91 science frames; or level-0 science frames followed by the calibration
            frames of the same instruments and nights (each frame once).

        Raises:
            ServiceUnavailable: The archive stayed unavailable through the retries.
        """
        reduced = self.list_frames(request_id, reduction_level=91)
        if reduced:
            return reduced
        raw_records = self.list_frame_records(request_id=request_id, reduction_level=0)
        frames = [frame_from_record(record) for record in raw_records]
        nights = sorted(
            {
                (str(record.get("instrument_id")), str(record.get("observation_day")))
                for record in raw_records
                if record.get("instrument_id") and record.get("observation_day")
            }
        )
        seen = {frame.frame_id for frame in frames}
        for instrument_id, night in nights:
            for record in self.list_frame_records(
                reduction_level=0,
                instrument_id=instrument_id,
                dayobs=night,
                include_configuration_type=list(CALIBRATION_TYPES),
            ):
                calibration = frame_from_record(record)
                if calibration.frame_id not in seen:
                    seen.add(calibration.frame_id)
                    frames.append(calibration)
        return frames

    @staticmethod
    def cache_path(frame: Frame, dest_dir: str | Path) -> Path:
        """Where :meth:`download_frame` keeps a frame: ``dest_dir/<basename>/<version>/<filename>``.

        The version is the archive's version id (else the md5, else ``latest``), so a
        reprocessed frame lands beside the old one instead of being mistaken for it.
        """
        version = (
            f"v{frame.version_id}" if frame.version_id is not None else (frame.md5 or "latest")
        )
        return Path(dest_dir) / frame.basename / version / frame.filename

    def download_frame(self, frame: Frame, dest_dir: str | Path) -> Path:
        """Download a frame to the local cache, resuming broken transfers; a cache hit is free.

        The file is written to ``<path>.part`` and only moved to its cache path after its size
        (from Content-Length/Content-Range) and md5 (from the archive's version) check out, so
        a file at the cache path is always complete. A broken transfer resumes with an HTTP
        Range request from the bytes already on disk (at most ``max_retries`` times).

        Args:
            frame: The frame (from :meth:`list_frames` or :meth:`get_frame`).
            dest_dir: Root of the cache.

        Returns:
            The path of the complete file.

        Raises:
            ChecksumMismatch: The file did not match its md5 (the partial file is deleted).
            ServiceUnavailable: The transfer kept failing.
            AuthenticationError: The URL stayed refused after refreshing it.
            NotFound: The file is gone.
        """
        path = self.cache_path(frame, dest_dir)
        if path.is_file():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part")
        url = frame.url
        refreshed = False
        failures = 0
        while True:
            try:
                total = self._transfer(url, part, operation="download_frame")
            except _ExpiredUrl:
                if refreshed:
                    raise
                url = self.get_frame(frame.frame_id).url
                refreshed = True
                continue
            except ServiceUnavailable as exc:
                failures += 1
                if failures > self.max_retries:
                    raise
                self._sleep(exc.retry_after or self._backoff(failures))
                continue
            size = part.stat().st_size
            if total is not None and size < total:
                failures += 1
                if failures > self.max_retries:
                    raise ServiceUnavailable(
                        f"download_frame: {frame.filename} stopped at {size} of {total} bytes",
                        operation="download_frame",
                        url=_redact(url),
                    )
                continue
            break
        if total is not None and size > total:
            part.unlink()
            raise ChecksumMismatch(
                f"download_frame: {frame.filename} has {size} bytes, the archive announced {total}",
                operation="download_frame",
                url=_redact(url),
            )
        if frame.md5:
            digest = _md5_of(part)
            if digest != frame.md5.lower():
                part.unlink()
                raise ChecksumMismatch(
                    f"download_frame: md5 of {frame.filename} is {digest}, "
                    f"the archive says {frame.md5}",
                    operation="download_frame",
                    url=_redact(url),
                )
        part.replace(path)
        return path

    def _transfer(self, url: str, part: Path, *, operation: str) -> int | None:
        """One GET of ``url`` into ``part`` (appending from its current size with Range).

        Returns:
            The full size of the file in bytes, when the server said it.

        Raises:
            _ExpiredUrl: 401/403 on the signed URL.
            ServiceUnavailable: A dropped transfer, timeout, 429 or 5xx (bytes received so far
                stay in ``part`` for the next attempt).
            ServiceError: Any other refusal.
        """
        offset = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            with self._client.stream("GET", url, headers=headers, auth=None) as response:
                status = response.status_code
                if status in (401, 403):
                    response.read()
                    raise _ExpiredUrl(self._error(response, operation, AuthenticationError))
                if status == 416 and offset:
                    # Asked past the end: what we have may be the whole file; check its size.
                    total = _content_range_total(response.headers.get("Content-Range"))
                    if total is not None and total <= offset:
                        return total
                    part.unlink()
                    raise ServiceUnavailable(
                        f"{operation}: the archive refused to resume at byte {offset}",
                        operation=operation,
                        url=_redact(url),
                    )
                if status >= 400:
                    response.read()
                    raise self._error(response, operation, retry_after=_retry_after(response))
                if status == 206:
                    start, total = _content_range(response.headers.get("Content-Range"))
                    if start != offset:
                        raise ServiceUnavailable(
                            f"{operation}: asked for byte {offset}, the archive sent from {start}",
                            operation=operation,
                            url=_redact(url),
                        )
                    mode = "ab"
                else:
                    length = response.headers.get("Content-Length")
                    total = int(length) if length is not None else None
                    mode = "wb"
                with part.open(mode) as handle:
                    # Chunks as they arrive: a re-chunking buffer would lose the tail of a
                    # broken transfer.
                    for chunk in response.iter_bytes():
                        handle.write(chunk)
                return total
        except httpx.TransportError as exc:
            raise ServiceUnavailable(
                f"{operation}: transfer from {_redact(url)} broke after "
                f"{part.stat().st_size if part.exists() else 0} bytes: {exc!r}",
                operation=operation,
                url=_redact(url),
            ) from exc


class _ExpiredUrl(AuthenticationError):
    """The signed download URL was refused (expired): re-read the frame for a new one."""

    def __init__(self, error: ServiceError) -> None:
        super().__init__(
            str(error),
            operation=error.operation,
            status_code=error.status_code,
            url=error.url,
            body=error.body,
        )


def _content_range(value: str | None) -> tuple[int, int | None]:
    """``bytes START-END/TOTAL`` -> (START, TOTAL or None)."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if not match:
        return -1, None
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), total


def _content_range_total(value: str | None) -> int | None:
    match = re.fullmatch(r"\s*bytes\s+[\d*-]+/(\d+)\s*", value or "")
    return int(match.group(1)) if match else None


def _md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Payloads from data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstrumentSpec:
    """What the payload builder needs to know about one LCO instrument type.

    Attributes:
        instrument_type: Portal instrument type code.
        telescope_class: ``0m4``, ``1m0`` or ``2m0`` (the request's ``location``).
        readout_mode: Default readout ``mode`` of each instrument config.
        element: Optical element kind strategies choose (``filter`` or ``slit``); for MuSCAT,
            ``channels`` (all four channels expose at once).
        elements: Schedulable element codes (filters, slits, or MuSCAT channel filters).
        configuration_type: Configuration type of a science exposure.
        acquisition_mode: Acquisition mode.
        guiding_mode: Guiding mode (``optional`` is always true).
        rotator_mode: Rotator mode for spectrographs, else None.
        readout_s: Readout overhead per exposure in seconds (for estimates only).
        front_padding_s: Overhead per request in seconds (slew, settle; estimates only).
        element_change_s: Overhead per instrument config in seconds (estimates only).
    """

    instrument_type: str
    telescope_class: str
    readout_mode: str
    element: str
    elements: tuple[str, ...]
    configuration_type: str = "EXPOSE"
    acquisition_mode: str = "OFF"
    guiding_mode: str = "ON"
    rotator_mode: str | None = None
    readout_s: float = 0.0
    front_padding_s: float = 90.0
    element_change_s: float = 2.0
    channel_filters: Mapping[str, str] = field(default_factory=dict)


INSTRUMENTS: dict[str, InstrumentSpec] = {
    spec.instrument_type: spec
    for spec in (
        InstrumentSpec(
            instrument_type="0M4-SCICAM-QHY600",
            telescope_class="0m4",
            readout_mode="full_frame",
            element="filter",
            elements=("B", "V", "up", "gp", "rp", "ip", "zs", "w", "OIII", "SII", "H-Alpha"),
            readout_s=6.0,
        ),
        InstrumentSpec(
            instrument_type="1M0-SCICAM-SINISTRO",
            telescope_class="1m0",
            readout_mode="full_frame",
            element="filter",
            elements=("U", "B", "V", "R", "I", "up", "gp", "rp", "ip", "zs", "Y", "w"),
            readout_s=28.0,
            front_padding_s=120.0,
        ),
        InstrumentSpec(
            instrument_type="2M0-SCICAM-MUSCAT",
            telescope_class="2m0",
            readout_mode="MUSCAT_SLOW",
            element="channels",
            elements=("gp", "rp", "ip", "zs"),
            readout_s=10.0,
            front_padding_s=120.0,
            channel_filters={"g": "gp", "r": "rp", "i": "ip", "z": "zs"},
        ),
        InstrumentSpec(
            instrument_type="2M0-FLOYDS-SCICAM",
            telescope_class="2m0",
            readout_mode="default",
            element="slit",
            elements=("slit_1.2as", "slit_1.6as", "slit_2.0as", "slit_6.0as"),
            configuration_type="SPECTRUM",
            acquisition_mode="WCS",
            rotator_mode="VFLOAT",
            readout_s=25.0,
            front_padding_s=300.0,
        ),
    )
}
"""The instrument types the builder knows (from the live configdb, apis.md 1.7)."""


def _spec_for(instrument_type: str) -> InstrumentSpec:
    try:
        return INSTRUMENTS[instrument_type.upper()]
    except KeyError:
        raise ValueError(
            f"unknown instrument type {instrument_type!r}; expected one of {sorted(INSTRUMENTS)}"
        ) from None


def _exposure_time(strategy: ObservingStrategy, element: str) -> float:
    return float(strategy.exposure_time_per_filter_s.get(element, strategy.exposure_time_s))


def _instrument_configs(strategy: ObservingStrategy, spec: InstrumentSpec) -> list[dict[str, Any]]:
    unknown = [name for name in strategy.filters if name not in spec.elements]
    if unknown:
        raise ValueError(
            f"{spec.instrument_type} has no {spec.element} {unknown}; "
            f"expected some of {list(spec.elements)}"
        )
    if spec.element == "channels":
        # MuSCAT exposes g, r, i and z at once: one instrument config, per-channel times.
        times = {
            channel: _exposure_time(strategy, code)
            for channel, code in spec.channel_filters.items()
        }
        synchronous = len(set(times.values())) == 1
        extra = {
            "exposure_mode": "SYNCHRONOUS" if synchronous else "ASYNCHRONOUS",
            **{f"exposure_time_{channel}": value for channel, value in times.items()},
        }
        config: dict[str, Any] = {
            "exposure_time": max(times.values()),
            "exposure_count": strategy.exposure_count,
            "mode": spec.readout_mode,
            "optical_elements": {
                f"narrowband_{channel}_position": "out" for channel in spec.channel_filters
            },
            "extra_params": extra,
        }
        return [config]
    configs = []
    for element in strategy.filters:
        config = {
            "exposure_time": _exposure_time(strategy, element),
            "exposure_count": strategy.exposure_count,
            "mode": spec.readout_mode,
            "optical_elements": {spec.element: element},
            "extra_params": {},
        }
        if spec.rotator_mode:
            config["rotator_mode"] = spec.rotator_mode
        configs.append(config)
    return configs


def estimate_request_duration_s(strategy: ObservingStrategy) -> float:
    """Rough duration of one epoch's request in seconds, from the instrument table.

    Exposure time plus readout per exposure, a small overhead per filter and the request's
    front padding. The portal's validate answer is authoritative; this is for planning and for
    approval rules before anything is sent.

    Raises:
        ValueError: Unknown instrument type or filter.
    """
    spec = _spec_for(strategy.instrument_type)
    total = spec.front_padding_s
    for config in _instrument_configs(strategy, spec):
        total += config["exposure_count"] * (config["exposure_time"] + spec.readout_s)
        total += spec.element_change_s
    return total


def epoch_windows(strategy: ObservingStrategy, start: datetime) -> list[tuple[datetime, datetime]]:
    """The observing window of each epoch of a strategy's cadence.

    Epoch ``k`` opens at ``start + k * cadence_hours`` and lasts ``window_hours``.

    Returns:
        ``[(window_start, window_end), ...]``, one per epoch, aware UTC.
    """
    first = start if start.tzinfo else start.replace(tzinfo=UTC)
    first = first.astimezone(UTC)
    return [
        (
            first + timedelta(hours=k * strategy.cadence_hours),
            first + timedelta(hours=k * strategy.cadence_hours + strategy.window_hours),
        )
        for k in range(strategy.epochs)
    ]


def build_request_group(
    target: Target,
    strategy: ObservingStrategy,
    *,
    proposal: str,
    group_name: str,
    window_start: datetime,
    window_end: datetime,
    site: str | None = None,
    observation_note: str = "",
    max_lunar_phase: float = 1.0,
) -> dict[str, Any]:
    """The portal's RequestGroup JSON for one target and one epoch of a strategy.

    One function driven by :data:`INSTRUMENTS`: imagers get one instrument config per filter
    (each with its exposure time, ``exposure_time_per_filter_s`` overriding
    ``exposure_time_s``); MuSCAT gets one instrument config whose ``extra_params`` carry the
    per-channel times (``exposure_time_g`` ...); FLOYDS gets a SPECTRUM configuration with
    its slit and rotator mode. The group is SINGLE with one request and one window.

    Args:
        target: What to observe (ICRS ra/dec in degrees).
        strategy: Instrument, filters, exposures, constraints, ipp and observation type.
        proposal: LCO proposal id.
        group_name: The group name (see :func:`make_group_name`), at most 50 characters.
        window_start: Window start (naive is read as UTC).
        window_end: Window end, after the start.
        site: Pin the request to one site (``coj``, ``cpt``...), else any site of the class.
        observation_note: Free text stored with the request.
        max_lunar_phase: Moon illumination limit, 0 to 1.

    Returns:
        A JSON-able dict for :meth:`PortalClient.validate_request_group` and
        :meth:`PortalClient.submit_request_group`.

    Raises:
        ValueError: Unknown instrument or filter, a name over 50 characters or unsafe, or a
            window that ends before it starts.
    """
    spec = _spec_for(strategy.instrument_type)
    if not group_name or len(group_name) > 50:
        raise ValueError(f"group_name must have 1 to 50 characters, got {len(group_name)}")
    start = window_start if window_start.tzinfo else window_start.replace(tzinfo=UTC)
    end = window_end if window_end.tzinfo else window_end.replace(tzinfo=UTC)
    if end <= start:
        raise ValueError(
            f"window_end {end.isoformat()} is not after window_start {start.isoformat()}"
        )
    location: dict[str, Any] = {"telescope_class": spec.telescope_class}
    if site:
        location["site"] = site
    configuration = {
        "type": spec.configuration_type,
        "instrument_type": spec.instrument_type,
        "extra_params": {},
        "target": {
            "name": target.name,
            "type": "ICRS",
            "ra": target.ra,
            "dec": target.dec,
            "proper_motion_ra": 0.0,
            "proper_motion_dec": 0.0,
            "epoch": 2000.0,
            "parallax": 0.0,
            "extra_params": {},
        },
        "constraints": {
            "max_airmass": strategy.max_airmass,
            "min_lunar_distance": strategy.min_lunar_distance_deg,
            "max_lunar_phase": max_lunar_phase,
            "extra_params": {},
        },
        "instrument_configs": _instrument_configs(strategy, spec),
        "acquisition_config": {"mode": spec.acquisition_mode, "extra_params": {}},
        "guiding_config": {"mode": spec.guiding_mode, "optional": True, "extra_params": {}},
    }
    return {
        "name": group_name,
        "proposal": proposal,
        "ipp_value": strategy.ipp_value,
        "operator": "SINGLE",
        "observation_type": strategy.observation_type.value,
        "requests": [
            {
                "acceptability_threshold": 90,
                "configuration_repeats": 1,
                "optimization_type": "TIME",
                "observation_note": observation_note[:255],
                "extra_params": {},
                "location": location,
                "windows": [{"start": _iso(start), "end": _iso(end)}],
                "configurations": [configuration],
            }
        ],
    }


_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")


def make_group_name(
    event_id: str,
    target_name: str,
    *,
    epoch: int = 0,
    filters: Sequence[str] = (),
    plan: str = "",
    max_length: int = 50,
) -> str:
    """The deterministic request-group name of one (event, target, filters, epoch, plan).

    ``<event>_<target>_e<epoch>_<hash>``: the readable part is the event id, target name and
    epoch with every character outside ``A-Z a-z 0-9 . -`` replaced by ``-`` (shortened when
    needed), and ``<hash>`` is 10 hex digits of the SHA-256 of all inputs, so two different
    inputs never share a name in practice, and the same inputs always give the same name (the
    key of exactly-once submission). Names of one event all start with its sanitised id and
    ``_``, which batched status queries can filter on.

    Args:
        event_id: The event (superevent id, GRB trigger...).
        target_name: The target.
        epoch: 0-based epoch of the cadence.
        filters: Filters of the request, in order.
        plan: Anything else that distinguishes requests (strategy name, plan version).
        max_length: The portal's limit is 50.

    Returns:
        A name of at most ``max_length`` characters.

    Raises:
        ValueError: Empty event id or target name, negative epoch, or ``max_length`` < 24.
    """
    if not event_id or not target_name:
        raise ValueError("make_group_name needs an event id and a target name")
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    if max_length < 24:
        raise ValueError(f"max_length must be >= 24, got {max_length}")
    key = json.dumps([event_id, target_name, int(epoch), list(filters), plan])
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    prefix = group_name_prefix(event_id)
    target = _UNSAFE.sub("-", target_name).strip("-") or "target"
    tail = f"_e{int(epoch)}_{digest}"
    readable = f"{prefix}{target}"[: max(len(prefix) + 1, max_length - len(tail))]
    return f"{readable}{tail}"


def group_name_prefix(event_id: str) -> str:
    """The prefix every :func:`make_group_name` name of this event starts with.

    The sanitised event id (at most 20 characters) and ``_``; pass it as ``name`` to
    :meth:`PortalClient.get_request_states` to poll one event's groups.
    """
    return f"{(_UNSAFE.sub('-', event_id).strip('-') or 'event')[:20]}_"
