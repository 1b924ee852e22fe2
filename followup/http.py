"""The one HTTP layer of every service client: LCO portal and archive, HERMES, TNS and GCN.

Each client is a :class:`ServiceClient`: one :class:`httpx.Client` with a ``base_url``, a timeout,
``User-Agent: followup/<version>``, an injectable ``transport`` (tests pass
:class:`httpx.MockTransport`) and its credential as an :class:`httpx.Auth` scheme. Every call goes
through :meth:`ServiceClient._request`, which turns a transport failure or a non-2xx answer into the
:mod:`followup.exceptions` tree with one table. Clients never retry: the Prefect task that calls
them does (``tasks/retry.py``), where the UI shows each attempt.

A *read* is any call that a resend cannot duplicate (every GET, validate, cancel, search); a
*creating* call (``creates=True``) makes something a resend would make twice (submit a request
group, publish a message, send a report, submit a Circular).

=============================================  ===================  ===================
Failure (and why)                              read                 creating call
=============================================  ===================  ===================
connect error or timeout, pool timeout, proxy  ServiceUnavailable   ServiceUnavailable
error: nothing reached the service
write error or timeout: the request did not    ServiceUnavailable   ServiceUnavailable
get out whole, and nothing acts on half of one
read timeout, read error, dropped connection,  ServiceUnavailable   UncertainOutcome
undecodable answer: sent, the answer was lost
unsupported protocol, local protocol error,    ServiceError         ServiceError
too many redirects: the request is wrong
any other httpx error: unknown whether sent    ServiceUnavailable   UncertainOutcome
401, 403: credentials                          AuthenticationError  AuthenticationError
404, 410: no such object (or gone for good)    NotFound             NotFound
408: the server stopped waiting for the        ServiceUnavailable   ServiceUnavailable
request
429: throttled before processing               ServiceUnavailable   ServiceUnavailable
503: refused for now (overload, maintenance)   ServiceUnavailable   ServiceUnavailable
other 4xx (400, 405, 409, 413, 422...): the    RequestRejected      RequestRejected
content was refused
other 5xx (500, 502, 504...): failed while     ServiceUnavailable   UncertainOutcome
handling it; a gateway timeout can follow a
stored request
1xx, or a 3xx not followed: unexpected         ServiceError         ServiceError
=============================================  ===================  ===================

:class:`~followup.exceptions.ServiceUnavailable` from an answer carries ``retry_after`` from
``Retry-After`` (seconds or an HTTP date) or TNS's ``x-rate-limit-reset``. Messages name the
service, the operation, the method, the URL and the service's text (a DRF error body flattened to
``path: message`` lines); every secret the client knows is scrubbed from messages and bodies (as
it is, URL-encoded and JSON-escaped, and from the transport error chained as the cause, so no
traceback shows it), and signed download URLs lose their query (the signature).

Answers are not trusted either. Whatever a service answers, a client call returns its model or
raises one of these classes: an answer that cannot be read into the call's model (a field missing,
a value of the wrong kind) is a :class:`ServiceUnavailable` for a read and an
:class:`UncertainOutcome` after a creating call succeeded (it may have stored something), whichever
client method met it (:meth:`ServiceClient.__init_subclass__` guards every public method). A body
is read up to ``max_response_bytes`` (inflated, so a gzip bomb stops there), a listing follows ``next`` only on the origin it started from (the token goes
with every page), and a client pickled for another process (a Dask worker) carries no secret: it
rebuilds its credential there from its ``credential_source`` (a Block look-up), or has none.
"""

from __future__ import annotations

import email.utils
import functools
import inspect
import json
import logging
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, ClassVar, NamedTuple, Self
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

import httpx
from pydantic import SecretStr, ValidationError

from followup import __version__
from followup.exceptions import (
    AuthenticationError,
    NotFound,
    RequestRejected,
    ServiceError,
    ServiceUnavailable,
    UncertainOutcome,
)

