"""Blocks build what they hold: the ledger, catalogs, streams, reporters; secrets stay inside."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from blocks import (
    FollowupSettings,
    GcnKafkaCredentials,
    HopCredentials,
    ListenerSettings,
    StartedBy,
    TriggerRulesBlock,
)
from followup.catalogs import LocalCatalog, VizierCatalog
from followup.galaxies import LocalGalaxyCatalog, VizierGladeCatalog
from followup.models import utcnow
from followup.reporting.at_report import TnsReporter
from followup.stream import AlertStream, Publisher
from tests.blocks_support import followup_settings

PASSWORD = "hop-password-never-shown"


def settings(folder: Path, **fields: Any) -> FollowupSettings:
    return followup_settings(folder, vizier_server="http://127.0.0.1:9999", **fields)


def test_the_ledger_is_built_migrated_and_shared_per_database(tmp_path: Path) -> None:
    first = settings(tmp_path).get_ledger()
    assert first.alerts.without_run(since=utcnow()) == []  # migrated: the tables are there
    assert settings(tmp_path, team="another document").get_ledger() is first
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert settings(elsewhere).get_ledger() is not first


@pytest.mark.parametrize(
    ("spec", "zero_point", "candidates"),
    [
        ("frame", type(None), VizierCatalog),
        ("vizier-ps1", VizierCatalog, VizierCatalog),
        ("refcat.ecsv", LocalCatalog, LocalCatalog),
    ],
)
def test_reference_catalogs_from_the_settings(
    tmp_path: Path, spec: str, zero_point: type, candidates: type
) -> None:
    block = settings(tmp_path, reference_catalog=spec)
    assert isinstance(block.get_reference_catalog(), zero_point)
    deep = block.get_candidate_catalog()
    assert isinstance(deep, candidates)
    if isinstance(deep, VizierCatalog):  # new sources are checked against the deep catalogue
        assert deep.name == "refcat2"


def test_galaxy_catalogs_from_the_settings(tmp_path: Path) -> None:
    assert settings(tmp_path).get_galaxy_catalog() is None
    glade = settings(tmp_path, galaxy_catalog="vizier-glade").get_galaxy_catalog()
    assert isinstance(glade, VizierGladeCatalog)
    local = settings(tmp_path, galaxy_catalog="glade.csv").get_galaxy_catalog()
    assert isinstance(local, LocalGalaxyCatalog) and local.path == Path("glade.csv")


def test_the_tns_block_builds_the_reporter() -> None:
    tns = settings(Path("unused")).tns
    assert tns.get_reporter() == TnsReporter(
        reporter="A. Author (LCO)", reporting_group_id=82, discovery_data_source_id=48
    )
    # A camera id set on the block overrides the built-in table in the reports it builds.
    custom = tns.model_copy(update={"instrument_ids": {"Sinistro": 999}})
    assert custom.get_reporter().instrument_ids == {"Sinistro": 999}


def test_streams_are_built_with_a_hop_auth_and_never_show_the_password() -> None:
    from hop.auth import Auth

    open_hop = HopCredentials(broker_url="kafka://127.0.0.1:9092", topics=["igwn.gwalert"])
    assert open_hop.get_auth() is None
    stream = open_hop.get_stream(start_at="latest")
    assert isinstance(stream, AlertStream) and stream.auth is False
    assert stream.topics == ("igwn.gwalert",) and stream.group_id == "followup-listener"
    scimma = HopCredentials(
        username="me-1234", password=SecretStr(PASSWORD), topics=["igwn.gwalert"]
    )
    stream = scimma.get_stream()
    assert isinstance(stream.auth, Auth) and stream.auth.username == "me-1234"
    assert PASSWORD not in repr(stream)
    assert isinstance(scimma.get_publisher(), Publisher)
    gcn = GcnKafkaCredentials(
        client_id="id", client_secret=SecretStr("secret"), topics=["igwn.gwalert"]
    )
    assert gcn.get_stream().broker == "kafka.gcn.nasa.gov"
    listener = ListenerSettings(hop=open_hop, rules=TriggerRulesBlock())
    assert len(listener.get_streams()) == 1
    assert listener.started_by is StartedBy.LISTENER and listener.drills_dir == ""
    both = ListenerSettings(hop=open_hop, gcn_kafka=gcn, rules=TriggerRulesBlock())
    assert [s.broker for s in both.get_streams()] == ["127.0.0.1:9092", "kafka.gcn.nasa.gov"]


def test_a_stream_takes_a_hop_auth_not_a_block() -> None:
    block = HopCredentials(username="me", password=SecretStr(PASSWORD))
    with pytest.raises(TypeError, match=r"hop\.auth\.Auth"):
        AlertStream("kafka://127.0.0.1:9092", ["t"], "g", auth=block)  # type: ignore[arg-type]
