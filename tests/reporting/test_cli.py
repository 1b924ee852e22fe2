"""The reporting commands of the followup CLI."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from followup.cli import app
from followup.reporting.gcn import draft_circular
from tests.reporting.conftest import make_measurement


def test_render_report(tmp_path):
    circular = draft_circular("S260314ab", [make_measurement()], observers=["A"], team="T")
    path = tmp_path / "circular.json"
    path.write_text(json.dumps(circular.model_dump()))
    result = CliRunner().invoke(app, ["render-report", str(path)])
    assert result.exit_code == 0 and "**Subject:** LIGO/Virgo/KAGRA S260314ab" in result.output
    path.write_text("{}")
    assert CliRunner().invoke(app, ["render-report", str(path)]).exit_code == 2


def test_gcn_subject():
    runner = CliRunner()
    ok = runner.invoke(app, ["gcn-subject", "EP260314a: LCO optical upper limits"])
    assert ok.exit_code == 0 and "EP260314a" in ok.output
    assert runner.invoke(app, ["gcn-subject", "Fwd: EP260314a"]).exit_code == 1
