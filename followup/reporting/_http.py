"""The httpx plumbing the HERMES, TNS and GCN clients share: one place that maps errors.

Each client owns one :class:`httpx.Client` (``base_url``, timeout, ``User-Agent: followup/<version>``,
an injectable transport) and sends every call through :meth:`ServiceClient._request`, which turns
transport failures and non-2xx answers into the :mod:`followup.exceptions` tree:

* connection refused, DNS failure, connect/pool timeouts, a failed write -> :class:`ServiceUnavailable`
  (the request never reached the service);
* read timeouts and dropped connections after the body was sent -> :class:`UncertainOutcome` for
  calls that create something (``creates=True``), :class:`ServiceUnavailable` for reads;
* 429 and 503 -> :class:`ServiceUnavailable` with ``retry_after`` (``Retry-After`` or TNS's
  ``x-rate-limit-reset``); other 5xx -> :class:`UncertainOutcome` for creating calls (a gateway
  timeout can come after the service stored the request), :class:`ServiceUnavailable` otherwise;
* 401/403 -> :class:`AuthenticationError`; 404 -> :class:`NotFound`; other 4xx ->
  :class:`RequestRejected` carrying the parsed body.

Secrets a client knows (tokens, API keys) are scrubbed from every message and body it raises.
"""

from __future__ import annotations

import email.utils
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Self

import httpx
from pydantic import SecretStr

from followup import __version__
from followup.exceptions import (
    AuthenticationError,
    NotFound,
    RequestRejected,
    ServiceError,
    ServiceUnavailable,
    UncertainOutcome,
)

__all__ = ["USER_AGENT", "ServiceClient", "parse_retry_after", "response_body"]

logger = logging.getLogger(__name__)

USER_AGENT = f"followup/{__version__}"
_REDACTED = "***"
_MAX_TEXT = 2000


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait before retrying, from ``Retry-After`` or TNS's ``x-rate-limit-reset``.

    Args:
        headers: Response headers (case-insensitive mapping such as :class:`httpx.Headers`).

    Returns:
        Seconds (>= 0), or None when neither header is present or readable.
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
    """The parsed JSON body of a response, else its text (possibly empty)."""
    try:
        return response.json()
    except ValueError:
        return response.text


class ServiceClient:
    """Base of the reporting clients: one httpx client, one error-mapping ``_request``.

    Args:
        base_url: Root URL of the service.
        service: Human name used in error messages (``"HERMES"``, ``"TNS"``, ``"GCN"``).
        auth: The httpx auth scheme carrying the credential, if any.
        timeout: Seconds for connect, read and write.
        transport: An httpx transport to use instead of the network (tests, sandboxes).
        headers: Extra default headers.
        secrets: Strings to scrub from every raised message and body.
    """

    def __init__(
        self,
        base_url: str,
        *,
        service: str,
        auth: httpx.Auth | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        secrets: Iterable[SecretStr] = (),
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.service = service
        # Kept wrapped so that no repr of the client shows them.
        self._secrets = tuple(s for s in secrets if s.get_secret_value())
        default_headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        default_headers.update(headers or {})
        self._client = httpx.Client(
            base_url=base_url,
            auth=auth,
            timeout=timeout,
            transport=transport,
            headers=default_headers,
        )

    @property
    def base_url(self) -> str:
        """The root URL every path is resolved against."""
        return str(self._client.base_url)

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
        text = response.text.strip()
        if len(text) > _MAX_TEXT:
            text = text[:_MAX_TEXT] + " ..."
        return self._scrub(text)

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
        """Send one request and map failures onto :mod:`followup.exceptions`.

        Args:
            method: HTTP method.
            path: Path relative to ``base_url``.
            operation: What is being done, for messages (``"submit_message"``).
            creates: True when the call makes something on the remote side, so that an answer
                lost after the body was sent is an :class:`UncertainOutcome`.
            passthrough: Non-2xx status codes returned to the caller instead of raised (for
                APIs that use them as answers, like TNS's 404 "not processed yet").
            **kwargs: Passed to :meth:`httpx.Client.request` (``json``, ``data``, ...).

        Returns:
            The response (2xx or one of ``passthrough``).

        Raises:
            ServiceUnavailable: The service could not be reached, timed out before the body was
                sent, answered 429 or 503, or answered 5xx to a read.
            UncertainOutcome: A creating call was sent but its answer was lost or was a
                500/502/504: the service may have acted on it.
            AuthenticationError: 401 or 403.
            NotFound: 404.
            RequestRejected: Any other 4xx.
        """
        url = self._scrub(str(self._client.base_url.join(path)))
        where = f"{self.service} {operation} ({method} {url})"
        try:
            response = self._client.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise ServiceUnavailable(
                f"{where}: could not connect: {self._scrub(str(exc)) or type(exc).__name__}",
                operation=operation,
                url=url,
            ) from exc
        except (httpx.WriteError, httpx.WriteTimeout) as exc:
            # The body did not get out whole; a server does not act on a partial request.
            raise ServiceUnavailable(
                f"{where}: sending the request failed: {type(exc).__name__}",
                operation=operation,
                url=url,
            ) from exc
        except (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError) as exc:
            cls = UncertainOutcome if creates else ServiceUnavailable
            hint = (
                " the service may have acted on it; look it up before any retry" if creates else ""
            )
            raise cls(
                f"{where}: request sent but no answer ({type(exc).__name__});{hint}",
                operation=operation,
                url=url,
            ) from exc
        except httpx.TransportError as exc:
            raise ServiceUnavailable(
                f"{where}: transport error: {type(exc).__name__}: {self._scrub(str(exc))}",
                operation=operation,
                url=url,
            ) from exc

        status = response.status_code
        logger.debug("%s %s %s -> %s", self.service, method, path, status)
        if response.is_success or status in set(passthrough):
            return response
        raise self._error_for(response, where=where, operation=operation, url=url, creates=creates)

    def _error_for(
        self,
        response: httpx.Response,
        *,
        where: str,
        operation: str,
        url: str,
        creates: bool,
    ) -> ServiceError:
        """The exception for a non-2xx response (not raised here)."""
        status = response.status_code
        body = self._scrub(response_body(response))
        message = f"{where}: HTTP {status}: {self._text(response) or response.reason_phrase}"
        common: dict[str, Any] = {
            "operation": operation,
            "status_code": status,
            "url": url,
            "body": body,
        }
        if status in (429, 503):
            return ServiceUnavailable(
                message, retry_after=parse_retry_after(response.headers), **common
            )
        if status >= 500:
            if creates:
                return UncertainOutcome(
                    message
                    + " (the service may have stored the request; look it up before any retry)",
                    retry_after=parse_retry_after(response.headers),
                    **common,
                )
            return ServiceUnavailable(
                message, retry_after=parse_retry_after(response.headers), **common
            )
        if status in (401, 403):
            return AuthenticationError(message, **common)
        if status == 404:
            return NotFound(message, **common)
        return RequestRejected(message, **common)
