"""HERMES messages (targets and photometry of an event) and the client that validates and sends them.

The message shape follows HERMES's ``HermesMessageSerializer`` (LCOGT/hermes ``hermes/serializers.py``):
``title``, ``topic``, ``submitter``, ``authors``, ``message_text`` and ``data`` with ``event_id``,
``references``, ``targets`` and ``photometry``. Topics containing ``test`` (``hermes.test``) are for
drills and the sandbox; any other topic is public and needs a human's approval before sending.

Example:
    >>> msg = build_hermes_message("S250101ab", targets, measurements,
    ...                            title="LCO follow-up of S250101ab", authors="A. B. (LCO)")
    >>> with HermesClient(token, base_url="http://127.0.0.1:8001/") as hermes:
    ...     hermes.validate_message(msg)
    ...     receipt = hermes.submit_message(msg)
"""

from __future__ import annotations

import uuid as uuid_module
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from followup.exceptions import AuthenticationError, RequestRejected, UncertainOutcome
from followup.http import ServiceClient, TokenAuth, flatten_errors, required_secret
from followup.models import Measurement, Target
from followup.reporting.bands import band_label
from followup.reporting.equipment import equipment_of

__all__ = [
    "HERMES_DEV_URL",
    "HERMES_URL",
    "TEST_TOPIC",
    "BrightnessUnit",
    "HermesClient",
    "HermesData",
    "HermesMessage",
    "HermesPhotometry",
    "HermesReceipt",
    "HermesReference",
    "HermesTarget",
    "PublishedMessage",
    "build_hermes_message",
    "is_public_topic",
]

HERMES_URL = "https://hermes.lco.global/"
HERMES_DEV_URL = "https://hermes-dev.lco.global/"
TEST_TOPIC = "hermes.test"

BrightnessUnit = Literal["AB mag", "Vega mag", "mJy", "erg / s / cm² / Å"]
ErrorUnit = Literal["degrees", "mas", "arcsec", "arcmin"]

_SUBMIT = "api/v0/submit_message/"
_VALIDATE = "api/v0/submit_message/validate/"
_QUERY = "api/v0/query/"


def is_public_topic(topic: str) -> bool:
    """True when a HERMES topic is public, i.e. anything but a test topic.

    HERMES's own rule (the dev server's ``validate_topic``) calls a topic a test topic when its
    name contains ``test``; ``hermes.test`` is the one in use.
    """
    if not topic or not topic.strip():
        raise ValueError("a HERMES topic must be a non-empty string")
    return "test" not in topic


# ------------------------------------------------------------------------------- the message
class _Part(BaseModel):
    # HERMES passes unknown keys through; so do we, so a caller's extra fields are never lost.
    model_config = ConfigDict(extra="allow")


class HermesReference(_Part):
    """A reference: ``source`` + ``citation`` (e.g. ``"GCN"``, ``"Doe et al., GCN Circ. 1"``) or a ``url``."""

    source: str | None = None
    citation: str | None = None
    url: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> HermesReference:
        if bool(self.source) != bool(self.citation) and not self.url:
            raise ValueError("a reference needs source and citation together, or a url")
        if not (self.source or self.citation or self.url):
            raise ValueError("a reference needs source/citation or a url")
        return self


class HermesTarget(_Part):
    """A target of a HERMES message.

    Attributes:
        name: Unique within the message; photometry refers to it by this name.
        ra: Right ascension, ICRS, decimal degrees (HERMES also takes sexagesimal strings).
        dec: Declination, ICRS, decimal degrees.
        ra_error: Uncertainty of ``ra`` in ``ra_error_units``.
        dec_error: Uncertainty of ``dec`` in ``dec_error_units``.
        new_discovery: True when the message announces the object.
        host_name: Host galaxy name.
        host_redshift: Redshift of the host galaxy.
        redshift: Redshift of the target.
        comments: Free text.
    """

    name: str = Field(min_length=1)
    ra: float | str | None = None
    dec: float | str | None = None
    ra_error: float | None = None
    dec_error: float | None = None
    ra_error_units: ErrorUnit | None = None
    dec_error_units: ErrorUnit | None = None
    new_discovery: bool | None = None
    host_name: str | None = None
    host_redshift: float | None = None
    redshift: float | None = None
    comments: str | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> HermesTarget:
        if (self.ra is None) != (self.dec is None):
            raise ValueError(f"target {self.name!r}: set ra and dec together, or neither")
        if self.ra is None and not getattr(self, "orbital_elements", None):
            raise ValueError(f"target {self.name!r}: ra/dec or orbital elements are required")
        return self


