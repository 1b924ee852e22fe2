"""Blocks of the listener: which streams to read and which alerts start a follow-up."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Literal

from prefect.blocks.core import Block
from pydantic import Field

from blocks.credentials import GcnKafkaCredentials, HopCredentials
from followup.rules import TriggerRules

if TYPE_CHECKING:
    from followup.stream import AlertStream

__all__ = ["ListenerSettings", "StartedBy", "TriggerRulesBlock"]


class StartedBy(StrEnum):
    """Who starts the follow-up run of an accepted alert (and the run of a retraction)."""

    LISTENER = "listener"
    """The listener, at once, in its warm worker processes (no poll interval)."""
    TRIGGER = "trigger"
    """The ``followup`` (``retract``) deployment's event trigger, on any worker."""


class TriggerRulesBlock(TriggerRules, Block):
    """Which alerts start a follow-up: significance, FAR, HasNS, classification, area, distance.

    Every field of :class:`followup.rules.TriggerRules`; an empty field switches its rule off.

    Example:
        ```python
        from blocks import TriggerRulesBlock

        rules = TriggerRulesBlock.load("BLOCK_NAME")
        ```
    """

    _block_type_name = "Trigger Rules"
    _block_type_slug = "trigger-rules"
    _documentation_url = "https://docs.prefect.io/v3/concepts/blocks"

    def to_rules(self) -> TriggerRules:
        """The rules as the plain model the listener's core uses."""
        return TriggerRules.model_validate(
            {name: getattr(self, name) for name in TriggerRules.model_fields}
        )


class ListenerSettings(Block):
    """What the listener reads, what it lets through, and how it starts follow-up runs.

    Attributes:
        hop: The Hopskotch (or local Kafka) stream: broker, credential, topics, group id.
        gcn_kafka: An optional second stream from NASA GCN Kafka.
        rules: Trigger rules.
        followup_settings: Name of the FollowupSettings document the runs use.
        started_by: ``listener`` starts each run at once in warm worker processes; ``trigger``
            leaves it to the followup deployment's event trigger (slower by the runner's poll).
        workers: Warm worker processes for follow-up runs.
        heartbeat_interval_s: Seconds between ``followup.listener.heartbeat`` events.
        start_at: Where a new consumer group starts: ``earliest`` or ``latest``.
        recover_hours: At start, accepted alerts of the last hours that never got a run get one.
        drills_dir: The folder the ``drill`` deployment may replay alert files from (a path on
            the worker); empty: drills publish fresh mock alerts only.

    Example:
        ```python
        from blocks import ListenerSettings

        listener = ListenerSettings.load("BLOCK_NAME")
        ```
    """

    _block_type_name = "Listener Settings"
    _block_type_slug = "listener-settings"
    _documentation_url = "https://docs.prefect.io/v3/concepts/blocks"

    hop: HopCredentials
    gcn_kafka: GcnKafkaCredentials | None = None
    rules: TriggerRulesBlock
    followup_settings: str = Field(
        default="default", description="FollowupSettings document the follow-up runs use."
    )
    started_by: StartedBy = Field(
        default=StartedBy.LISTENER,
        description="Who starts follow-up runs: the listener or the trigger.",
    )
    workers: int = Field(default=2, ge=1, description="Warm worker processes for runs.")
    heartbeat_interval_s: float = Field(
        default=30.0, gt=0, description="Seconds between heartbeat events."
    )
    start_at: Literal["earliest", "latest"] = Field(
        default="earliest", description="Where a new consumer group starts reading."
    )
    recover_hours: float = Field(
        default=24.0, ge=0, description="Hours back to look for accepted alerts without a run."
    )
    drills_dir: str = Field(
        default="",
        description="Folder the drill deployment may replay alert files from; empty: none.",
    )

    def get_streams(self) -> list[AlertStream]:
        """The consumers to run: the Hopskotch (or local) stream, and GCN Kafka when set."""
        streams = [self.hop.get_stream(start_at=self.start_at)]
        if self.gcn_kafka is not None:
            streams.append(self.gcn_kafka.get_stream(start_at=self.start_at))
        return streams
