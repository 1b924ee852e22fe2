"""The registry of alert parsers and the one entry point, :func:`parse_message`.

A message is first decoded from its container (JSON, an Avro container file, XML or plain text),
chosen from hop's ``_format`` header when there is one and otherwise from the first bytes. The
decoded document then goes to the first registered parser of that container that accepts it.
Anything no parser accepts, and anything a parser finds invalid, raises
:class:`~followup.exceptions.AlertParseError` with a short reason; the listener quarantines the
message with that reason and keeps its raw bytes.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from xml.etree import ElementTree

from pydantic import ValidationError

from followup.bounded import DecodeLimitExceeded, avro_blocks
from followup.exceptions import AlertParseError
from followup.models import Alert

__all__ = [
    "MAX_DEPTH",
    "MAX_ID_LENGTH",
    "MAX_MESSAGE_BYTES",
    "PARSERS",
    "Container",
    "MessageContext",
    "Parser",
    "decode",
    "detect_format",
    "normalise_headers",
    "parse_message",
    "parse_object",
    "register_parser",
]

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Larger messages are refused (``too-large``); real LVK alerts with two sky maps are ~2 MB. An
Avro container is also refused when its blocks inflate to more than this."""

MAX_DEPTH = 64
"""Deepest nesting of a decoded document (``too-deep``); real alerts nest fewer than 10 levels,
and serialising a much deeper one fails later, outside the parser."""

MAX_ID_LENGTH = 64
"""Longest event id and source name (the ledger's columns hold 64 characters)."""

Container = Literal["json", "avro", "xml", "text"]

HeadersLike = Sequence[tuple[str, bytes | str | None]] | Mapping[str, bytes | str | None] | None

_AVRO_MAGIC = b"Obj\x01"
_HOP_FORMAT_CONTAINERS: dict[str, Container | None] = {
    "json": "json",
    "avro": "avro",
    "voevent": "xml",
    "circular": "json",
    "blob": None,  # opaque: sniff the bytes
}


@dataclass(frozen=True, slots=True)
class MessageContext:
    """What a parser may know about a message besides its bytes.

    Attributes:
        headers: Kafka headers by name (the last value of a repeated header wins).
        topic: The Kafka topic it came from, when known.
    """

    headers: Mapping[str, bytes] = field(default_factory=dict)
    topic: str | None = None

    @property
    def hop_format(self) -> str | None:
        """The ``_format`` header hop sets (``json``, ``avro``, ``voevent``, ``circular``...)."""
        value = self.headers.get("_format")
        return value.decode("utf-8", errors="replace").strip().lower() if value else None

    @property
    def test_header(self) -> bool:
        """True when hop's ``_test`` header marks the message as a test."""
        return "_test" in self.headers

    @property
    def message_uuid(self) -> str | None:
        """The ``_id`` header hop sets, as a UUID string; None when absent or malformed."""
        return header_uuid(self.headers.get("_id"))


def header_uuid(value: bytes | str | None) -> str | None:
    """Read hop's ``_id`` header (16 raw bytes, or the UUID written as text) as a UUID string."""
    if value is None:
        return None
    try:
        if isinstance(value, bytes) and len(value) == 16:
            return str(uuid.UUID(bytes=value))
        text = value.decode("ascii") if isinstance(value, bytes) else value
        return str(uuid.UUID(text.strip()))
    except (ValueError, UnicodeDecodeError, AttributeError):
        return None


def normalise_headers(headers: HeadersLike) -> dict[str, bytes]:
    """Kafka headers as a ``{name: bytes}`` mapping (str values encoded, None values as b"")."""
    if not headers:
        return {}
    if type(headers) is dict and all(
        type(k) is str and type(v) is bytes for k, v in headers.items()
    ):
        return headers  # already normalised (the listener's hot path passes it along)
    items = headers.items() if isinstance(headers, Mapping) else headers
    result: dict[str, bytes] = {}
    for item in items:
        try:
            name, value = item
        except (TypeError, ValueError):
            continue
        if not isinstance(name, str):
            continue
        if value is None:
            result[name] = b""
        elif isinstance(value, str):
            result[name] = value.encode("utf-8")
        else:
            result[name] = bytes(value)
    return result


@dataclass(frozen=True)
class Parser:
    """One wire format.

    Attributes:
        name: The format name recorded in ``Alert.format`` and used as the registry key
            (``lvk-json``, ``lvk-avro``, ``gcn-json``, ``voevent``, ``circular-json``,
            ``circular-text``).
        container: The decoded document it takes: a JSON value, an Avro record (a dict), an XML
            element, or text.
        accepts: Cheap test on the decoded document: is this message in my format?
        parse: Turn the document into an :class:`Alert`; raise :class:`AlertParseError` when it
            is invalid.
        description: One line for ``followup parse --help`` and the docs.
    """

    name: str
    container: Container
    accepts: Callable[[Any, MessageContext], bool]
    parse: Callable[[Any, MessageContext], Alert]
    description: str = ""


