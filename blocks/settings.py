"""The settings Block a follow-up run loads by name: where things are and how to observe and report.

One document per environment: ``sandbox`` (the demo's local stand-ins) or ``production`` (the real
services). Flows take only its name as a parameter, so no secret ever becomes a flow parameter.
The block builds what it holds: the ledger (its URL may hold a password, unwrapped here only),
the catalogs, the strategies.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from blocks.credentials import (
    GcnCredentials,
    HermesCredentials,
    LcoCredentials,
    TnsCredentials,
    TreasureMapCredentials,
)
from followup.ledger import Ledger
from followup.strategies import StrategyBook, load_strategies

if TYPE_CHECKING:  # the catalogs pull in astropy and astroquery: imported when built
    from followup.catalogs import ReferenceCatalog
    from followup.galaxies import GalaxyCatalog

__all__ = ["FollowupSettings"]

_ledgers: dict[str, Ledger] = {}
_ledgers_lock = threading.Lock()


class FollowupSettings(Block):
    """Everything a follow-up run needs: the ledger, the services, and how to observe and report.

    Attributes:
        ledger_url: SQLAlchemy URL of the ledger (may hold a database password).
        state_dir: Directory for downloaded frames, plots and other run files.
        lco: LCO portal and archive credentials.
        hermes: HERMES credentials.
        tns: TNS bot credentials.
        gcn: GCN Circulars credentials.
        treasuremap: Treasure Map credentials; None to share no pointings.
        strategies_yaml: Observing strategies and approval rules as YAML; empty for the
            packaged defaults.
        reference_catalog: ``frame`` (the frame's own CAT and L1ZP), ``vizier-<name>``
            (``vizier-refcat2``, ``vizier-ps1``...), or the path of a local catalog file.
        vizier_server: Vizier mirror used by ``vizier-*`` catalogs.
        galaxy_catalog: Galaxy catalog for galaxy targeting: empty (tile the sky map only),
            ``vizier-glade`` (GLADE+ through Vizier) or the path of a local GLADE+-like file.
        max_targets: Most targets planned per alert (the strategy may lower it).
        candidate_min_frames: A transient candidate must be found on at least this many frames
            (2 rejects noise peaks and artefacts seen once; 1 accepts single-image discoveries).
        difference_imaging: Find and measure candidates on the difference of each field frame
            and an earlier archive frame of the field (fetched once per field and band), vetted
            (score, stars, minor planets); off: sources absent from the candidate catalogue.
        skybot_url: IMCCE SkyBoT cone search for the minor-planet check (the real one is
            ``https://ssp.imcce.fr/webservices/skybot/api/conesearch.php``); empty: not checked.
        planning_span_hours: Visibility windows are searched this far ahead.
        approval_timeout_s: How long a run waits for a person before counting it as declined.
        poll_interval_s: Seconds between batched status queries while a run waits for LCO.
        max_wait_s: How long a follow-up run waits for its requests before leaving the rest to
            the ``refresh-requests`` schedule.
        hermes_topic: HERMES topic for photometry; anything but a test topic needs approval.
        send_tns: Send AT reports of new candidates to TNS (after approval).
        send_gcn: Submit GCN Circulars through the API (after approval); otherwise drafts only.
        team: Team name used in reports.
        irsa_dust_url: IRSA's dust service, for the Galactic extinction at each candidate in
            Circulars; empty to leave it out.
        authors: Authors of reports, one entry each (``A. Author (Institute)``).
        plots_base_url: Public URL of ``state_dir/plots`` for image artifacts; empty to embed
            plots in markdown artifacts instead.
        dask_address: Address of a Dask scheduler (``tcp://host:8786``) for per-frame work;
            empty for a thread pool in the run's process.
        sandbox_endpoints: The four services of this document are stand-ins (the local sandbox,
            HERMES dev, TNS's sandbox, GCN's test site): test and mock alerts may reach them.
            Off (the default), a test or mock alert is never submitted or reported; on, it still
            never reaches a production host (see :mod:`followup.drills`).

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
    treasuremap: TreasureMapCredentials | None = Field(
        default=None, description="Treasure Map credentials; empty to share no pointings."
    )
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
    difference_imaging: bool = Field(
        default=False, description="Find candidates on differences against archive references."
    )
    skybot_url: str = Field(
        default="", description="SkyBoT cone search for minor planets; empty: not checked."
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
    irsa_dust_url: str = Field(
        default="https://irsa.ipac.caltech.edu/cgi-bin/DUST/nph-dust",
        description="IRSA dust service for Galactic extinction in Circulars; empty for none.",
    )
    authors: list[str] = Field(
        default_factory=lambda: ["followup bot (LCO)"],
        description="Authors of reports, one entry each, e.g. 'A. Author (LCO)'.",
    )
    plots_base_url: str = Field(default="", description="Public URL of the plots directory.")
    dask_address: str = Field(
        default="", description="Dask scheduler for per-frame work; empty for a local thread pool."
    )
    sandbox_endpoints: bool = Field(
        default=False,
        description="The services here are sandboxes: test and mock alerts may reach them "
        "(never a production host).",
    )

    @property
    def plots_dir(self) -> Path:
        """Where plots are written."""
        return Path(self.state_dir) / "plots"

    @property
    def frames_dir(self) -> Path:
        """Where frames are downloaded (a cache keyed by basename and version)."""
        return Path(self.state_dir) / "frames"

    @property
    def references_dir(self) -> Path:
        """Where reference frames are cached, one per field and band."""
        return Path(self.state_dir) / "references"

    @property
    def products_dir(self) -> Path:
        """Where frame products (differences, their errors, candidate cutouts) are written."""
        return Path(self.state_dir) / "products"

    def get_ledger(self) -> Ledger:
        """The ledger at ``ledger_url``, migrated; one per database per process.

        The first call opens the database (an engine and its connection pool) and migrates it;
        later calls with the same URL, from any document, return that ledger, so a warm worker
        serving many runs opens its database once.
        """
        url = self.ledger_url.get_secret_value()
        with _ledgers_lock:
            ledger = _ledgers.get(url)
            if ledger is None:
                ledger = Ledger(url)
                ledger.migrate()
                _ledgers[url] = ledger
            return ledger

    def get_strategies(self) -> StrategyBook:
        """Observing strategies and approval rules: ``strategies_yaml``, else the packaged ones."""
        return load_strategies(self.strategies_yaml or None)

    def get_reference_catalog(self) -> ReferenceCatalog | None:
        """Reference stars for zero points; None means each frame's own CAT and L1ZP."""
        from followup.catalogs import LocalCatalog, VizierCatalog

        spec = self.reference_catalog
        if spec == "frame":
            return None
        if spec.startswith("vizier-"):
            return VizierCatalog(spec.removeprefix("vizier-"), server=self.vizier_server)
        return LocalCatalog(spec)

    def get_candidate_catalog(self) -> ReferenceCatalog:
        """The deep catalogue new sources are checked against: a local file, else ATLAS-REFCAT2.

        A frame's own catalogue cannot tell a new source from an old one, so ``frame`` and every
        Vizier choice check candidates against ATLAS-REFCAT2 on ``vizier_server``.
        """
        from followup.catalogs import LocalCatalog, VizierCatalog

        spec = self.reference_catalog
        if spec != "frame" and not spec.startswith("vizier-"):
            return LocalCatalog(spec)
        return VizierCatalog("refcat2", server=self.vizier_server)

    def get_galaxy_catalog(self) -> GalaxyCatalog | None:
        """Galaxies for galaxy targeting; None when ``galaxy_catalog`` is empty (tile only)."""
        from followup.galaxies import LocalGalaxyCatalog, VizierGladeCatalog

        spec = self.galaxy_catalog
        if not spec:
            return None
        if spec == "vizier-glade":
            return VizierGladeCatalog(server=self.vizier_server)
        return LocalGalaxyCatalog(spec)
