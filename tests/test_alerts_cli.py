"""``followup parse``: astronomers inspect an alert; the sky map is summarised, never dumped."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from followup.cli import app
from tests.alert_helpers import DATA

runner = CliRunner()


def parse(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["parse", *args])
    return result.exit_code, result.output


def test_parse_prints_the_normalised_alert() -> None:
    code, out = parse(str(DATA / "lvk-MS250101cd-update-extcoinc.json"))
    assert code == 0, out
    assert "event:          MS250101cd  UPDATE" in out
    assert "test/drill:     yes (mock or test superevent)" in out
    assert "classification: BNS 0.95" in out
    assert "distance:       120 ± 30 Mpc" in out
    assert "external:       Swift GRB" in out
    assert "sky map:        8640 bytes" in out


def test_parse_json_summarises_the_sky_maps() -> None:
    code, out = parse("--json", str(DATA / "lvk-MS250101cd-update-extcoinc.json"))
    assert code == 0
    document = json.loads(out)
    assert document["event_id"] == "MS250101cd"
    assert document["skymap"]["bytes"] == 8640
    assert document["skymap"]["header"]["ORDERING"] == "NUNIQ"
    assert document["external_coinc"]["combined_skymap"]["bytes"] == 8640
    assert len(out) < 20_000  # no base64 map in it


def test_parse_json_gives_the_area_when_the_skymap_module_is_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class FakeSky:
        def __init__(self, data: bytes) -> None:
            self.size = len(data)

        def area(self, level: float) -> float:
            assert level == 0.9
            return 31.5

    fake = types.ModuleType("followup.skymap")
    fake.read_skymap = FakeSky  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "followup.skymap", fake)
    code, out = parse("--json", str(DATA / "lvk-S250101ab-preliminary.json"))
    assert code == 0
    assert json.loads(out)["skymap"]["area90_deg2"] == 31.5
    code, text = parse(str(DATA / "lvk-S250101ab-preliminary.json"))
    assert "90% area 31.5 deg2" in text


def test_parse_without_the_skymap_module_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "followup.skymap", None)  # import fails
    code, out = parse("--json", str(DATA / "lvk-S250101ab-preliminary.json"))
    skymap = json.loads(out)["skymap"]
    assert code == 0 and skymap["area90_deg2"] is None
    assert "not installed" in skymap["area_note"]


@pytest.mark.parametrize(
    "name",
    [
        "voevent-swift-xrt-pos.xml",
        "gcn-icecube-gold-track.json",
        "circular-41235.gcn3",
        "lvk-S250101ab-retraction.json",
    ],
)
def test_parse_every_family(name: str) -> None:
    code, out = parse(str(DATA / name))
    assert code == 0 and "event:" in out
    code, out = parse("--json", str(DATA / name))
    assert code == 0 and json.loads(out)["format"]


def test_parse_invalid_and_missing_files_exit_2(tmp_path: Path) -> None:
    code, out = parse(str(DATA / "invalid-lvk-truncated.json"))
    assert code == 2 and "invalid-json" in out
    code, out = parse("--json", str(DATA / "invalid-xml-entities.xml"))
    assert code == 2 and json.loads(out.splitlines()[0] + "".join(out.splitlines()[1:4]))
    code, out = parse(str(tmp_path / "nope.json"))
    assert code == 2 and "cannot read" in out


def test_parse_sample_files(samples: Path) -> None:
    for path in (
        "lvk_userguide/MS181101ab-preliminary.avro",
        "lvk_userguide/MS181101ab-ext-update.json",
        "skyportal/SWIFT_1125809-104.xml",
        "gcn_schema/notices__icecube__lvk_nu_track_search.example.json",
        "hop_client/circular_40_GRB980329.gcn3",
    ):
        code, out = parse("--json", str(samples / path))
        assert code == 0, (path, out)
        document = json.loads(out)
        assert document["event_id"]
    code, out = parse(str(samples / "lvk_userguide/MS181101ab-ext-update.json"))
    assert "distance:       39.77 ± 8.31 Mpc" in out
    assert "external:       Fermi GRB, dt 2.02 s" in out


def test_parse_sample_runs_as_the_console_script(samples: Path) -> None:
    import subprocess

    result = subprocess.run(
        [sys.executable, "-c", "from deployments.cli import main; main()", "parse",
         str(samples / "skyportal/AMON.xml")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "event:          IceCube-136973_28816141  INITIAL" in result.stdout
