"""The settings Block a follow-up run loads by name: where things are and how to observe and report.

One document per environment: ``sandbox`` (the demo's local stand-ins) or ``production`` (the real
services). Flows take only its name as a parameter, so no secret ever becomes a flow parameter.
"""

from __future__ import annotations

from pathlib import Path

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from blocks.credentials import GcnCredentials, HermesCredentials, LcoCredentials, TnsCredentials

__all__ = ["FollowupSettings"]


class FollowupSettings(Block):
    """Everything a follow-up run needs: the ledger, the services, and how to observe and report.

    Attributes:
        ledger_url: SQLAlchemy URL of the ledger (may hold a database password).
        state_dir: Directory for downloaded frames, plots and other run files.
        lco: LCO portal and archive credentials.
        hermes: HERMES credentials.
        tns: TNS bot credentials.
        gcn: GCN Circulars credentials.
        strategies_yaml: Observing strategies and approval rules as YAML; empty for the
            packaged defaults.
        reference_catalog: ``frame`` (the frame's own CAT and L1ZP), ``vizier-refcat2``, or the
            path of a local catalog file.
        vizier_server: Vizier mirror used by ``vizier-*`` catalogs.
        galaxy_catalog: Galaxy catalog for galaxy targeting: empty (tile the sky map only),
            ``vizier-glade`` (GLADE+ through Vizier) or the path of a local GLADE+-like file.
        max_targets: Most targets planned per alert (the strategy may lower it).
        candidate_min_frames: A transient candidate must be found on at least this many frames
            (2 rejects noise peaks and artefacts seen once; 1 accepts single-image discoveries).
        planning_span_hours: Visibility windows are searched this far ahead.
        approval_timeout_s: How long a run waits for a person before counting it as declined.
        poll_interval_s: Seconds between batched status queries while a run waits for LCO.
        max_wait_s: How long a follow-up run waits for its requests before leaving the rest to
            the ``refresh-requests`` schedule.
        hermes_topic: HERMES topic for photometry; anything but a test topic needs approval.
        send_tns: Send AT reports of new candidates to TNS (after approval).
        send_gcn: Submit GCN Circulars through the API (after approval); otherwise drafts only.
        team: Team name used in reports.
        authors: Authors of reports, one entry each (``A. Author (Institute)``).
        plots_base_url: Public URL of ``state_dir/plots`` for image artifacts; empty to embed
            plots in markdown artifacts instead.
        dask_address: Address of a Dask scheduler (``tcp://host:8786``) for per-frame work;
            empty for a thread pool in the run's process.

    Example:
        ```python
        from blocks import FollowupSettings

        settings = FollowupSettings.load("BLOCK_NAME")
        ```
    """

    _block_type_name = "Followup Settings"
    _block_type_slug = "followup-settings"
    _documentation_url = "https://docs.prefect.io/v3/concepts/blocks"

    ledger_url: SecretStr = Field(description="SQLAlchemy URL of the ledger.")
    state_dir: str = Field(default=".followup", description="Directory for frames and plots.")
    lco: LcoCredentials
    hermes: HermesCredentials
    tns: TnsCredentials
    gcn: GcnCredentials
    strategies_yaml: str = Field(
        default="", description="Observing strategies as YAML; empty for the packaged defaults."
    )
    reference_catalog: str = Field(
        default="frame", description="Reference stars: frame, vizier-refcat2, or a file path."
    )
    vizier_server: str = Field(default="vizier.cds.unistra.fr", description="Vizier mirror.")
    galaxy_catalog: str = Field(
        default="", description="Galaxies: empty (tile only), vizier-glade, or a file path."
    )
    max_targets: int = Field(default=5, ge=1, description="Most targets planned per alert.")
    candidate_min_frames: int = Field(
        default=2, ge=1, description="A candidate must be found on at least this many frames."
    )
    planning_span_hours: float = Field(
        default=24.0, gt=0, description="Visibility windows are searched this far ahead."
    )
    approval_timeout_s: int = Field(
        default=1800, ge=1, description="Seconds a run waits for a person before declining."
    )
    poll_interval_s: float = Field(
        default=30.0, gt=0, description="Seconds between batched LCO status queries."
    )
    max_wait_s: float = Field(
        default=600.0, ge=0, description="Seconds a run waits for LCO before handing over."
    )
    hermes_topic: str = Field(default="hermes.test", description="HERMES topic for photometry.")
    send_tns: bool = Field(default=True, description="Send AT reports of new candidates.")
    send_gcn: bool = Field(default=False, description="Submit GCN Circulars through the API.")
    team: str = Field(default="the followup team", description="Team name used in reports.")
    authors: list[str] = Field(
        default_factory=lambda: ["followup bot (LCO)"],
        description="Authors of reports, one entry each, e.g. 'A. Author (LCO)'.",
    )
    plots_base_url: str = Field(default="", description="Public URL of the plots directory.")
    dask_address: str = Field(
        default="", description="Dask scheduler for per-frame work; empty for a local thread pool."
    )

    @property
    def plots_dir(self) -> Path:
        """Where plots are written."""
        return Path(self.state_dir) / "plots"

    @property
    def frames_dir(self) -> Path:
        """Where frames are downloaded (a cache keyed by basename and version)."""
        return Path(self.state_dir) / "frames"
