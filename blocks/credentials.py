"""Credentials Blocks, one per external service; each builds the client of what it holds.

Fill them in the Prefect UI (Blocks -> Add) or in code; flows load them by name and never pass
secrets as parameters. Every field that grants access is a ``SecretStr``: the UI masks it, the API
returns it obfuscated, and the server stores it encrypted. The ``get_*`` methods are the only
place a secret leaves its ``SecretStr``: the HTTP clients take the ``SecretStr`` itself (their
``httpx.Auth`` reads it per request), the Kafka streams a ``hop.auth.Auth`` built here.

The URLs default to the real (production) services: a credential is issued by the real service,
so a document filled in with one points there unless told otherwise. Test and mock alerts never
reach a production host whatever the URLs say (:mod:`followup.drills`); a sandbox is named by
its URLs and by ``FollowupSettings.sandbox_endpoints``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
from prefect.blocks.core import Block
from pydantic import Field, SecretStr

if TYPE_CHECKING:
    from hop.auth import Auth

    from followup.lco import ArchiveClient, PortalClient
    from followup.reporting.at_report import TnsReporter
    from followup.reporting.gcn import GcnCircularsClient
    from followup.reporting.hermes import HermesClient
    from followup.reporting.tns import TnsClient
    from followup.stream import AlertStream, Publisher
    from followup.treasuremap import TreasureMapClient

__all__ = [
    "GcnCredentials",
    "GcnKafkaCredentials",
    "HermesCredentials",
    "HopCredentials",
    "LcoCredentials",
    "TnsCredentials",
    "TreasureMapCredentials",
]


class LcoCredentials(Block):
    """Access to the LCO Observation Portal and Science Archive (one API token serves both).

    Attributes:
        api_token: Observation Portal API token (from the portal's profile page).
        proposal_id: Proposal whose time the requests use.
        portal_url: Root of the Observation Portal (its API is under ``/api/``).
        archive_url: Root of the Science Archive API (frames are under ``/frames/``).
        timeout_s: HTTP timeout in seconds.

    Example:
        ```python
        from blocks import LcoCredentials

        lco = LcoCredentials.load("BLOCK_NAME")
        portal = lco.get_portal_client()
        ```
    """

    _block_type_name = "LCO Credentials"
    _block_type_slug = "lco-credentials"
    _documentation_url = "https://developers.lco.global/"

    api_token: SecretStr = Field(description="Observation Portal API token.")
    proposal_id: str = Field(description="Proposal whose time the requests use.")
    portal_url: str = Field(
        default="https://observe.lco.global", description="Root URL of the Observation Portal."
    )
    archive_url: str = Field(
        default="https://archive-api.lco.global", description="Root URL of the Science Archive."
    )
    timeout_s: float = Field(default=30.0, gt=0, description="HTTP timeout in seconds.")

    def get_portal_client(self, *, transport: httpx.BaseTransport | None = None) -> PortalClient:
        """A new Observation Portal client with this token."""
        from followup.lco import PortalClient

        return PortalClient(
            self.api_token, base_url=self.portal_url, timeout=self.timeout_s, transport=transport
        )

    def get_archive_client(
        self,
        *,
        transport: httpx.BaseTransport | None = None,
        credential_source: Callable[[], SecretStr] | None = None,
    ) -> ArchiveClient:
        """A new Science Archive client with this token.

        Args:
            transport: An httpx transport to use instead of the network.
            credential_source: Reads the token again where a pickled copy of the client is
                used (a Dask worker): the copy itself carries no token.
        """
        from followup.lco import ArchiveClient

        return ArchiveClient(
            self.api_token,
            base_url=self.archive_url,
            timeout=self.timeout_s,
            transport=transport,
            credential_source=credential_source,
        )


class HermesCredentials(Block):
    """Access to HERMES, LCO's message broker front end to SCiMMA's Hopskotch.

    Attributes:
        api_token: HERMES API token (profile page; the account needs a linked SCiMMA credential).
        base_url: Root URL of HERMES (the API is under ``/api/v0/``).
        timeout_s: HTTP timeout in seconds.

    Example:
        ```python
        from blocks import HermesCredentials

        hermes = HermesCredentials.load("BLOCK_NAME")
        client = hermes.get_client()
        ```
    """

    _block_type_name = "HERMES Credentials"
    _block_type_slug = "hermes-credentials"
    _documentation_url = "https://hermes.lco.global/"

    api_token: SecretStr = Field(description="HERMES API token.")
    base_url: str = Field(default="https://hermes.lco.global", description="Root URL of HERMES.")
    timeout_s: float = Field(default=30.0, gt=0, description="HTTP timeout in seconds.")

    def get_client(self, *, transport: httpx.BaseTransport | None = None) -> HermesClient:
        """A new HERMES client with this token."""
        from followup.reporting.hermes import HermesClient

        return HermesClient(
            self.api_token, base_url=self.base_url, timeout=self.timeout_s, transport=transport
        )


class TnsCredentials(Block):
    """Access to the Transient Name Server as a bot.

    Attributes:
        api_key: The bot's API key.
        bot_id: The bot's TNS id (goes into the ``tns_marker`` User-Agent).
        bot_name: The bot's name.
        reporting_group_id: TNS id of the reporting group.
        discovery_data_source_id: TNS id of the discovery data source.
        reporter: Reporter line of AT reports (names and institutes).
        instrument_ids: TNS instrument ids by camera name (``{"Sinistro": 232}``), overriding
            and completing the built-in table of LCO's cameras; each measurement's camera is
            looked up there.
        base_url: Root URL of the TNS API (``https://sandbox.wis-tns.org/api/`` for TNS's sandbox).
        timeout_s: HTTP timeout in seconds.

    Example:
        ```python
        from blocks import TnsCredentials

        tns = TnsCredentials.load("BLOCK_NAME")
        client = tns.get_client()
        ```
    """

    _block_type_name = "TNS Credentials"
    _block_type_slug = "tns-credentials"
    _documentation_url = "https://www.wis-tns.org/content/tns-getting-started"

    api_key: SecretStr = Field(description="The bot's TNS API key.")
    bot_id: int = Field(description="The bot's TNS id.")
    bot_name: str = Field(description="The bot's name.")
    reporting_group_id: int = Field(description="TNS id of the reporting group.")
    discovery_data_source_id: int = Field(description="TNS id of the discovery data source.")
    reporter: str = Field(description="Reporter line of AT reports (names and institutes).")
    instrument_ids: dict[str, int] = Field(
        default_factory=dict,
        description="TNS instrument ids by camera name, overriding the built-in LCO table.",
    )
    base_url: str = Field(
        default="https://www.wis-tns.org/api/", description="Root URL of the TNS API."
    )
    timeout_s: float = Field(default=30.0, gt=0, description="HTTP timeout in seconds.")

    def get_reporter(self) -> TnsReporter:
        """Who reports: the reporter line and the group ids, as AT reports carry them.

        The camera's TNS id comes from each measurement's equipment
        (:mod:`followup.reporting.equipment`), with this block's ``instrument_ids`` first.
        """
        from followup.reporting.at_report import TnsReporter

        return TnsReporter(
            reporter=self.reporter,
            reporting_group_id=self.reporting_group_id,
            discovery_data_source_id=self.discovery_data_source_id,
            instrument_ids=dict(self.instrument_ids) or None,
        )

    def get_client(self, *, transport: httpx.BaseTransport | None = None) -> TnsClient:
        """A new TNS client for this bot."""
        from followup.reporting.tns import TnsClient

        return TnsClient(
            self.api_key,
            base_url=self.base_url,
            bot_id=self.bot_id,
            bot_name=self.bot_name,
            timeout=self.timeout_s,
            transport=transport,
        )


class GcnCredentials(Block):
    """Access to the GCN Circulars API (for partner applications) and the Circulars email address.

    Attributes:
        access_token: OAuth access token with the ``gcn.nasa.gov/circular-submitter`` scope.
        base_url: Root URL of GCN (``https://gcn.nasa.gov``).
        from_address: Sender address of endorsed emailers, used for the ready email text.
        timeout_s: HTTP timeout in seconds.

    Example:
        ```python
        from blocks import GcnCredentials

        gcn = GcnCredentials.load("BLOCK_NAME")
        client = gcn.get_client()
        ```
    """

    _block_type_name = "GCN Credentials"
    _block_type_slug = "gcn-credentials"
    _documentation_url = "https://gcn.nasa.gov/docs/circulars"

    access_token: SecretStr = Field(description="Bearer token for the Circulars API.")
    base_url: str = Field(default="https://gcn.nasa.gov", description="Root URL of GCN.")
    from_address: str = Field(default="", description="Sender address of Circular emails.")
    timeout_s: float = Field(default=30.0, gt=0, description="HTTP timeout in seconds.")

    def get_client(self, *, transport: httpx.BaseTransport | None = None) -> GcnCircularsClient:
        """A new GCN Circulars client with this token."""
        from followup.reporting.gcn import GcnCircularsClient

        return GcnCircularsClient(
            self.access_token, base_url=self.base_url, timeout=self.timeout_s, transport=transport
        )


class TreasureMapCredentials(Block):
    """Access to the Gravitational Wave Treasure Map, where GW follow-up pointings are shared.

    Attributes:
        api_token: The account's API token (treasuremap.space, profile page).
        base_url: Root URL of the Treasure Map.
        instrument_ids: The Treasure Map's instrument id of each LCO camera that posts
            pointings, by camera name (``{"Sinistro": 71}``); look them up on the site's
            instrument search. A camera without an id posts no pointings.
        timeout_s: HTTP timeout in seconds.

    Example:
        ```python
        from blocks import TreasureMapCredentials

        treasuremap = TreasureMapCredentials.load("BLOCK_NAME")
        client = treasuremap.get_client()
        ```
    """

    _block_type_name = "Treasure Map Credentials"
    _block_type_slug = "treasure-map-credentials"
    _documentation_url = "https://treasuremap.space/documentation"

    api_token: SecretStr = Field(description="Treasure Map API token.")
    base_url: str = Field(
        default="https://treasuremap.space", description="Root URL of the Treasure Map."
    )
    instrument_ids: dict[str, int] = Field(
        default_factory=dict,
        description="Treasure Map instrument id by LCO camera name, e.g. {'Sinistro': 71}.",
    )
    timeout_s: float = Field(default=30.0, gt=0, description="HTTP timeout in seconds.")

    def get_client(self, *, transport: httpx.BaseTransport | None = None) -> TreasureMapClient:
        """A new Treasure Map client with this token."""
        from followup.treasuremap import TreasureMapClient

        return TreasureMapClient(
            self.api_token, base_url=self.base_url, timeout=self.timeout_s, transport=transport
        )


class HopCredentials(Block):
    """A SCiMMA Hopskotch (or local Kafka) credential and the topics to read.

    Attributes:
        broker_url: Kafka URL without topics, e.g. ``kafka://kafka.scimma.org``.
        username: SCiMMA credential name; empty for a broker without authentication.
        password: SCiMMA credential password.
        topics: Topics to read (``igwn.gwalert`` ...).
        group_id: Consumer group id (Hopskotch requires it to start with the username).

    Example:
        ```python
        from blocks import HopCredentials

        hop = HopCredentials.load("BLOCK_NAME")
        stream = hop.get_stream()
        ```
    """

    _block_type_name = "Hop Credentials"
    _block_type_slug = "hop-credentials"
    _documentation_url = "https://hop-client.readthedocs.io/"

    broker_url: str = Field(default="kafka://kafka.scimma.org", description="Kafka broker URL.")
    username: str = Field(default="", description="SCiMMA credential name (empty: no auth).")
    password: SecretStr = Field(default=SecretStr(""), description="SCiMMA credential password.")
    topics: list[str] = Field(default_factory=lambda: ["igwn.gwalert"], description="Topics read.")
    group_id: str = Field(default="followup-listener", description="Consumer group id.")

    def get_auth(self) -> Auth | None:
        """A ``hop.auth.Auth`` for this credential, or None for a broker without authentication."""
        if not self.username:
            return None
        from hop.auth import Auth

        return Auth(self.username, self.password.get_secret_value())

    def get_stream(self, *, start_at: str = "earliest") -> AlertStream:
        """A consumer of :attr:`topics` in the group :attr:`group_id`, with this credential."""
        from followup.stream import AlertStream

        return AlertStream(
            self.broker_url, self.topics, self.group_id, auth=self.get_auth(), start_at=start_at
        )

    def get_publisher(self) -> Publisher:
        """A publisher to this broker with this credential (drills; the topic is chosen per send)."""
        from followup.stream import Publisher

        return Publisher(self.broker_url, auth=self.get_auth())


class GcnKafkaCredentials(Block):
    """A NASA GCN Kafka client credential and the topics to read.

    Attributes:
        client_id: GCN Kafka client id.
        client_secret: GCN Kafka client secret.
        domain: ``gcn.nasa.gov`` (or ``test.gcn.nasa.gov``).
        topics: Topics to read.
        group_id: Consumer group id.

    Example:
        ```python
        from blocks import GcnKafkaCredentials

        gcn_kafka = GcnKafkaCredentials.load("BLOCK_NAME")
        stream = gcn_kafka.get_stream()
        ```
    """

    _block_type_name = "GCN Kafka Credentials"
    _block_type_slug = "gcn-kafka-credentials"
    _documentation_url = "https://gcn.nasa.gov/docs/client"

    client_id: str = Field(description="GCN Kafka client id.")
    client_secret: SecretStr = Field(description="GCN Kafka client secret.")
    domain: str = Field(default="gcn.nasa.gov", description="GCN domain.")
    topics: list[str] = Field(default_factory=list, description="Topics to read.")
    group_id: str = Field(default="followup-listener", description="Consumer group id.")

    @property
    def broker_url(self) -> str:
        """Kafka URL of GCN's brokers for this domain."""
        return f"kafka://kafka.{self.domain}"

    def get_auth(self) -> Auth:
        """A ``hop.auth.Auth`` using GCN's OAuth client-credentials flow."""
        from adc.auth import SASLMethod
        from hop.auth import Auth

        return Auth(
            self.client_id,
            self.client_secret.get_secret_value(),
            method=SASLMethod.OAUTHBEARER,
            token_endpoint=f"https://auth.{self.domain}/oauth2/token",
        )

    def get_stream(self, *, start_at: str = "earliest") -> AlertStream:
        """A consumer of :attr:`topics` on GCN's brokers, with this client credential."""
        from followup.stream import AlertStream

        return AlertStream(
            self.broker_url, self.topics, self.group_id, auth=self.get_auth(), start_at=start_at
        )