__all__ = [
    "MAX_RESPONSE_BYTES",
    "OTHER_4XX",
    "OTHER_5XX",
    "STATUS_RULES",
    "TRANSPORT_RULES",
    "UNEXPECTED",
    "USER_AGENT",
    "BearerAuth",
    "CredentialSource",
    "Rule",
    "ServiceClient",
    "TokenAuth",
    "client_settings",
    "flatten_errors",
    "parse_retry_after",
    "required_secret",
    "response_body",
    "status_rule",
    "tls_context",
    "transport_rule",
]

logger = logging.getLogger(__name__)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process's one verifying TLS context, built as httpx builds its default.

    httpx and Prefect's client each build a new context per client, and loading the CA bundle
    into it costs about 40 ms of CPU here: a loop that polls with a new client each time spent a
    third of its CPU on it. A context holds no connection state, so every client can share one.
    """
    return httpx.create_ssl_context()


def client_settings() -> dict[str, Any]:
    """Httpx settings that share :func:`tls_context` (e.g. Prefect's ``httpx_settings``)."""
    return {"verify": tls_context()}


USER_AGENT = f"followup/{__version__}"
_REDACTED = "***"
_MAX_TEXT = 2000
_MAX_PAGES = 10_000  # a guard against a listing whose ``next`` never ends
MAX_RESPONSE_BYTES = 64 * 2**20
"""Largest answer body read, once decoded (a listing of 1,000 request groups is about 5 MB)."""
_LOOK_UP = "; the service may have acted on it: look it up before sending again"


# ------------------------------------------------------------------------------- the table
class Rule(NamedTuple):
    """One row of the error table: the class a read and a creating call raise, and why."""

    read: type[ServiceError]
    create: type[ServiceError]
    meaning: str

    def error_class(self, *, creates: bool) -> type[ServiceError]:
        """The class for this kind of call."""
        return self.create if creates else self.read


_AUTH = Rule(AuthenticationError, AuthenticationError, "credentials missing, wrong or not allowed")
_GONE = Rule(NotFound, NotFound, "no such object")

STATUS_RULES: Mapping[int, Rule] = {
    401: _AUTH,
    403: _AUTH,
    404: _GONE,
    410: _GONE,
    408: Rule(ServiceUnavailable, ServiceUnavailable, "the server stopped waiting for the request"),
    429: Rule(ServiceUnavailable, ServiceUnavailable, "throttled before processing"),
    503: Rule(ServiceUnavailable, ServiceUnavailable, "refused for now (overload, maintenance)"),
}
"""Status codes with a rule of their own; the rest fall in :data:`OTHER_4XX`, :data:`OTHER_5XX` or
:data:`UNEXPECTED` (see :func:`status_rule`)."""

OTHER_4XX = Rule(RequestRejected, RequestRejected, "the content was refused")
OTHER_5XX = Rule(
    ServiceUnavailable, UncertainOutcome, "the service failed while handling the request"
)
UNEXPECTED = Rule(ServiceError, ServiceError, "an answer the client does not expect")

TRANSPORT_RULES: tuple[tuple[tuple[type[Exception], ...], Rule], ...] = (
    (
        (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError),
        Rule(ServiceUnavailable, ServiceUnavailable, "could not connect"),
    ),
    (
        (httpx.WriteError, httpx.WriteTimeout),
        Rule(ServiceUnavailable, ServiceUnavailable, "the request did not get out whole"),
    ),
    (
        (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError, httpx.DecodingError),
        Rule(ServiceUnavailable, UncertainOutcome, "request sent but no answer"),
    ),
    (
        (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.TooManyRedirects),
        Rule(ServiceError, ServiceError, "the request cannot be sent as it is"),
    ),
    (
        (httpx.RequestError,),
        Rule(ServiceUnavailable, UncertainOutcome, "transport failure"),
    ),
)
"""Transport failures, first match wins."""


def status_rule(status: int) -> Rule:
    """The table row of an HTTP status code (the caller only asks for non-2xx ones)."""
    if status in STATUS_RULES:
        return STATUS_RULES[status]
    if 400 <= status < 500:
        return OTHER_4XX
    if status >= 500:
        return OTHER_5XX
    return UNEXPECTED


def transport_rule(error: Exception) -> Rule:
    """The table row of an httpx exception raised while sending or reading."""
    for classes, rule in TRANSPORT_RULES:
        if isinstance(error, classes):
            return rule
    raise TypeError(f"not an httpx request error: {type(error).__name__}")


# ------------------------------------------------------------------------------- helpers
def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait before retrying, from ``Retry-After`` or TNS's ``x-rate-limit-reset``.

    Args:
        headers: Response headers (a case-insensitive mapping such as :class:`httpx.Headers`).

    Returns:
        Seconds (>= 0), or None when no such header is present or readable.
    """
    for name in ("retry-after", "x-rate-limit-reset", "x-cone-rate-limit-reset"):
        value = headers.get(name)
        if value is None:
            continue
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    return None


def response_body(response: httpx.Response) -> Any:
    """The parsed JSON body of a response, else its text (at most 2,000 characters)."""
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        return response.text[:_MAX_TEXT]


def flatten_errors(errors: Any, prefix: str = "") -> list[str]:
    """Flatten a Django REST Framework error body (LCO, HERMES) into readable lines.

    DRF mirrors the payload: nested dicts for objects, lists with one entry per item (``{}`` for
    valid items) and lists of strings for the messages of one field. Group-level problems sit
    under ``non_field_errors`` (also ``detail`` and ``errors``), which is dropped from the path.

    Args:
        errors: The parsed error body (dict, list or string).
        prefix: Path of ``errors`` inside the payload (used by the recursion).

    Returns:
        One ``"path: message"`` line per message; a message with no path stands alone.

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


def _without_signature(url: httpx.URL | str) -> str:
    """A URL fit for messages: a signed download URL loses its query (the signature)."""
    parts = urlsplit(str(url))
    query = parts.query.lower()
    if "signature" in query or "x-amz" in query:
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return str(url)


def _redactions(secret: str) -> list[str]:
    """The forms a secret takes in text: as it is, URL-encoded (both hex cases), JSON-escaped."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret), quote(secret)}
    forms |= {form.replace(code, code.lower()) for form in forms for code in _percent_codes(form)}
    forms.add(json.dumps(secret)[1:-1])
    forms.add(json.dumps(secret)[1:-1].replace("/", "\\/"))
    return sorted(forms, key=len, reverse=True)


def _percent_codes(text: str) -> set[str]:
    return {text[i : i + 3] for i in range(len(text) - 2) if text[i] == "%"}


_EXCHANGES: ContextVar[tuple[int, int]] = ContextVar("followup_http_exchanges", default=(0, 0))
"""Answers received and creating calls answered 2xx so far in this thread (see _guarded)."""

_UNREADABLE = (
    ValidationError,
    KeyError,
    IndexError,
    TypeError,
    ValueError,
    AttributeError,
    OverflowError,
)
"""What reading an unexpected answer into a model raises."""


def _guarded(method: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``method``, with an answer it cannot read turned into a :class:`ServiceError`.

    Only an exception raised after an answer arrived in this call is translated (an argument
    refused on entry stays what it is): :class:`UncertainOutcome` when a creating call of this
    method had succeeded (the service may have stored something), else
    :class:`ServiceUnavailable`.
    """

    @functools.wraps(method)
    def guarded(self: ServiceClient, *args: Any, **kwargs: Any) -> Any:
        answers, created = _EXCHANGES.get()
        try:
            return method(self, *args, **kwargs)
        except ServiceError:
            raise
        except _UNREADABLE as exc:
            now_answers, now_created = _EXCHANGES.get()
            if now_answers == answers:
                raise
            cls = UncertainOutcome if now_created > created else ServiceUnavailable
            detail = self._scrub(str(exc).splitlines()[0] if str(exc) else "")[:300]
            # Not chained: the cause quotes the answer, which may hold anything.
            raise self._error(
                cls,
                f"{self.service} {name}: the answer could not be read "
                f"({type(exc).__name__}: {detail})",
                operation=name,
                url="",
            ) from None

    return guarded


CredentialSource = Callable[[], "SecretStr | str | None"]
"""A picklable callable that returns a client's credential where it is called (a Block look-up on
a Dask worker); what is pickled is the callable, never the credential."""


# ------------------------------------------------------------------------------- auth
def required_secret(value: SecretStr | str, what: str) -> SecretStr:
    """A client's credential as a :class:`~pydantic.SecretStr`, refused when empty.

    Args:
        value: The credential, plain or already wrapped.
        what: What it is, for the error (``"a HERMES API token"``).

    Raises:
        ValueError: The credential is empty.
    """
    secret = value if isinstance(value, SecretStr) else SecretStr(value)
    if not secret.get_secret_value():
        raise ValueError(f"{what} is required")
    return secret


class TokenAuth(httpx.Auth):
    """``Authorization: Token <key>``: DRF token authentication (LCO portal and archive, HERMES).

    The key is held as a :class:`pydantic.SecretStr` and never appears in a repr.

    Args:
        token: The API token.
    """

    scheme: ClassVar[str] = "Token"

    def __init__(self, token: str | SecretStr) -> None:
        self._token = token if isinstance(token, SecretStr) else SecretStr(token)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(token=SecretStr('**********'))"

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        """Add the ``Authorization`` header to a request."""
        request.headers["Authorization"] = f"{self.scheme} {self._token.get_secret_value()}"
        yield request


class BearerAuth(TokenAuth):
    """``Authorization: Bearer <access token>`` (GCN's OIDC access tokens)."""

    scheme: ClassVar[str] = "Bearer"


class _CredentialOnFirstUse(httpx.Auth):
    """Stands for the credential of an unpickled client until its first request builds it."""

    def __init__(self, owner: ServiceClient) -> None:
        self._owner = owner

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        """Fetch the credential from the owner's source, then authenticate as it says."""
        auth = self._owner._credential_from_source()
        if auth is None or isinstance(auth, _CredentialOnFirstUse):
            yield request
        else:
            yield from auth.auth_flow(request)


# ------------------------------------------------------------------------------- the client
class ServiceClient:
    """Base of every service client: one httpx client, one error table, no retries.

    Subclasses set :attr:`service` (the name used in messages) and add one method per endpoint.

    Args:
        base_url: Root URL of the service.
        auth: The httpx auth scheme carrying the credential, if any.
        timeout: Seconds (or an :class:`httpx.Timeout`) for connect, read and write.
        transport: An httpx transport to use instead of the network (tests, sandboxes).
        headers: Extra default headers.
        secrets: Strings to scrub from every raised message and body.
        follow_redirects: Follow 3xx answers (the LCO archive redirects downloads).
        max_response_bytes: Largest answer body read, once decoded.
        credential_source: Rebuilds the credential in another process (see
            :meth:`__setstate__`); without it a pickled copy has no credential.

    Raises:
        ValueError: A timeout that is not positive.
    """

    service: ClassVar[str] = "service"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Guard every public method of a client: an unreadable answer is a ServiceError."""
        super().__init_subclass__(**kwargs)
        for name, member in list(vars(cls).items()):
            if not name.startswith("_") and inspect.isfunction(member):
                setattr(cls, name, _guarded(member, name))

    def __init__(
        self,
        base_url: str,
        *,
        auth: httpx.Auth | None = None,
        timeout: float | httpx.Timeout = 30.0,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        secrets: Iterable[SecretStr | str] = (),
        follow_redirects: bool = False,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        credential_source: CredentialSource | None = None,
    ) -> None:
        if not isinstance(timeout, httpx.Timeout) and not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.max_response_bytes = max_response_bytes
        self._credential_source = credential_source
        self._credential_lock = threading.Lock()
        self._auth_class = type(auth) if isinstance(auth, TokenAuth) else TokenAuth
        self._set_secrets(secrets)
        self._client_kwargs: dict[str, Any] = {
            "base_url": base_url,
            "auth": auth,
            "timeout": timeout,
            "transport": transport,
            "headers": {"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})},
            "follow_redirects": follow_redirects,
        }
        self._client = httpx.Client(**self._client_kwargs, verify=tls_context())

    def _set_secrets(self, secrets: Iterable[SecretStr | str | None]) -> None:
        """Remember the secrets to scrub, in every form they take in text (kept wrapped)."""
        values = [s.get_secret_value() if isinstance(s, SecretStr) else s for s in secrets]
        self._secrets = tuple(
            SecretStr(form) for value in values if value for form in _redactions(value)
        )

    def _set_credential(self, credential: SecretStr | str | None) -> None:
        """Use ``credential`` (from :attr:`_credential_source`): build the auth and secrets.

        The default is the token schemes (:class:`TokenAuth` and its kind); a client whose
        credential travels otherwise overrides it.
        """
        self._client_kwargs["auth"] = self._auth_class(credential) if credential else None
        self._set_secrets([credential])

    def __getstate__(self) -> dict[str, Any]:
        """A copy for another process (a Dask worker): no connections and no secret.

        Every credential (the auth scheme, the secrets to scrub, any ``SecretStr`` attribute)
        is left out; the copy rebuilds it from its credential source, if it has one.
        """
        state = {
            key: value
            for key, value in self.__dict__.items()
            if key not in ("_client", "_credential_lock")
            and not isinstance(value, SecretStr | httpx.Auth)
        }
        state["_client_kwargs"] = {**self._client_kwargs, "auth": None}
        state["_secrets"] = ()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild the connection pool; the credential comes from its source at the first request.

        Not while unpickling: a Dask worker unpickles its task graph on its event loop, where a
        Block look-up (async there) and blocking I/O cannot run. The first request is made in
        the task's own thread, where the source is called once.
        """
        self.__dict__.update(state)
        self._credential_lock = threading.Lock()
        if self._credential_source is not None:
            self._client_kwargs["auth"] = _CredentialOnFirstUse(self)
        self._client = httpx.Client(**self._client_kwargs, verify=tls_context())

    def _credential_from_source(self) -> httpx.Auth | None:
        """Call the credential source once; install the auth and secrets it gives."""
        with self._credential_lock:
            auth = self._client_kwargs["auth"]
            if isinstance(auth, _CredentialOnFirstUse) and self._credential_source is not None:
                self._set_credential(self._credential_source())
                self._client.auth = self._client_kwargs["auth"]
            return self._client_kwargs["auth"]

    @property
    def base_url(self) -> str:
        """The root URL every path is resolved against (without a trailing slash)."""
        return str(self._client.base_url).rstrip("/")

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    # ------------------------------------------------------------------ redaction
    def _scrub(self, value: Any) -> Any:
        """Replace every known secret inside strings, lists and dicts with ``***``."""
        if isinstance(value, str):
            for secret in self._secrets:
                value = value.replace(secret.get_secret_value(), _REDACTED)
            return value
        if isinstance(value, Mapping):
            return {self._scrub(k): self._scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._scrub(v) for v in value]
        return value

    def _text(self, response: httpx.Response) -> str:
        """The response text for a message: scrubbed and at most 2,000 characters."""
        text = response.text.strip()
        if len(text) > _MAX_TEXT:
            text = text[:_MAX_TEXT] + " ..."
        return self._scrub(text)

    def _url(self, url: httpx.URL | str) -> str:
        """An absolute URL for messages, without signature or secrets."""
        return self._scrub(_without_signature(self._client.base_url.join(str(url))))

    # ------------------------------------------------------------------ errors
    def _error(
        self,
        cls: type[ServiceError],
        message: str,
        *,
        operation: str,
        url: str,
        status_code: int | None = None,
        body: Any = None,
        retry_after: float | None = None,
    ) -> ServiceError:
        if cls is UncertainOutcome:
            message += _LOOK_UP
        extra = {"retry_after": retry_after} if issubclass(cls, ServiceUnavailable) else {}
        return cls(
            message,
            operation=operation,
            status_code=status_code,
            url=url,
            body=body,
            **extra,
        )

    def _status_error(
        self,
        response: httpx.Response,
        *,
        operation: str,
        creates: bool = False,
        status: int | None = None,
        body: Any = None,
    ) -> ServiceError:
        """The exception for a non-2xx answer, from the table (returned, not raised).

        Args:
            response: The answer.
            operation: What was being done, for the message.
            creates: The call makes something on the remote side.
            status: The status to judge by, when it differs from the HTTP one (TNS reports
                failures inside a 200 envelope).
            body: The parsed body, when the caller already read it.
        """
        status = response.status_code if status is None else status
        rule = status_rule(status)
        body = self._scrub(response_body(response) if body is None else body)
        lines = flatten_errors(body) if isinstance(body, Mapping | list) else [str(body)[:500]]
        detail = "; ".join(line for line in lines if line) or response.reason_phrase
        url = self._url(response.request.url)
        method = response.request.method
        return self._error(
            rule.error_class(creates=creates),
            f"{self.service} {operation}: HTTP {status} from {method} {url}: {detail}",
            operation=operation,
            url=url,
            status_code=status,
            body=body,
            retry_after=parse_retry_after(response.headers),
        )

    def _transport_error(
        self, error: Exception, *, operation: str, method: str, url: str, creates: bool = False
    ) -> ServiceError:
        """The exception for an httpx failure before a whole answer arrived (not raised)."""
        rule = transport_rule(error)
        url = self._url(url)
        reason = self._scrub(str(error)) or "no detail"
        failure = self._error(
            rule.error_class(creates=creates),
            f"{self.service} {operation}: {rule.meaning} ({method} {url}): "
            f"{type(error).__name__}: {reason}",
            operation=operation,
            url=url,
        )
        # Chained is a scrubbed copy of the httpx error, not the error itself: that one holds the
        # request, whose headers carry the credential, and Dask pickles causes and contexts
        # (tblib) into task states.
        try:
            cause: Exception = type(error)(reason)
        except TypeError:
            cause = RuntimeError(f"{type(error).__name__}: {reason}")
        failure.__cause__ = cause
        failure.__suppress_context__ = True
        return failure

    # ------------------------------------------------------------------ requests
    def _request(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        creates: bool = False,
        passthrough: Iterable[int] = (),
        **kwargs: Any,
    ) -> httpx.Response:
        """Send one request (no retry) and map failures with the table.

        Args:
            method: HTTP method.
            path: Path relative to ``base_url``, or an absolute URL (a ``next`` page).
            operation: What is being done, for messages (``"submit_message"``).
            creates: True when the call makes something on the remote side, so that an answer
                lost after the request went out is an :class:`UncertainOutcome`.
            passthrough: Non-2xx status codes returned to the caller instead of raised (for
                APIs that use them as answers, like TNS's 404 "not processed yet").
            **kwargs: Passed to :meth:`httpx.Client.request` (``json``, ``data``, ``params``...).

        Returns:
            The response (2xx, or one of ``passthrough``).

        Raises:
            ServiceError: The class the table gives for the failure (module docstring).
        """
        failure: ServiceError | None = None
        try:
            request = self._client.build_request(method, path, **kwargs)
            response = self._client.send(request, stream=True)
            try:
                self._read(response, operation=operation, creates=creates)
            finally:
                response.close()
        except httpx.RequestError as exc:
            failure = self._transport_error(
                exc, operation=operation, method=method, url=path, creates=creates
            )
        if failure is not None:
            raise failure  # outside the handler: the httpx error is not even its context
        logger.debug("%s %s %s -> %s", self.service, method, path, response.status_code)
        answers, created = _EXCHANGES.get()
        _EXCHANGES.set((answers + 1, created + (creates and response.is_success)))
        if response.is_success or response.status_code in set(passthrough):
            return response
        raise self._status_error(response, operation=operation, creates=creates)

    def _read(self, response: httpx.Response, *, operation: str, creates: bool) -> None:
        """Read an answer's body, decoded, up to :attr:`max_response_bytes`.

        Raises:
            ServiceError: The body is larger (a listing gone wrong, or a compression bomb);
                :class:`UncertainOutcome` after a creating call, which may have stored it.
        """
        limit = self.max_response_bytes
        declared = response.headers.get("Content-Length", "")
        too_large = declared.isdigit() and int(declared) > limit
        body = bytearray()
        if not too_large:
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > limit:
                    too_large = True
                    break
        if too_large:
            raise self._error(
                UncertainOutcome if creates else ServiceError,
                f"{self.service} {operation}: the answer from {response.request.method} "
                f"{self._url(response.request.url)} is larger than {limit} bytes: not read",
                operation=operation,
                status_code=response.status_code,
                url=self._url(response.request.url),
            )
        # What Response.read() does, with the body read under the limit above.
        response._content = bytes(body)

    def _json(
        self, response: httpx.Response, *, operation: str, creates: bool = False, kind: type = dict
    ) -> Any:
        """The JSON body of a 2xx answer, of the expected ``kind`` (``dict`` or ``list``).

        Raises:
            UncertainOutcome: A creating call's answer cannot be read: it may have been stored.
            ServiceUnavailable: A read's answer cannot be read (a proxy's HTML page...).
        """
        try:
            body = response.json()
        except (ValueError, UnicodeDecodeError):
            body = None
        if isinstance(body, kind):
            return body
        url = self._url(response.request.url)
        cls = UncertainOutcome if creates else ServiceUnavailable
        raise self._error(
            cls,
            f"{self.service} {operation}: HTTP {response.status_code} from "
            f"{response.request.method} {url} is not a JSON {kind.__name__}: "
            f"{self._text(response)[:200]!r}",
            operation=operation,
            url=url,
            status_code=response.status_code,
            body=self._text(response),
        )

    def _get_json(self, path: str, *, operation: str, params: Any = None, kind: type = dict) -> Any:
        """GET ``path`` and return its JSON body (see :meth:`_json`)."""
        response = self._request("GET", path, operation=operation, params=params)
        return self._json(response, operation=operation, kind=kind)

    def _paginate(
        self, path: str, *, operation: str, params: Sequence[tuple[str, Any]]
    ) -> Iterator[dict[str, Any]]:
        """Yield every result of a DRF limit/offset listing, following ``next`` to the end.

        Raises:
            ServiceError: The listing repeats a page, or has more than 10,000 pages.
        """
        page = self._get_json(path, operation=operation, params=list(params))
        seen: set[str] = set()
        for _ in range(_MAX_PAGES):
            yield from page.get("results", [])
            next_url = page.get("next")
            if not next_url:
                return
            next_url = self._same_origin(str(next_url), operation=operation)
            if next_url in seen:
                raise ServiceError(
                    f"{self.service} {operation}: the listing repeats its next page {next_url}",
                    operation=operation,
                    url=self._url(next_url),
                )
            seen.add(next_url)
            page = self._get_json(next_url, operation=operation)
        raise ServiceError(
            f"{self.service} {operation}: more than {_MAX_PAGES} pages", operation=operation
        )

    def _same_origin(self, url: str, *, operation: str) -> str:
        """A ``next`` link, if it stays on the client's origin (the token goes with every page).

        An ``http`` link to the host of an ``https`` client (a proxy that forgot the scheme) is
        followed over ``https``.

        Raises:
            ServiceError: The link points at another origin.
        """
        base = self._client.base_url
        target = base.join(url)
        if (target.host, target.scheme, base.scheme) == (base.host, "http", "https") and (
            target.port in (None, 80)
        ):
            target = target.copy_with(scheme="https", port=base.port)
        if (target.scheme, target.host, target.port) != (base.scheme, base.host, base.port):
            raise ServiceError(
                f"{self.service} {operation}: the listing's next page is on another origin "
                f"({self._scrub(_without_signature(target))}): not followed",
                operation=operation,
                url=self._url(target),
            )
        return str(target)
