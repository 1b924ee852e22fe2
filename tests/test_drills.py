"""Drills stay drills: the fence around test alerts, and the drills folder (followup.drills)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from followup.alerts import parse_message
from followup.alerts.mock import make_lvk_alert
from followup.drills import (
    MAX_DRILL_FILE_BYTES,
    DrillFenced,
    DrillFileError,
    check_drill_fence,
    is_production_url,
    read_drill_file,
)

MOCK = parse_message(make_lvk_alert("MS250101ab", "PRELIMINARY"))
REAL = parse_message(make_lvk_alert("S250101ab", "PRELIMINARY"))


@pytest.mark.parametrize(
    ("url", "production"),
    [
        ("https://observe.lco.global", True),
        ("https://archive-api.lco.global/", True),
        ("https://hermes.lco.global", True),
        ("https://www.wis-tns.org/api/", True),
        ("https://gcn.nasa.gov", True),
        ("https://GCN.NASA.GOV.", True),
        ("https://hermes-dev.lco.global", False),
        ("https://sandbox.wis-tns.org/api/", False),
        ("https://test.gcn.nasa.gov", False),
        ("http://127.0.0.1:8501", False),
        ("https://observe.lco.global.example.org", False),
    ],
)
def test_production_hosts(url: str, production: bool) -> None:
    assert is_production_url(url) is production


def test_a_real_alert_passes_the_fence_everywhere() -> None:
    assert not REAL.is_test
    for sandbox in (False, True):
        check_drill_fence(
            REAL, service="TNS", url="https://www.wis-tns.org/api/", sandbox_endpoints=sandbox
        )


@pytest.mark.parametrize("sandbox_endpoints", [False, True])
@pytest.mark.parametrize(
    ("service", "url"),
    [
        ("LCO", "https://observe.lco.global"),
        ("HERMES", "https://hermes.lco.global"),
        ("TNS", "https://www.wis-tns.org/api/"),
        ("GCN", "https://gcn.nasa.gov"),
    ],
)
def test_a_mock_alert_never_reaches_a_production_host(
    service: str, url: str, sandbox_endpoints: bool
) -> None:
    with pytest.raises(DrillFenced, match=f"{service} at {url} is a production service"):
        check_drill_fence(MOCK, service=service, url=url, sandbox_endpoints=sandbox_endpoints)


def test_a_mock_alert_reaches_a_sandbox_only_when_the_settings_say_so() -> None:
    with pytest.raises(DrillFenced, match="sandbox_endpoints is off") as caught:
        check_drill_fence(
            MOCK, service="HERMES", url="http://127.0.0.1:8503", sandbox_endpoints=False
        )
    assert "MS250101ab is a drill (mock or test superevent)" in str(caught.value)
    check_drill_fence(MOCK, service="HERMES", url="http://127.0.0.1:8503", sandbox_endpoints=True)


# ------------------------------------------------------------------ the drills folder


@pytest.fixture
def drills(tmp_path: Path) -> Path:
    folder = tmp_path / "drills"
    (folder / "lvk").mkdir(parents=True)
    (folder / "lvk" / "mock.json").write_bytes(b'{"alert": 1}')
    (tmp_path / "secret.txt").write_text("SECRET-FIRST-LINE\n")
    return folder


def test_a_file_inside_the_folder_is_read(drills: Path) -> None:
    assert read_drill_file(drills, "lvk/mock.json") == b'{"alert": 1}'
    assert read_drill_file(str(drills), str(drills / "lvk" / "mock.json")) == b'{"alert": 1}'


@pytest.mark.parametrize(
    "name",
    [
        "../secret.txt",
        "lvk/../../secret.txt",
        "/etc/hostname",
        "link.txt",
        "lvk/dirlink/secret.txt",
    ],
)
def test_paths_outside_the_folder_are_refused(drills: Path, name: str) -> None:
    os.symlink(drills.parent / "secret.txt", drills / "link.txt")
    os.symlink(drills.parent, drills / "lvk" / "dirlink")
    with pytest.raises(DrillFileError, match="outside the drills folder") as caught:
        read_drill_file(drills, name)
    assert "SECRET" not in str(caught.value)


def test_what_cannot_be_read_is_refused_without_its_content(drills: Path, tmp_path: Path) -> None:
    with pytest.raises(DrillFileError, match="no drills folder is configured"):
        read_drill_file("", "lvk/mock.json")
    with pytest.raises(DrillFileError, match="does not exist"):
        read_drill_file(tmp_path / "nowhere", "x.json")
    with pytest.raises(DrillFileError, match="not a readable file"):
        read_drill_file(drills, "lvk/missing.json")
    with pytest.raises(DrillFileError, match="not a regular file"):
        read_drill_file(drills, "lvk")
    with pytest.raises(DrillFileError, match="outside"):
        read_drill_file(drills, ".")
    big = drills / "big.json"
    with big.open("wb") as handle:
        handle.truncate(MAX_DRILL_FILE_BYTES + 1)
    with pytest.raises(DrillFileError, match="at most"):
        read_drill_file(drills, "big.json")
