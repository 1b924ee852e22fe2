"""Prefect Blocks: credentials and settings that build followup's clients.

Register them with ``prefect block register -m blocks``; fill them in the UI under Blocks.
"""

from blocks.credentials import (
    GcnCredentials,
    GcnKafkaCredentials,
    HermesCredentials,
    HopCredentials,
    LcoCredentials,
    TnsCredentials,
    TreasureMapCredentials,
)
from blocks.listener import ListenerSettings, StartedBy, TriggerRulesBlock
from blocks.settings import FollowupSettings

__all__ = [
    "FollowupSettings",
    "GcnCredentials",
    "GcnKafkaCredentials",
    "HermesCredentials",
    "HopCredentials",
    "LcoCredentials",
    "ListenerSettings",
    "StartedBy",
    "TnsCredentials",
    "TreasureMapCredentials",
    "TriggerRulesBlock",
]