class HermesPhotometry(_Part):
    """One photometry point: a detection (``brightness``) or a non-detection (``limiting_brightness``).

    Attributes:
        target_name: Name of a target of the same message.
        date_obs: Observation time, ISO 8601 UTC (HERMES also takes JD or MJD).
        telescope: Telescope name (this or ``instrument`` is required).
        instrument: Instrument name.
        bandpass: Filter name.
        brightness: Measured brightness in ``brightness_unit`` (AB mag for followup).
        brightness_error: 1-sigma uncertainty of ``brightness``.
        brightness_unit: ``"AB mag"``, ``"Vega mag"``, ``"mJy"`` or ``"erg / s / cm² / Å"``.
        limiting_brightness: Upper limit in ``limiting_brightness_unit`` (5-sigma for followup).
        limiting_brightness_unit: Unit of ``limiting_brightness``.
        exposure_time: Exposure time in seconds.
        observer: Who observed.
        comments: Free text (method, S/N, flux in microjansky).
        catalog: Reference catalog of the zero point.
    """

    target_name: str = Field(min_length=1)
    date_obs: str = Field(min_length=1)
    telescope: str | None = None
    instrument: str | None = None
    bandpass: str = Field(min_length=1)
    brightness: float | None = None
    brightness_error: float | None = None
    brightness_unit: BrightnessUnit = "AB mag"
    limiting_brightness: float | None = None
    limiting_brightness_error: float | None = None
    limiting_brightness_unit: BrightnessUnit = "AB mag"
    exposure_time: float | None = None
    observer: str | None = None
    comments: str | None = None
    catalog: str | None = None

    @model_validator(mode="after")
    def _rules(self) -> HermesPhotometry:
        if not (self.telescope or self.instrument):
            raise ValueError("photometry needs a telescope or an instrument")
        # HERMES tests truthiness, so a brightness of 0 counts as missing there too.
        if not (self.brightness or self.limiting_brightness):
            raise ValueError("photometry needs brightness or limiting_brightness")
        return self

    @property
    def is_detection(self) -> bool:
        """True for a measured brightness, False for an upper limit."""
        return self.brightness is not None


class HermesData(_Part):
    """The ``data`` block: event id, references, targets and photometry (other keys pass through)."""

    event_id: str | None = None
    references: list[HermesReference] = Field(default_factory=list)
    targets: list[HermesTarget] = Field(default_factory=list)
    photometry: list[HermesPhotometry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references_resolve(self) -> HermesData:
        names = [t.name for t in self.targets]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"target names must be unique within a message: {duplicates}")
        unknown = sorted({p.target_name for p in self.photometry} - set(names))
        if unknown:
            raise ValueError(f"photometry refers to targets not in the message: {unknown}")
        return self


class HermesMessage(BaseModel):
    """A HERMES message as ``POST api/v0/submit_message/`` takes it.

    Attributes:
        title: Message title (for a GCN-bound message it must carry a GCN keyword).
        topic: Kafka topic; ``hermes.test`` for drills and the sandbox.
        submitter: Who submits (HERMES requires it).
        authors: Author list, e.g. ``"A. B. (LCO), C. D. (UCSB) report on behalf of ..."``.
        message_text: Free text body.
        data: Event id, references, targets and photometry.
    """

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1)
    topic: str = Field(min_length=1)
    submitter: str | None = None
    authors: str = ""
    message_text: str = ""
    data: HermesData = Field(default_factory=HermesData)

    @property
    def is_public(self) -> bool:
        """True when the topic is public (sending needs approval)."""
        return is_public_topic(self.topic)

    def to_payload(self) -> dict[str, Any]:
        """The JSON body HERMES takes (``None`` fields left out, extra data keys kept)."""
        return self.model_dump(mode="json", exclude_none=True)


class HermesReceipt(BaseModel):
    """What HERMES answered to a published message.

    Attributes:
        uuid: The message id (the hop ``_id``), the remote id to keep.
        title: Title as stored.
        topic: Topic it was published on.
        event_id: ``data.event_id`` as stored.
        references: ``data.references`` as stored (HERMES appends TNS/GCN references).
        url: Link to the message in the HERMES web interface.
        message: The full echoed message.
    """

    uuid: uuid_module.UUID
    title: str | None = None
    topic: str | None = None
    event_id: str | None = None
    references: list[dict[str, Any]] = Field(default_factory=list)
    url: str | None = None
    message: dict[str, Any] = Field(default_factory=dict, repr=False)


