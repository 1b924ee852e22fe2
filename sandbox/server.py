"""Run every stand-in together: LCO portal and archive, HERMES, TNS, GCN, Vizier, a webhook receiver.

Each service listens on its own 127.0.0.1 port at the root of its host:port, as the real ones do
(clients written for LCO join absolute paths such as ``/api/...`` and ``/frames/...`` onto the
configured URL). The portal and the archive share one state, and the archive's frames come from
the synthetic sky, which holds the transients every measurement is checked against.

A control app (``/sandbox/config``, ``/sandbox/truth``, ``/sandbox/frames/{basename}/truth``) tells
drills, tests and the demo where everything is and what each frame really holds. The realistic
sky's vetting services stand in beside them: IMCCE SkyBoT (``skybot``), IRSA dust (``irsa``) and
the Pan-STARRS1 cutout service (``ps1``); the Gravitational Wave Treasure Map (``treasuremap``)
takes the pointings. ``followup sandbox`` runs this module in the foreground;
the demo runs ``python -m sandbox.server`` as a child process.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from sandbox import gcn, hermes, irsa_dust, ps1, skybot, tns, treasuremap, vizier, webhook
from sandbox.lco import LcoSandboxState, ScaledClock, create_archive_app, create_portal_app
from sandbox.serving import ServedApp
from sandbox.sky import SyntheticSky
from sandbox.sky.truth import frame_truth_record
from sandbox.skymaps import SkymapStore, add_skymap_routes
from sandbox.specs import FrameRenderer, FrameSpec, Transient
from sandbox.times import UtcDatetime, utcnow

__all__ = [
    "CREDENTIALS",
    "DEFAULT_SEED",
    "SEED_ENV",
    "SERVICES",
    "SandboxConfig",
    "SandboxServer",
    "SandboxUrls",
    "main",
    "sandbox_seed",
]

SERVICES = (
    "portal",
    "archive",
    "hermes",
    "tns",
    "gcn",
    "webhook",
    "vizier",
    "skybot",
    "irsa",
    "ps1",
    "treasuremap",
    "control",
)
CREDENTIALS = ("lco_token", "hermes_token", "tns_api_key", "gcn_token", "treasuremap_token")
"""Fields of :class:`SandboxUrls` that grant access: written to ``--urls-out`` only."""

DEFAULT_SEED = 20260101
"""The seed of a sandbox nobody chose one for: runs are reproducible unless asked otherwise."""

SEED_ENV = "FOLLOWUP_SANDBOX_SEED"
"""Environment variable that replays a sandbox sky (``followup demo``, the stack tests)."""


def sandbox_seed(env: Mapping[str, str] | None = None, default: int = DEFAULT_SEED) -> int:
    """The sandbox seed :data:`SEED_ENV` asks for, else ``default``.

    Args:
        env: The environment to read; the process's by default.
        default: The seed when the variable is unset or empty.

    Raises:
        ValueError: The variable is set to something other than an integer.
    """
    value = (os.environ if env is None else env).get(SEED_ENV, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{SEED_ENV} must be an integer, got {value!r}") from None


class SandboxConfig(BaseModel):
    """How to run the sandbox.

    Attributes:
        host: Interface every service binds.
        base_port: The services use ``base_port`` + 0..11 in the order of :data:`SERVICES`;
            0 gives each a free port.
        lco_token: Token the LCO portal and archive accept.
        hermes_token: Token HERMES accepts.
        tns_api_key: API key of the TNS bot.
        tns_bot_id: TNS bot id.
        tns_bot_name: TNS bot name.
        gcn_token: Bearer token the GCN Circulars API accepts.
        treasuremap_token: API token the Treasure Map stand-in accepts.
        proposal_id: The proposal the portal knows.
        completion_delay_s: Simulated seconds from submission to a request's completion.
        clock_scale: Simulated seconds per real second.
        tns_processing_delay_s: Seconds before TNS has processed a report.
        cache_dir: Where rendered frames are kept.
        renderer: ``synthetic`` (the synthetic sky, real pixels) or ``header-only`` (tiny frames).
        seed: The one seed of every random draw: the synthetic sky's stars and instruments, and
            each frame's telescope, conditions, noise and cosmic rays (derived from it and the
            exposure's stable identity). The same seed and the same requests give the same
            pixels.
        sky: ``realistic``: a sky no kinder than the real one (Sérsic galaxies where the GLADE+
            stand-in lists them, faint field galaxies, a Moffat PSF, moonlight, satellite trails,
            minor planets, hosts, NaN FWHM on flagged CAT rows; see
            :class:`sandbox.sky.SyntheticSky`), where the pipeline finds candidates by
            difference imaging. ``plain`` (the default until the realistic demo measures every
            band within 3 sigma): stars and transients only, for what catalogue matching needs
            (every galaxy and star below r = 19 would be a candidate).
        catalog_depth: Faintest r magnitude of the reference catalogue the Vizier stand-in serves.
            None: 19.0 on the realistic sky (where ATLAS-REFCAT2 stops), 23.5 on the plain one
            (every star of the synthetic field, so that catalogue matching works).
        frame_shape: Pixels of rendered frames (height, width); Sinistro is 4096 x 4096.
        transients: The transients the synthetic sky holds.
    """

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    base_port: int = Field(default=0, ge=0)
    lco_token: str = "sandbox-lco-token"
    hermes_token: str = hermes.DEFAULT_TOKEN
    tns_api_key: str = tns.DEFAULT_BOT.api_key
    tns_bot_id: int = int(tns.DEFAULT_BOT.bot_id)
    tns_bot_name: str = tns.DEFAULT_BOT.name
    gcn_token: str = gcn.DEFAULT_TOKEN
    treasuremap_token: str = treasuremap.DEFAULT_TOKEN
    proposal_id: str = "SANDBOX-001"
    completion_delay_s: float = Field(default=20.0, ge=0)
    clock_scale: float = Field(default=1.0, gt=0)
    tns_processing_delay_s: float = Field(default=1.0, ge=0)
    cache_dir: str = ".followup/sandbox-frames"
    renderer: str = "synthetic"
    seed: int = DEFAULT_SEED
    sky: Literal["realistic", "plain"] = "plain"
    catalog_depth: float | None = None
    frame_shape: tuple[int, int] = (4096, 4096)
    transients: list[Transient] = Field(default_factory=list)


class SandboxUrls(BaseModel):
    """Where each service of a running sandbox is, and the credentials it accepts."""

    portal: str
    archive: str
    hermes: str
    tns: str
    gcn: str
    webhook: str
    vizier: str
    treasuremap: str = ""
    skybot: str = ""
    irsa: str = ""
    ps1: str = ""
    control: str
    lco_token: str
    proposal_id: str
    hermes_token: str
    tns_api_key: str
    tns_bot_id: int
    tns_bot_name: str
    gcn_token: str
    treasuremap_token: str = ""


def reference_epoch(transients: list[Transient]) -> datetime:
    """When the archive's earlier frames were taken: a year before the first transient's peak."""
    first = min((t.peak_time for t in transients), default=datetime(2025, 6, 1, tzinfo=UTC))
    return datetime(first.year, first.month, first.day, tzinfo=UTC) - timedelta(days=365)


def _renderer(config: SandboxConfig, sky: SyntheticSky) -> FrameRenderer | None:
    if config.renderer == "header-only":
        return None
    if config.renderer != "synthetic":
        raise ValueError(f"unknown renderer {config.renderer!r}: use synthetic or header-only")
    return sky.render


class TruthRow(BaseModel):
    """The true AB magnitude of a transient in a band at a time."""

    name: str
    ra: float
    dec: float
    band: str
    time: UtcDatetime
    mag: float


def create_control_app(
    config: SandboxConfig,
    urls: dict[str, str],
    sky: SyntheticSky | None = None,
    lco: LcoSandboxState | None = None,
    skymaps: SkymapStore | None = None,
) -> FastAPI:
    """The sandbox's own control app: where things are, the truth, and sky maps by URL.

    Sky maps are served at GraceDB's paths (:mod:`sandbox.skymaps`), for notices that carry
    only a sky-map URL.
    """
    app = FastAPI(title="followup sandbox control")
    add_skymap_routes(app, skymaps if skymaps is not None else SkymapStore())

    @app.get("/sandbox/frames/{basename}/truth")
    def get_frame_truth(basename: str) -> dict[str, Any]:
        """What the sky holds on one science frame (see :func:`frame_truth_record`)."""
        if sky is None or lco is None:
            raise HTTPException(404, "this control app has no sky")
        specs = [
            s
            for s in lco.archive.all_frame_specs()
            if s["basename"] == basename.removesuffix(".fits.fz").removesuffix(".fits")
        ]
        if not specs:
            raise HTTPException(404, f"no frame {basename!r}")
        spec = FrameSpec.model_validate({k: v for k, v in specs[0].items() if k != "id"})
        if spec.configuration_type != "EXPOSE":
            raise HTTPException(400, f"{basename} is a calibration frame: no sky on it")
        return frame_truth_record(sky, spec)

    @app.get("/sandbox/config")
    def get_config() -> dict[str, Any]:
        return {
            "urls": urls,
            "seed": config.seed,
            "transients": [t.model_dump(mode="json") for t in config.transients],
        }

    @app.get("/sandbox/truth")
    def get_truth(band: str, time: datetime | None = None) -> list[TruthRow]:
        when = time or utcnow()
        rows = []
        for transient in config.transients:
            if band not in transient.peak_mag:
                raise HTTPException(404, f"{transient.name} has no brightness in band {band!r}")
            rows.append(
                TruthRow(
                    name=transient.name,
                    ra=transient.ra,
                    dec=transient.dec,
                    band=band,
                    time=when,
                    mag=transient.magnitude(band, when),
                )
            )
        return rows

    return app


class SandboxServer:
    """Every stand-in in this process, each on its own port.

    Example:
        >>> server = SandboxServer(SandboxConfig(renderer="header-only")).start()
        >>> server.urls.portal  # doctest: +SKIP
        'http://127.0.0.1:41234'
        >>> server.stop()
    """

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        # Remote ids must stay unique across sandbox restarts, as the real services' ids are:
        # the ledger outlives the sandbox and keys requests and frames by them.
        id_base = int(time.time() * 1000)
        realistic = config.sky == "realistic"
        depth = config.catalog_depth
        self.sky = SyntheticSky(
            seed=config.seed,
            transients=config.transients,
            shape=config.frame_shape,
            catalog_depth=depth if depth is not None else (19.0 if realistic else 23.5),
            realistic=realistic,
        )
        self.lco = LcoSandboxState(
            ScaledClock(config.clock_scale),
            _renderer(config, self.sky),
            seed=config.seed,
            token=config.lco_token,
            proposals=(config.proposal_id,),
            completion_delay_s=config.completion_delay_s,
            cache_dir=config.cache_dir,
            first_id=id_base // 1000,
            first_frame_id=id_base,
            reference_epoch=reference_epoch(config.transients),
        )
        self.hermes = hermes.HermesSandboxState({config.hermes_token: "sandbox-user"})
        self.tns = tns.TnsSandboxState(
            bots=[
                tns.TnsBot(
                    bot_id=str(config.tns_bot_id),
                    name=config.tns_bot_name,
                    api_key=config.tns_api_key,
                )
            ],
            processing_delay_s=config.tns_processing_delay_s,
            first_report_id=id_base // 1000,
        )
        self.gcn = gcn.GcnSandboxState(
            {config.gcn_token: gcn.GcnUser()}, first_circular_id=40000 + (id_base // 1000) % 50000
        )
        self.treasuremap = treasuremap.TreasureMapState(
            {config.treasuremap_token: 1}, first_id=id_base // 1000
        )
        self.webhook = webhook.WebhookState()
        self._served: dict[str, ServedApp] = {}
        self.urls: SandboxUrls | None = None

    def start(self) -> SandboxServer:
        """Bind every port and start serving."""
        apps = {
            "portal": create_portal_app(self.lco),
            "archive": create_archive_app(self.lco),
            "hermes": hermes.create_app(self.hermes),
            "tns": tns.create_app(self.tns),
            "gcn": gcn.create_app(self.gcn),
            "webhook": webhook.create_app(self.webhook),
            "vizier": vizier.create_app(self.sky),
            "treasuremap": treasuremap.create_app(self.treasuremap),
            "skybot": skybot.create_app(self.sky),
            "irsa": irsa_dust.create_app(),
            "ps1": ps1.create_app(self.sky),
        }
        port = self.config.base_port
        for offset, name in enumerate(SERVICES[:-1]):
            served = ServedApp(apps[name], host=self.config.host, port=port + offset if port else 0)
            self._served[name] = served.start()
        url_map = {name: served.url for name, served in self._served.items()}
        control_port = port + len(SERVICES) - 1 if port else 0
        control = ServedApp(
            create_control_app(self.config, url_map, self.sky, self.lco),
            host=self.config.host,
            port=control_port,
        )
        self._served["control"] = control.start()
        url_map["control"] = control.url
        c = self.config
        self.urls = SandboxUrls(
            **url_map,
            lco_token=c.lco_token,
            proposal_id=c.proposal_id,
            hermes_token=c.hermes_token,
            tns_api_key=c.tns_api_key,
            tns_bot_id=c.tns_bot_id,
            tns_bot_name=c.tns_bot_name,
            gcn_token=c.gcn_token,
            treasuremap_token=c.treasuremap_token,
        )
        return self

    def stop(self) -> None:
        """Stop every service, all at once (each waits up to 1 s for its open connections)."""
        for served in self._served.values():
            served.request_stop()
        for served in self._served.values():
            served.stop()
        self._served.clear()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """Run the sandbox until SIGINT or SIGTERM; write the URLs (and tokens) as JSON when asked."""
    parser = argparse.ArgumentParser(prog="python -m sandbox.server", description=__doc__)
    parser.add_argument("--config", type=Path, help="JSON file with a SandboxConfig")
    parser.add_argument("--urls-out", type=Path, help="write the services' URLs here as JSON")
    args = parser.parse_args(argv)
    config = (
        SandboxConfig.model_validate_json(args.config.read_text())
        if args.config
        else SandboxConfig()
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with SandboxServer(config) as server:
        assert server.urls is not None
        if args.urls_out:
            tmp = args.urls_out.with_suffix(".tmp")
            tmp.write_text(server.urls.model_dump_json(indent=2))
            tmp.replace(args.urls_out)  # readers never see half a file
        # Standard output ends up in log files: the URLs only, never the tokens.
        print(server.urls.model_dump_json(indent=2, exclude=set(CREDENTIALS)), flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
