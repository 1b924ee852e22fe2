"""Reports to HERMES, TNS and GCN: message builders, renderings and the clients that send them.

Submodules: :mod:`~followup.reporting.hermes`, :mod:`~followup.reporting.hermes_recovery` (sends
whose answer was lost), :mod:`~followup.reporting.tns` (the client),
:mod:`~followup.reporting.tns_models` (its answers), :mod:`~followup.reporting.at_report` (the AT
report builder), :mod:`~followup.reporting.gcn`, :mod:`~followup.reporting.delivery`,
:mod:`~followup.reporting.render`, :mod:`~followup.reporting.bands` (filters) and
:mod:`~followup.reporting.equipment` (telescopes and cameras). The clients share the HTTP
layer of :mod:`followup.http`. The most used names are re-exported here.
"""

from __future__ import annotations

from followup.reporting.at_report import (
    AtDiscovery,
    TnsReporter,
    build_at_report,
    discovery_points,
)
from followup.reporting.gcn import (
    Circular,
    CircularRecord,
    GcnCircularsClient,
    circular_email,
    draft_circular,
    subject_is_valid,
)
from followup.reporting.hermes import (
    TEST_TOPIC,
    HermesClient,
    HermesMessage,
    HermesReceipt,
    build_hermes_message,
    is_public_topic,
)
from followup.reporting.render import render_markdown
from followup.reporting.tns import TnsClient
from followup.reporting.tns_models import TnsOutcome, TnsOutcomeStatus, TnsReply

__all__ = [
    "TEST_TOPIC",
    "AtDiscovery",
    "Circular",
    "CircularRecord",
    "GcnCircularsClient",
    "HermesClient",
    "HermesMessage",
    "HermesReceipt",
    "TnsClient",
    "TnsOutcome",
    "TnsOutcomeStatus",
    "TnsReply",
    "TnsReporter",
    "build_at_report",
    "build_hermes_message",
    "circular_email",
    "discovery_points",
    "draft_circular",
    "is_public_topic",
    "render_markdown",
    "subject_is_valid",
]