PARSERS: dict[str, Parser] = {}
"""Registered parsers by format name, tried in registration order within a container."""


def register_parser(parser: Parser, *, replace: bool = False) -> Parser:
    """Add a parser to the registry.

    Raises:
        ValueError: A parser of that name exists and ``replace`` is False.
    """
    if parser.name in PARSERS and not replace:
        raise ValueError(f"a parser named {parser.name!r} is already registered")
    PARSERS[parser.name] = parser
    return parser


def decode(raw: bytes, ctx: MessageContext) -> tuple[Container, Any]:
    """Decode a message from its container, without interpreting it.

    Returns:
        The container name and the document: a JSON value, the single record of an Avro
        container, an XML root element, or text.

    Raises:
        AlertParseError: ``empty``, ``too-large``, ``invalid-json``, ``invalid-avro``,
            ``invalid-xml``, ``invalid-encoding`` or ``unknown-format``.
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise AlertParseError("unknown-format", detail=f"expected bytes, got {type(raw).__name__}")
    raw = bytes(raw)
    if not raw.strip():
        raise AlertParseError("empty", detail="the message has no content")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise AlertParseError(
            "too-large", detail=f"{len(raw)} bytes is over the {MAX_MESSAGE_BYTES} byte limit"
        )
    hop_format = ctx.hop_format
    container: Container | None = None
    if hop_format in _HOP_FORMAT_CONTAINERS:
        container = _HOP_FORMAT_CONTAINERS[hop_format]
    elif hop_format is not None:
        raise AlertParseError(
            "unsupported-format", detail=f"hop _format {hop_format!r} is not an alert format"
        )
    if container is None:
        container = _sniff(raw)
    if container == "avro":
        return "avro", _decode_avro(raw)
    if container == "json":
        return _decode_json(raw)
    text = _decode_text(raw)
    if container == "xml":
        return "xml", _decode_xml(text)
    return "text", text


def _sniff(raw: bytes) -> Container:
    if raw.startswith(_AVRO_MAGIC):
        return "avro"
    head = raw[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head[:1] in (b"{", b"["):
        return "json"
    if head[:1] == b"<":
        return "xml"
    try:
        raw[:256].decode("utf-8")
    except UnicodeDecodeError:
        # A multi-byte character cut at 256 bytes is fine; real binary is not.
        try:
            raw[:252].decode("utf-8")
        except UnicodeDecodeError:
            raise AlertParseError(
                "unknown-format", detail="binary content that is not an Avro container"
            ) from None
    return "text"


def _decode_text(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AlertParseError("invalid-encoding", detail=f"not UTF-8: {exc}") from None
    return text.lstrip("\ufeff")


def _decode_json(raw: bytes) -> tuple[Container, Any]:
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise AlertParseError("invalid-json", detail=str(exc)[:300]) from None
    if isinstance(document, list):
        # Older hop versions wrapped single records in a list.
        if len(document) != 1:
            raise AlertParseError(
                "unknown-format", detail=f"a JSON list of {len(document)} items is not an alert"
            )
        document = document[0]
    if not isinstance(document, dict):
        raise AlertParseError(
            "unknown-format", detail=f"a JSON {type(document).__name__} is not an alert"
        )
    # hop's legacy envelope: {"format": ..., "content": ...}
    if set(document) == {"format", "content"} and isinstance(document.get("format"), str):
        envelope_format = document["format"].lower()
        content = document["content"]
        if envelope_format == "voevent" and isinstance(content, dict):
            return "xml", _voevent_from_dict(content)
        if envelope_format in {"json", "blob", "circular"} and isinstance(content, dict):
            return "json", content
        if envelope_format == "voevent" and isinstance(content, str):
            return "xml", _decode_xml(content)
        raise AlertParseError(
            "unsupported-format", detail=f"hop envelope format {envelope_format!r}"
        )
    return "json", document


# Attribute names of the VOEvent 2.0 schema (elements are capitalised, attributes are not), used
# to rebuild XML from hop's dict form, where attributes and child elements look alike.
_VOEVENT_ATTRIBUTES = frozenset(
    {
        "ivorn",
        "role",
        "version",
        "name",
        "value",
        "unit",
        "ucd",
        "dataType",
        "type",
        "cite",
        "id",
        "coord_system_id",
        "importance",
        "probability",
        "expires",
        "pos_unit",
        "uri",
        "meaning",
        "relation",
        "utype",
        "mimetype",
    }
)


def _label_attributes(node: Any) -> Any:
    if isinstance(node, list):
        return [_label_attributes(item) for item in node]
    if not isinstance(node, dict):
        return node
    labelled: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("_") or ":" in key:
            continue
        if key in _VOEVENT_ATTRIBUTES and not isinstance(value, dict | list):
            labelled[f"@{key}"] = value
        else:
            labelled[key] = _label_attributes(value)
    return labelled


def _voevent_from_dict(content: dict[str, Any]) -> ElementTree.Element:
    import xmltodict

    try:
        text = xmltodict.unparse({"VOEvent": _label_attributes(content)}, attr_prefix="@")
    except (ValueError, TypeError, AttributeError) as exc:
        raise AlertParseError("invalid-voevent", detail=f"hop VOEvent dict: {exc}") from None
    return _decode_xml(text)


def _decode_xml(text: str) -> ElementTree.Element:
    head = text[:4096]
    if "<!DOCTYPE" in head.upper() or "<!ENTITY" in text.upper():
        # Entities are the classic XML bomb; no alert format uses a DTD.
        raise AlertParseError("invalid-xml", detail="DTDs and entity declarations are refused")
    try:
        return ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise AlertParseError("invalid-xml", detail=str(exc)[:300]) from None


def _decode_avro(raw: bytes) -> dict[str, Any]:
    import fastavro

    try:
        # Blocks are checked (and deflate blocks inflated within the limit) before fastavro,
        # which inflates a whole block at once, sees them.
        avro_blocks(raw, limit=MAX_MESSAGE_BYTES)
    except DecodeLimitExceeded as exc:
        raise AlertParseError("too-large", detail=str(exc)) from None
    except ValueError as exc:
        raise AlertParseError("invalid-avro", detail=str(exc)[:300]) from None
    try:
        reader = fastavro.reader(io.BytesIO(raw))
        records = []
        for record in reader:
            records.append(record)
            if len(records) > 1:
                break
    except Exception as exc:  # fastavro raises many types for corrupt input
        raise AlertParseError(
            "invalid-avro", detail=f"{type(exc).__name__}: {str(exc)[:300]}"
        ) from None
    if len(records) != 1:
        raise AlertParseError(
            "invalid-avro", detail=f"expected one record, found {len(records)} or more"
        )
    record = records[0]
    if not isinstance(record, dict):
        raise AlertParseError("invalid-avro", detail="the record is not an Avro record")
    return record


def _run_parser(parser: Parser, document: Any, ctx: MessageContext) -> Alert:
    try:
        alert = parser.parse(document, ctx)
    except AlertParseError:
        raise
    except ValidationError as exc:
        raise AlertParseError(f"invalid-{parser.name}", detail=_validation_detail(exc)) from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as exc:
        raise AlertParseError(
            f"malformed-{parser.name}", detail=f"{type(exc).__name__}: {str(exc)[:300]}"
        ) from None
    _check_ids(alert)
    if ctx.test_header and not alert.is_test:
        alert.is_test = True
        alert.extra["test_reason"] = "hop _test header"
    return alert


def _check_ids(alert: Alert) -> None:
    """Refuse an event id or source the ledger cannot key on.

    Raises:
        AlertParseError: ``invalid-event-id`` or ``invalid-source``: a control character (NUL,
            which PostgreSQL refuses in text, among them), surrounding spaces, or more than
            :data:`MAX_ID_LENGTH` characters.
    """
    for name, value in (("event-id", alert.event_id), ("source", alert.source)):
        if len(value) > MAX_ID_LENGTH or not value.isprintable() or value != value.strip():
            raise AlertParseError(
                f"invalid-{name}",
                detail=f"{value[:80]!r}: printable, without surrounding spaces, at most "
                f"{MAX_ID_LENGTH} characters",
            )


def _check_depth(document: Any) -> None:
    """Refuse a document nested deeper than :data:`MAX_DEPTH` (JSON, Avro record or XML).

    Raises:
        AlertParseError: ``too-deep``.
    """
    stack = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise AlertParseError("too-deep", detail=f"nested more than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, list | tuple | ElementTree.Element):
            stack.extend((child, depth + 1) for child in node)


def _validation_detail(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:8]:
        where = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', '')}")
    return "; ".join(parts)[:1000]


def _dispatch(container: Container, document: Any, ctx: MessageContext) -> Alert:
    _check_depth(document)
    for parser in PARSERS.values():
        if parser.container != container:
            continue
        try:
            accepted = parser.accepts(document, ctx)
        except Exception:  # a sniffing bug must not hide the other parsers
            accepted = False
        if accepted:
            return _run_parser(parser, document, ctx)
    raise AlertParseError("unknown-format", detail=_describe(container, document))


def _describe(container: Container, document: Any) -> str:
    if isinstance(document, dict):
        schema = document.get("$schema")
        if isinstance(schema, str):
            return f"JSON with $schema {schema[:200]!r} is not a supported notice type"
        keys = ", ".join(sorted(str(k) for k in document)[:12])
        return f"{container} document with keys [{keys}] matches no alert format"
    if isinstance(document, ElementTree.Element):
        return f"XML root element {document.tag[:100]!r} is not a VOEvent"
    if isinstance(document, str):
        first = document.strip().splitlines()[0][:80] if document.strip() else ""
        return f"text starting {first!r} is not a GCN Circular"
    return f"{container} document matches no alert format"


def detect_format(
    raw: bytes, *, headers: HeadersLike = None, topic: str | None = None
) -> str | None:
    """Name the format of a message without parsing it fully (None when none matches).

    Raises:
        AlertParseError: The container itself cannot be decoded (invalid JSON, XML, Avro...).
    """
    ctx = MessageContext(headers=normalise_headers(headers), topic=topic)
    container, document = decode(raw, ctx)
    for parser in PARSERS.values():
        if parser.container == container:
            try:
                if parser.accepts(document, ctx):
                    return parser.name
            except Exception:
                continue
    return None


def parse_message(
    raw: bytes,
    *,
    headers: HeadersLike = None,
    topic: str | None = None,
) -> Alert:
    """Parse one message of any supported format into a normalised :class:`Alert`.

    Args:
        raw: The message bytes exactly as received.
        headers: Kafka headers (a list of ``(name, value)`` as hop's ``Metadata.headers``, or a
            mapping). hop's ``_format`` picks the container; ``_test`` sets ``is_test``.
        topic: The topic it came from (informational).

    Returns:
        The alert; ``Alert.format`` names the parser that read it.

    Raises:
        AlertParseError: For anything empty, undecodable, unknown or invalid; ``reason`` is short
            and stable (``unknown-format``, ``invalid-json``, ``invalid-lvk-json``...), ``detail``
            says what was wrong.

    Example:
        >>> alert = parse_message(open("MS181101ab-preliminary.json", "rb").read())  # doctest: +SKIP
        >>> alert.event_id, alert.alert_type.value
        ('MS181101ab', 'PRELIMINARY')
    """
    ctx = MessageContext(headers=normalise_headers(headers), topic=topic)
    container, document = decode(raw, ctx)
    return _dispatch(container, document, ctx)


def parse_object(
    obj: Any,
    *,
    headers: HeadersLike = None,
    topic: str | None = None,
) -> Alert:
    """Parse an already decoded message: a dict, or a model object returned by hop's ``read()``.

    hop's ``read()`` hands back ``JSONBlob``/``AvroBlob``/``VOEvent``/``GCNCircular``/``Blob``
    objects; an ``AvroBlob``'s ``content`` is the record (current hop) or a one-record list
    (older hop). Both shapes are accepted, as is a plain dict (an LVK record with raw sky-map
    bytes is read as the Avro form).

    Raises:
        AlertParseError: As :func:`parse_message`.
    """
    ctx = MessageContext(headers=normalise_headers(headers), topic=topic)
    kind = type(obj).__name__
    if isinstance(obj, bytes | bytearray | memoryview):
        return parse_message(bytes(obj), headers=headers, topic=topic)
    if kind == "Blob":
        return parse_message(bytes(obj.content), headers=None, topic=topic)
    if kind == "VOEvent":
        raw = getattr(obj, "_raw", b"")
        if raw:
            return _dispatch("xml", _decode_xml(bytes(raw).decode("utf-8", "replace")), ctx)
        return _dispatch("xml", _voevent_from_dict(_dataclass_dict(obj)), ctx)
    if kind == "GCNCircular":
        return _dispatch("json", {"header": dict(obj.header), "body": obj.body}, ctx)
    if kind in {"JSONBlob", "AvroBlob"}:
        obj = obj.content
    if isinstance(obj, list):
        if len(obj) != 1:
            raise AlertParseError("unknown-format", detail=f"a list of {len(obj)} records")
        obj = obj[0]
    if not isinstance(obj, dict):
        raise AlertParseError("unknown-format", detail=f"cannot parse a {type(obj).__name__}")
    container: Container = "avro" if _has_raw_skymap(obj) else "json"
    return _dispatch(container, obj, ctx)


def _dataclass_dict(obj: Any) -> dict[str, Any]:
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    return dict(vars(obj))


def _has_raw_skymap(record: dict[str, Any]) -> bool:
    event = record.get("event")
    return isinstance(event, dict) and isinstance(event.get("skymap"), bytes | bytearray)
