"""plan_targets end to end: strategies, dropped targets, tables, plots and the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from astropy import units as u
from astropy.utils.data import conf as data_conf
from typer.testing import CliRunner

from followup.cli import app
from followup.exceptions import ServiceUnavailable, SkymapError, TargetingError
from followup.galaxies import LocalGalaxyCatalog
from followup.models import Alert, AlertKind, AlertType, ErrorRegion, SkyPosition, TargetKind
from followup.skymap import make_gaussian_skymap, read_skymap
from followup.targeting import GalaxyRule, Plan, plan_targets, plot_plan

# On 2026-09-01 the Sun is near RA 160: RA 350 is up at night from the southern sites.
START = datetime(2026, 9, 1, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def offline():
    with data_conf.set_temp("allow_internet", False):
        yield


@pytest.fixture(scope="module")
def gw_bytes() -> bytes:
    return make_gaussian_skymap(
        350.0, -20.0, 1.5, distance_mpc=80.0, distance_sigma_mpc=15.0, object_name="S260901x"
    )


def gw_alert(skymap: bytes | None, **kwargs) -> Alert:
    values = {
        "source": "LVK",
        "kind": AlertKind.GW,
        "format": "lvk-json",
        "event_id": "S260901x",
        "alert_type": AlertType.PRELIMINARY,
        "issued_at": START,
        "skymap": skymap,
    }
    values.update(kwargs)
    return Alert(**values)


@pytest.fixture(scope="module")
def catalog_file(tmp_path_factory) -> str:
    """A GLADE+-format CSV: 30 galaxies in the volume, one bright at the peak, plus decoys."""
    rng = np.random.default_rng(4)
    n = 30
    rows = {
        "GLADE no": np.arange(1, n + 4),
        "GWGC name": [f"GAL{i:03d}" for i in range(n)] + ["PEAKGAL", "FARGAL", "OFFGAL"],
        "RA": np.r_[350.0 + rng.normal(0, 1.0, n), 350.0, 350.0, 10.0],
        "DEC": np.r_[-20.0 + rng.normal(0, 1.0, n), -20.0, -20.0, -20.0],
        "d_L": np.r_[rng.normal(80, 10, n), 80.0, 250.0, 80.0],
        "B": np.full(n + 3, 15.0),
        "K": np.full(n + 3, 11.0),
        "M*": np.r_[np.full(n, 1.0), 5.0, 5.0, 5.0],
    }
    path = tmp_path_factory.mktemp("cat") / "glade.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


# ------------------------------------------------------------------ tiling


def test_tiling_plan_for_a_gw_map(gw_bytes):
    plan = plan_targets(gw_alert(gw_bytes), max_targets=6, start=START)
    assert plan.strategy == "tiling"
    assert plan.strategy_reason == "no galaxy catalog configured"
    assert len(plan.targets) == 6
    assert [t.rank for t in plan.targets] == [1, 2, 3, 4, 5, 6]
    assert all(
        t.kind is TargetKind.FIELD and t.instrument_type == "1M0-SCICAM-SINISTRO"
        for t in plan.targets
    )
    assert all(t.windows for t in plan.targets)
    cum = [t.cumulative_probability for t in plan.targets]
    assert cum == sorted(cum)
    assert plan.covered_probability == pytest.approx(sum(t.probability for t in plan.targets))
    assert plan.area90_deg2 == pytest.approx(np.pi * 1.5**2 * -2 * np.log(0.1), rel=0.01)
    assert plan.skymap_summary["object"] == "S260901x"
    assert plan.dropped == []
    # Same alert, same names (request names are built from them).
    again = plan_targets(gw_alert(gw_bytes), max_targets=6, start=START)
    assert [t.name for t in again.targets] == [t.name for t in plan.targets]


def test_plan_accepts_a_decoded_map_and_other_instruments(gw_bytes):
    sky = read_skymap(gw_bytes)
    plan = plan_targets(
        gw_alert(None), skymap=sky, instrument_type="0M4-SCICAM-QHY600", max_targets=3, start=START
    )
    assert plan.instrument_type == "0M4-SCICAM-QHY600"
    # Three 1.9 x 1.3 deg fields on a sigma = 1.5 deg blob: about 0.16 + 2 x 0.11.
    assert plan.covered_probability == pytest.approx(0.38, abs=0.03)


def test_unobservable_map_drops_fields_with_reasons():
    # RA 165 is next to the Sun on 2026-09-01.
    data = make_gaussian_skymap(165.0, 8.0, 1.0)
    with pytest.raises(TargetingError, match="Sun is above"):
        plan_targets(gw_alert(data), max_targets=3, start=START)
    plan = plan_targets(gw_alert(data), max_targets=3, start=START, allow_empty=True)
    assert plan.targets == []
    assert plan.dropped
    assert all("Sun is above -12" in d.reason for d in plan.dropped)
    assert plan.covered_probability == 0


def test_partly_observable_map_keeps_the_observable_fields():
    # Near the south pole only Dec > -83.70 reaches airmass 1.6 (from Sutherland, -32.38):
    # fields closer to the pole are dropped as never observable, the others kept.
    data = make_gaussian_skymap(0.0, -84.0, 1.5)
    plan = plan_targets(gw_alert(data), max_targets=3, start=START, allow_empty=True)
    assert plan.targets
    assert all(t.dec > -83.71 for t in plan.targets)
    never = [d for d in plan.dropped if "never below airmass" in d.reason]
    assert never
    assert all(d.dec < -83.69 for d in never)


def test_combined_skymap_is_preferred(gw_bytes):
    from followup.models import ExternalCoincidence

    combined = make_gaussian_skymap(351.0, -21.0, 0.5, distance_mpc=80.0)
    alert = gw_alert(
        gw_bytes,
        alert_type=AlertType.UPDATE,
        external_coinc=ExternalCoincidence(observatory="Fermi", combined_skymap=combined),
    )
    plan = plan_targets(alert, max_targets=2, start=START)
    assert plan.strategy_reason.startswith("sky map combined with Fermi")
    assert plan.area90_deg2 == pytest.approx(np.pi * 0.25 * -2 * np.log(0.1), rel=0.02)
    plain = plan_targets(alert, max_targets=2, start=START, use_combined_skymap=False)
    assert plain.area90_deg2 > 10


# ------------------------------------------------------------------ galaxies


def test_galaxy_plan_when_the_volume_holds_few_galaxies(gw_bytes, catalog_file):
    catalog = LocalGalaxyCatalog(catalog_file)
    plan = plan_targets(gw_alert(gw_bytes), max_targets=5, start=START, catalog=catalog)
    assert plan.strategy == "galaxies"
    assert 20 <= plan.n_galaxies_in_volume <= 32
    assert plan.targets[0].name == "PEAKGAL"
    assert all(t.kind is TargetKind.GALAXY and t.distance_mpc for t in plan.targets)
    names = [t.name for t in plan.targets]
    assert "FARGAL" not in names and "OFFGAL" not in names
    assert plan.catalog == catalog.name
    assert 0 < plan.covered_probability < 1


def test_more_galaxies_than_the_facility_takes_keep_the_top_of_the_ranking_packed(
    gw_bytes, catalog_file
):
    catalog = LocalGalaxyCatalog(catalog_file)
    alert = gw_alert(gw_bytes)
    full = plan_targets(alert, max_targets=40, start=START, catalog=catalog)
    order = [t.name for t in full.targets]  # 40 > the galaxies: each its own target
    assert full.strategy == "galaxies" and "packed" not in full.strategy_reason
    top = plan_targets(
        alert, start=START, max_targets=40, catalog=catalog, galaxy_rule=GalaxyRule(max_galaxies=10)
    )
    assert top.strategy == "galaxies"  # not tiling: the best of the 3-D ranking
    assert "the top 10 of the 3-D ranking" in top.strategy_reason
    assert [t.name for t in top.targets] == [n for n in order if n in {t.name for t in top.targets}]
    assert {t.name for t in top.targets} <= set(order[:10]) and top.targets[0].name == "PEAKGAL"
    # Fewer targets than galaxies: galaxies share fields, each field's probability their sum.
    packed = plan_targets(
        alert, start=START, max_targets=3, catalog=catalog, galaxy_rule=GalaxyRule(max_galaxies=10)
    )
    assert "packed into" in packed.strategy_reason and len(packed.targets) == 3
    singles = {t.name: t.probability for t in top.targets}
    assert packed.targets[0].name == "PEAKGAL"
    assert packed.targets[0].probability >= singles["PEAKGAL"]
    probabilities = [t.probability for t in packed.targets]
    assert probabilities == sorted(probabilities, reverse=True)
    assert packed.covered_probability >= sum(sorted(singles.values(), reverse=True)[:3]) - 1e-9


def test_galaxy_rule_thresholds_fall_back_to_tiling(gw_bytes, catalog_file):
    catalog = LocalGalaxyCatalog(catalog_file)
    far = plan_targets(
        gw_alert(gw_bytes),
        start=START,
        catalog=catalog,
        galaxy_rule=GalaxyRule(max_distance_mpc=50),
    )
    assert far.strategy == "tiling" and "beyond the catalog limit" in far.strategy_reason
    off = plan_targets(
        gw_alert(gw_bytes), start=START, catalog=catalog, galaxy_rule=GalaxyRule(enabled=False)
    )
    assert off.strategy == "tiling"
    no_distance = plan_targets(
        gw_alert(make_gaussian_skymap(350.0, -20.0, 1.5)), start=START, catalog=catalog
    )
    assert "no distance" in no_distance.strategy_reason


def test_unavailable_catalog_falls_back_to_tiling(gw_bytes):
    class Down:
        name = "down"

        def query(self, **kwargs):
            raise ServiceUnavailable("Vizier timed out")

    plan = plan_targets(gw_alert(gw_bytes), start=START, catalog=Down())
    assert plan.strategy == "tiling"
    assert "unavailable" in plan.strategy_reason


# ------------------------------------------------------------------ well-localised sources


def position_alert(radius: float, event_id: str = "GRB 260901A") -> Alert:
    return Alert(
        source="Swift",
        kind=AlertKind.GAMMA_RAY,
        format="gcn-json",
        event_id=event_id,
        alert_type=AlertType.INITIAL,
        issued_at=START,
        position=SkyPosition(ra=350.0, dec=-20.0, error=ErrorRegion(radius_deg=radius)),
    )


def test_small_error_circle_is_one_point_target():
    plan = plan_targets(position_alert(3 / 3600), start=START)
    assert plan.strategy == "point"
    (target,) = plan.targets
    assert target.kind is TargetKind.POINT
    assert target.name == "GRB_260901A"
    assert (target.ra, target.dec) == (350.0, -20.0)
    assert target.probability == 1.0
    numbered = plan_targets(position_alert(0.01, event_id="1125809"), start=START)
    assert numbered.targets[0].name == "Swift-1125809"


def test_large_error_circle_is_tiled():
    plan = plan_targets(position_alert(1.5), max_targets=4, start=START)
    assert plan.strategy == "tiling"
    assert "larger than" in plan.strategy_reason
    assert len(plan.targets) == 4
    assert all(t.kind is TargetKind.FIELD for t in plan.targets)
    # The 90% area of the Gaussian made from the circle is the circle's area.
    assert plan.area90_deg2 == pytest.approx(np.pi * 1.5**2, rel=0.02)


def test_alerts_without_targets_raise():
    with pytest.raises(TargetingError, match="retracted"):
        plan_targets(gw_alert(None, alert_type=AlertType.RETRACTION), start=START)
    with pytest.raises(TargetingError, match="neither a sky map nor a position"):
        plan_targets(gw_alert(None, skymap_url="https://example.org/m.fits"), start=START)
    with pytest.raises(SkymapError):
        plan_targets(gw_alert(b"SIMPLE  = broken"), start=START)
    with pytest.raises(ValueError, match="max_targets"):
        plan_targets(position_alert(0.01), max_targets=0, start=START)


# ------------------------------------------------------------------ outputs


def test_plan_table_json_round_trip_and_plot(gw_bytes, catalog_file):
    plan = plan_targets(gw_alert(gw_bytes), max_targets=4, start=START)
    table = plan.to_table()
    assert table.colnames[:5] == ["rank", "name", "kind", "ra", "dec"]
    assert table["ra"].unit == u.deg and table["observable_hours"].unit == u.h
    assert len(table) == 4 and np.all(table["n_windows"] >= 1)
    assert Plan.model_validate_json(plan.model_dump_json()) == plan
    png = plot_plan(read_skymap(gw_bytes), plan)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    galaxies = plan_targets(
        gw_alert(gw_bytes), start=START, catalog=LocalGalaxyCatalog(catalog_file)
    )
    assert plot_plan(read_skymap(gw_bytes), galaxies)[:4] == b"\x89PNG"
    point = plan_targets(position_alert(0.001), start=START)
    assert plot_plan(None, point)[:4] == b"\x89PNG"


def test_plan_from_the_lvk_sample_alert(samples):
    import base64

    payload = json.loads((samples / "lvk_userguide" / "MS181101ab-preliminary.json").read_text())
    alert = gw_alert(
        base64.b64decode(payload["event"]["skymap"]), event_id=payload["superevent_id"]
    )
    plan = plan_targets(alert, max_targets=5, start=datetime(2027, 4, 10, tzinfo=UTC))
    assert plan.area90_deg2 == pytest.approx(30.975, abs=0.01)
    assert len(plan.targets) == 5
    assert plan.targets[0].probability > 0.01


# ------------------------------------------------------------------ CLI


def test_cli_skymap(tmp_path, gw_bytes):
    path = tmp_path / "map.fits"
    path.write_bytes(gw_bytes)
    result = CliRunner().invoke(app, ["skymap", str(path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["area90_deg2"] == pytest.approx(np.pi * 1.5**2 * -2 * np.log(0.1), rel=0.01)
    assert summary["distance_mean_mpc"] == pytest.approx(80.0)
    text = CliRunner().invoke(app, ["skymap", str(path)])
    assert "area90" in text.output and "80.0 +/- 15.0 Mpc" in text.output
    bad = tmp_path / "bad.fits"
    bad.write_bytes(b"nope")
    failed = CliRunner().invoke(app, ["skymap", str(bad)])
    assert failed.exit_code == 2


def test_cli_plan(tmp_path, gw_bytes, catalog_file):
    path = tmp_path / "map.fits"
    path.write_bytes(gw_bytes)
    png = tmp_path / "plan.png"
    args = ["plan", "--skymap", str(path), "--start", "2026-09-01T00:00:00", "--max-targets", "3"]
    result = CliRunner().invoke(app, [*args, "--json", "--plot", str(png)])
    assert result.exit_code == 0, result.output
    plan = Plan.model_validate_json(result.output)
    assert plan.strategy == "tiling" and len(plan.targets) == 3
    assert png.read_bytes()[:4] == b"\x89PNG"
    galaxies = CliRunner().invoke(app, [*args, "--catalog", catalog_file])
    assert "galaxies" in galaxies.output and "PEAKGAL" in galaxies.output
    point = CliRunner().invoke(
        app, ["plan", "--ra", "350", "--dec", "-20", "--radius", "0.01", "--start", "2026-09-01"]
    )
    assert point.exit_code == 0 and "point" in point.output
    neither = CliRunner().invoke(app, ["plan"])
    assert neither.exit_code == 2
