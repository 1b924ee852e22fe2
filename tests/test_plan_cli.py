"""followup plan ALERT_FILE: an alert planned as the pipeline would plan it."""

from __future__ import annotations

import json

import httpx
import respx
from typer.testing import CliRunner

from followup.cli import app

runner = CliRunner()


def test_an_lvk_alert_is_planned_with_its_strategy(samples):
    path = samples / "lvk_userguide" / "MS181101ab-preliminary.json"
    result = runner.invoke(app, ["plan", str(path), "--start", "2026-12-06T00:00:00", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output[result.output.index("{") :])
    assert out["strategy"]["name"] == "gw-bns-nsbh"
    plan = out["plan"]
    assert plan["max_airmass"] == 2.0 and plan["min_moon_distance_deg"] == 20.0
    assert 0 < len(plan["targets"]) <= 10
    assert 0 < plan["covered_probability"] <= plan["observable_probability"] <= 1
    assert out["hours"] > 0
    assert all(t["windows"] for t in plan["targets"])


VOEVENT = "lvk_userguide/MS181101ab-2-Preliminary.xml"  # carries only the sky map's URL
URL = "https://emfollow.docs.ligo.org/userguide/_static/bayestar.multiorder.fits,0"


@respx.mock
def test_a_voevent_map_is_fetched_only_from_an_allowed_host(samples):
    route = respx.get(URL).mock(
        return_value=httpx.Response(
            200, content=(samples / "lvk_userguide" / "bayestar.multiorder.fits").read_bytes()
        )
    )
    path = str(samples / VOEVENT)
    refused = runner.invoke(app, ["plan", path, "--start", "2026-12-06T00:00:00"])
    assert refused.exit_code != 0 and "not allowed" in refused.output
    assert not route.called
    result = runner.invoke(
        app,
        ["plan", path, "--start", "2026-12-06T00:00:00", "--allow-hosts", "emfollow.docs.ligo.org"],
    )
    assert result.exit_code == 0, result.output
    assert route.called
    assert "strategy gw-bns-nsbh" in result.output
    assert "next observable" in result.output
