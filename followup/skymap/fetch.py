"""Fetch a sky map an alert only points at: allowed hosts, a size cap and a deadline.

LVK VOEvents and GCN notices may carry a sky-map URL instead of the map. The URL comes from a
message, so it decides nothing by itself: its host must be on an allow-list (GraceDB and the
GCN/HEASARC archives by default, more through ``FOLLOWUP_SKYMAP_HOSTS`` or the caller), the
body is read up to a size cap and the whole download must end before a deadline.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from urllib.parse import urlsplit

import httpx

from followup.exceptions import ServiceError, SkymapError
from followup.http import ServiceClient
from followup.models import Alert

__all__ = [
    "DEFAULT_SKYMAP_HOSTS",
    "MAX_FETCH_BYTES",
    "SkymapFetcher",
    "allowed_skymap_hosts",
    "with_fetched_skymap",
]

DEFAULT_SKYMAP_HOSTS = (
    "gracedb.ligo.org",
    "gracedb-playground.ligo.org",
    "gracedb-test.ligo.org",
    "gcn.nasa.gov",
    "heasarc.gsfc.nasa.gov",
)
"""Hosts sky maps are fetched from unless told otherwise."""

MAX_FETCH_BYTES = 64 * 2**20
"""Largest sky-map download (maps are sent gzipped: an nside-2048 flat map is a few MB)."""

HOSTS_ENV = "FOLLOWUP_SKYMAP_HOSTS"


def allowed_skymap_hosts(extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The default hosts, those in ``$FOLLOWUP_SKYMAP_HOSTS`` (comma-separated) and ``extra``."""
    env = [h.strip().lower() for h in os.environ.get(HOSTS_ENV, "").split(",") if h.strip()]
    return tuple(dict.fromkeys([*DEFAULT_SKYMAP_HOSTS, *env, *(h.lower() for h in extra)]))


class SkymapFetcher(ServiceClient):
    """Download sky maps from allowed hosts, within a size cap and a deadline.

    Args:
        allowed_hosts: Host names (``host`` or ``host:port``) a map may come from.
        max_bytes: Largest body read.
        deadline_s: Seconds the whole download may take.
        transport: An httpx transport instead of the network (tests).
    """

    service = "sky-map download"

    def __init__(
        self,
        allowed_hosts: Iterable[str] | None = None,
        *,
        max_bytes: int = MAX_FETCH_BYTES,
        deadline_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            "",
            timeout=deadline_s,
            transport=transport,
            follow_redirects=False,
            max_response_bytes=max_bytes,
            headers={"Accept": "*/*"},
        )
        self.allowed_hosts = tuple(
            h.lower()
            for h in (allowed_hosts if allowed_hosts is not None else allowed_skymap_hosts())
        )
        self.deadline_s = float(deadline_s)

    def check_url(self, url: str) -> str:
        """The URL when it may be fetched.

        Raises:
            SkymapError: Not http(s), or a host that is not allowed.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http"):
            raise SkymapError(f"sky-map URL {url!r}: only http(s) URLs are fetched")
        host = (parts.hostname or "").lower()
        netloc = f"{host}:{parts.port}" if parts.port else host
        if host not in self.allowed_hosts and netloc not in self.allowed_hosts:
            raise SkymapError(
                f"sky-map URL {url!r}: host {netloc!r} is not allowed "
                f"(allowed: {', '.join(self.allowed_hosts)}; add hosts with ${HOSTS_ENV})"
            )
        return url

    def fetch(self, url: str) -> bytes:
        """Download one sky map.

        Raises:
            SkymapError: A host not allowed, a body over the cap, the deadline passed.
            ServiceError: The server answered with an error or could not be reached.
        """
        self.check_url(url)
        deadline = time.monotonic() + self.deadline_s
        body = bytearray()
        try:
            with self._client.stream("GET", url) as response:
                if not response.is_success:
                    response.read()
                    raise self._status_error(response, operation="fetch", creates=False)
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > self.max_response_bytes:
                    raise SkymapError(
                        f"sky map at {url} declares {declared} bytes, more than the "
                        f"{self.max_response_bytes} allowed"
                    )
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > self.max_response_bytes:
                        raise SkymapError(
                            f"sky map at {url} is larger than {self.max_response_bytes} bytes"
                        )
                    if time.monotonic() > deadline:
                        raise SkymapError(
                            f"sky map at {url} not downloaded within {self.deadline_s:g} s"
                        )
        except httpx.RequestError as exc:
            raise self._transport_error(
                exc, operation="fetch", method="GET", url=url, creates=False
            ) from exc
        if not body:
            raise SkymapError(f"sky map at {url} is empty")
        return bytes(body)


def with_fetched_skymap(alert: Alert, fetcher: SkymapFetcher) -> Alert:
    """The alert with its sky map, fetched from ``alert.skymap_url`` when it has only that.

    Raises:
        SkymapError: The URL may not be fetched or the download failed.
    """
    if not alert.skymap_to_fetch:
        return alert
    try:
        data = fetcher.fetch(alert.skymap_url)
    except ServiceError as exc:
        raise SkymapError(f"cannot fetch the sky map of {alert.event_id}: {exc}") from exc
    return alert.model_copy(update={"skymap": data})