class PublishedMessage(BaseModel):
    """A message as HERMES's query API lists it (``hermes/utils.py`` ``convert_message``).

    Attributes:
        uuid: The message id (the hop ``_id`` header).
        topic: The topic it went to.
        published: When the archive stored it (UTC).
        sender: The SCiMMA credential that sent it (``_sender``).
        content: The message itself (``title``, ``submitter``, ``authors``, ``data``...).
    """

    uuid: uuid_module.UUID
    topic: str
    published: datetime
    sender: str | None = None
    content: dict[str, Any] = Field(default_factory=dict, repr=False)

    @classmethod
    def from_archive(cls, item: Mapping[str, Any]) -> PublishedMessage:
        """Read one entry of ``{"messages": [...]}``.

        Raises:
            ValueError: The entry has no ``_id`` header, topic or timestamp.
        """
        metadata = item.get("metadata") or {}
        headers = metadata.get("headers") or {}
        try:
            return cls(
                uuid=uuid_module.UUID(str(headers["_id"])),
                topic=str(metadata["topic"]),
                published=datetime.fromtimestamp(float(metadata["timestamp"]) / 1000.0, UTC),
                sender=headers.get("_sender"),
                content=dict(item.get("message") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a HERMES archive message: {exc!r}") from exc

    def is_copy_of(self, message: HermesMessage) -> bool:
        """True when this is ``message`` as published: same title, topic, submitter, authors."""
        content = self.content
        return (
            self.topic == message.topic
            and content.get("title") == message.title
            and content.get("submitter") == message.submitter
            and (content.get("authors") or "") == message.authors
        )


# ------------------------------------------------------------------------------- the builder
def _photometry_point(
    m: Measurement, *, instrument_type: str | None, observer: str | None, catalog: str | None
) -> HermesPhotometry:
    equipment = equipment_of(m, instrument_type=instrument_type)
    detail = (
        f"{m.method} forced photometry; flux {m.flux_ujy:.3g} +/- {m.flux_err_ujy:.2g} uJy; "
        f"S/N {m.snr:.1f}; frame {m.frame_basename}"
    )
    common: dict[str, Any] = {
        "target_name": m.target_name,
        "date_obs": m.date_obs.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
        "telescope": equipment.telescope,
        "instrument": equipment.hermes_instrument,
        "bandpass": band_label(m.band),
        "exposure_time": m.exposure_time_s,
        "observer": observer,
        "catalog": catalog,
    }
    if m.is_detection:
        return HermesPhotometry(
            **common,
            brightness=round(m.mag, 3),  # type: ignore[arg-type]
            brightness_error=None if m.mag_err is None else round(m.mag_err, 3),
            brightness_unit="AB mag",
            comments=detail,
        )
    return HermesPhotometry(
        **common,
        limiting_brightness=round(m.limit_mag_5sigma, 3),
        limiting_brightness_unit="AB mag",
        comments=f"5-sigma upper limit; {detail}",
    )


def build_hermes_message(
    event_id: str,
    targets: Sequence[Target],
    measurements: Iterable[Measurement],
    *,
    title: str,
    authors: str,
    message_text: str = "",
    topic: str = TEST_TOPIC,
    submitter: str = "followup",
    instrument_type: str | None = None,
    observer: str | None = None,
    catalog: str | None = None,
    references: Iterable[HermesReference | Mapping[str, Any]] = (),
    target_details: Mapping[str, Mapping[str, Any]] | None = None,
) -> HermesMessage:
    """Build the HERMES message reporting an event's targets and their photometry.

    Detections (S/N >= 5) become ``brightness`` +/- ``brightness_error`` in AB mag; non-detections
    become ``limiting_brightness`` (the 5-sigma limit, AB mag) alone. Flux in microjansky and S/N go
    in each point's ``comments``. Points are ordered by time. Each point names the telescope and
    camera that took it (:func:`~followup.reporting.equipment.equipment_of`: ``LCO 2-m`` and
    ``MuSCAT3``; TNS's name, ``LCO1m - Sinistro``, where TNS lists the camera).

    Args:
        event_id: The event (``"S250101ab"``, ``"GRB 250101A"``).
        targets: Targets to list; every measurement's ``target_name`` must be one of them.
        measurements: Forced photometry results.
        title: Message title.
        authors: Author list.
        message_text: Free text body.
        topic: HERMES topic; the default ``hermes.test`` is a drill topic.
        submitter: The ``submitter`` field HERMES requires.
        instrument_type: The strategy's instrument type, naming the camera of points whose
            frame header does not.
        observer: ``observer`` of every point.
        catalog: Reference catalog of the zero points (e.g. ``"ATLAS-REFCAT2"``).
        references: References to cite (``{"source": "GCN", "citation": "..."}`` or ``{"url": ...}``).
        target_details: Further :class:`HermesTarget` fields by target name, when known:
            ``ra_error``/``dec_error`` with their units, ``host_name``, ``host_redshift``,
            ``redshift``.

    Returns:
        The message, validated against HERMES's rules.

    Raises:
        ValueError: A measurement names a target not given, target names repeat, or a field
            breaks HERMES's rules (pydantic's ``ValidationError`` is a ``ValueError``).
    """
    if not event_id:
        raise ValueError("event_id must be a non-empty string")
    names = {t.name for t in targets}
    points = sorted(measurements, key=lambda m: m.date_obs)
    unknown = sorted({m.target_name for m in points} - names)
    if unknown:
        raise ValueError(f"measurements refer to targets that were not given: {unknown}")
    data = HermesData(
        event_id=event_id,
        references=[
            r if isinstance(r, HermesReference) else HermesReference(**r) for r in references
        ],
        targets=[
            HermesTarget(
                name=t.name,
                ra=round(t.ra, 7),
                dec=round(t.dec, 7),
                **dict((target_details or {}).get(t.name, {})),
            )
            for t in targets
        ],
        photometry=[
            _photometry_point(
                m, instrument_type=instrument_type, observer=observer, catalog=catalog
            )
            for m in points
        ],
    )
    return HermesMessage(
        title=title,
        topic=topic,
        submitter=submitter,
        authors=authors,
        message_text=message_text,
        data=data,
    )


# ------------------------------------------------------------------------------- the client
def _payload(message: HermesMessage | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(message, HermesMessage):
        return message.to_payload()
    if isinstance(message, Mapping):
        return dict(message)
    raise TypeError(f"expected a HermesMessage or a mapping, got {type(message).__name__}")


class HermesClient(ServiceClient):
    """Client of the HERMES message API (``api/v0/``); errors follow :mod:`followup.http`.

    Args:
        api_token: The HERMES API token (profile page), sent as ``Authorization: Token ...``.
        base_url: ``HERMES_URL``, ``HERMES_DEV_URL`` or a sandbox URL.
        timeout: Seconds for connect, read and write.
        transport: An httpx transport to use instead of the network.

    Example:
        >>> with HermesClient(SecretStr("..."), base_url=HERMES_DEV_URL) as hermes:
        ...     hermes.validate_message(message)
    """

    service = "HERMES"

    def __init__(
        self,
        api_token: SecretStr | str,
        *,
        base_url: str = HERMES_URL,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        token = required_secret(api_token, "a HERMES API token")
        super().__init__(
            base_url,
            auth=TokenAuth(token),
            timeout=timeout,
            transport=transport,
            secrets=[token],
        )

    def validate_message(self, message: HermesMessage | Mapping[str, Any]) -> None:
        """Check a message with HERMES without publishing it (``submit_message/validate/``).

        HERMES answers 200 in both cases: ``{}`` when the message is valid, else the serializer's
        error dict (nested per field and per list item).

        Raises:
            RequestRejected: The message is invalid; ``body`` is HERMES's error dict.
            AuthenticationError: The token was refused (403).
            ServiceUnavailable: HERMES could not be reached or answered 429 or 5xx.
        """
        response = self._request(
            "POST", _VALIDATE, operation="validate_message", json=_payload(message)
        )
        errors = self._json(response, operation="validate_message")
        if errors:
            summary = "; ".join(flatten_errors(errors)) or str(errors)
            raise RequestRejected(
                f"HERMES validate_message: the message is invalid: {summary}",
                operation="validate_message",
                status_code=response.status_code,
                url=str(response.request.url),
                body=errors,
            )

    def submit_message(self, message: HermesMessage | Mapping[str, Any]) -> HermesReceipt:
        """Publish a message (``POST api/v0/submit_message/``).

        HERMES answers 200 with the message echoed plus its ``uuid`` on success. It also answers
        200, with no uuid, when the account has no SCiMMA credential
        (``{"error": "User account does not have an associated SCIMMA auth credential..."}``):
        that is raised, never taken for a success.

        Returns:
            The receipt with the message uuid.

        Raises:
            AuthenticationError: 403 (bad token), or the 200 "no SCIMMA auth credential" error:
                nothing was published.
            RequestRejected: 400 serializer errors or ``{"error": ...}`` (TNS/GCN/hop failures),
                or another error returned with status 200.
            UncertainOutcome: The request was sent but no usable answer came back (dropped
                connection, 500/502/504, or a 200 without uuid): the message may be published.
            ServiceUnavailable: HERMES could not be reached or answered 429/503.
        """
        response = self._request(
            "POST", _SUBMIT, operation="submit_message", creates=True, json=_payload(message)
        )
        url = str(response.request.url)
        body = self._json(response, operation="submit_message", creates=True)
        if body.get("error") and not body.get("uuid"):
            error = str(body["error"])
            cls = AuthenticationError if "credential" in error.lower() else RequestRejected
            raise cls(
                f"HERMES submit_message: HTTP {response.status_code} carrying an error (nothing was "
                f"published): {self._scrub(error)}",
                operation="submit_message",
                status_code=response.status_code,
                url=url,
                body=self._scrub(body),
            )
        if not body.get("uuid"):
            raise UncertainOutcome(
                f"HERMES submit_message: HTTP {response.status_code} without a message uuid; "
                "the message may or may not be published",
                operation="submit_message",
                status_code=response.status_code,
                url=url,
                body=body,
            )
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        receipt_uuid = uuid_module.UUID(str(body["uuid"]))
        return HermesReceipt(
            uuid=receipt_uuid,
            title=body.get("title"),
            topic=body.get("topic"),
            event_id=data.get("event_id"),
            references=list(data.get("references") or []),
            url=self.message_url(receipt_uuid),
            message=body,
        )

    def query_messages(
        self,
        *,
        topics: Sequence[str],
        start: datetime,
        end: datetime,
        search_query: str | None = None,
        limit: int = 100,
        max_pages: int = 20,
    ) -> list[PublishedMessage]:
        """Messages published on some topics in a time span (``GET api/v0/query/``).

        HERMES passes the query to the SCiMMA archive (``hermes/views.py`` ``QueryApiView``:
        ``topic``, ``start``, ``end``, ``search_query``, ``limit``, ``page``), newest first.
        Pages are read until one comes back short, at most ``max_pages``.

        Args:
            topics: Topics to search.
            start: Earliest publication time.
            end: Latest publication time.
            search_query: The archive's text search (the stand-in matches it in titles).
            limit: Messages per page.
            max_pages: Most pages read.

        Raises:
            AuthenticationError: The token was refused.
            ServiceUnavailable: HERMES could not be reached or answered 429 or 5xx.
        """
        found: list[PublishedMessage] = []
        for page in range(max_pages):
            params: list[tuple[str, Any]] = [("topic", topic) for topic in topics]
            params += [
                ("start", _iso(start)),
                ("end", _iso(end)),
                ("limit", limit),
                ("include_retracted", "true"),
            ]
            if search_query:
                params.append(("search_query", search_query))
            if page:
                params.append(("page", page))
            body = self._get_json(_QUERY, operation="query_messages", params=params)
            items = body.get("messages") or []
            found += [PublishedMessage.from_archive(item) for item in items]
            if len(items) < limit:
                break
        return found

    def find_message(
        self, message: HermesMessage, *, start: datetime, end: datetime
    ) -> PublishedMessage | None:
        """The published copy of a message, looked up by title, topic and author in a span.

        The look-up after an :class:`UncertainOutcome`: if HERMES published the message, it is
        in the archive under its topic with its title, submitter and authors.

        Returns:
            The earliest matching copy, or None.

        Raises:
            AuthenticationError: The token was refused.
            ServiceUnavailable: HERMES could not be reached or answered 429 or 5xx.
        """
        copies = [
            item
            for item in self.query_messages(
                topics=[message.topic], start=start, end=end, search_query=message.title
            )
            if item.is_copy_of(message)
        ]
        return min(copies, key=lambda item: item.published) if copies else None

    def message_url(self, message_uuid: uuid_module.UUID | str) -> str:
        """Link to a message in the HERMES web interface."""
        return str(self._client.base_url.join(f"message/{message_uuid}"))


def _iso(value: datetime) -> str:
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat()
