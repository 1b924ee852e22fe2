"""Alert parsers: every wire format the listener meets, turned into one :class:`followup.models.Alert`.

Formats (registry names): ``lvk-json`` and ``lvk-avro`` (LVK ``igwn.gwalert``), ``gcn-json``
(GCN unified-schema notices), ``voevent`` (GCN Classic and legacy LVK VOEvents),
``circular-json``, ``circular-text`` and ``circular-hop`` (GCN Circulars).

Example:
    >>> from followup.alerts import parse_message
    >>> alert = parse_message(raw_bytes, headers=metadata.headers)  # doctest: +SKIP
"""

from __future__ import annotations

from followup.alerts import circulars, gcn_json, lvk, voevent  # noqa: F401  (register parsers)
from followup.alerts.registry import (
    MAX_MESSAGE_BYTES,
    PARSERS,
    MessageContext,
    Parser,
    detect_format,
    header_uuid,
    normalise_headers,
    parse_message,
    parse_object,
    register_parser,
)

__all__ = [
    "MAX_MESSAGE_BYTES",
    "PARSERS",
    "MessageContext",
    "Parser",
    "detect_format",
    "header_uuid",
    "normalise_headers",
    "parse_message",
    "parse_object",
    "register_parser",
]
