"""The flow's vetting knows the event's sky map and the planner's galaxies.

``process-frames`` reads the event's latest sky map and queries the planner's galaxy catalogue
around each searched field; the search task hands both to the vetting, which then checks each
candidate's credible level and whether its host's distance agrees with the map's distance along
that line of sight. Here at the task level (``task.fn``) and on the scene of
tests/test_transients.py: a 19 mag transient 1" from a 15.5 mag host.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import QTable

from benchmarks.transient_scenes import Scene
from deployments.demo import DEMO_HOST, make_demo_alert
from followup.alerts import parse_message
from followup.galaxies import LocalGalaxyCatalog
from followup.photometry.transients import search_frame
from tasks.frames import alert_skymap, field_galaxies


def _host(scene: Scene):
    return next(s for s in scene.sources if s.kind == "galaxy")


def _transient(scene: Scene):
    return next(s for s in scene.sources if s.kind == "transient")


class _Map:
    """A sky map with one credible level and one distance along every line of sight."""

    has_distance = True

    def __init__(self, level: float, mean: float, std: float) -> None:
        self.level, self.mean, self.std = level, mean, std

    def searched_probability(self, ra: float, dec: float) -> float:
        return self.level

    def distance_along(self, ra: float, dec: float):
        from types import SimpleNamespace

        return SimpleNamespace(mean_mpc=self.mean, std_mpc=self.std)


def _galaxies(scene: Scene, distance: float) -> QTable:
    host = _host(scene)
    table = QTable()
    table["name"] = ["HOST1"]
    table["ra"] = [host.ra] * u.deg
    table["dec"] = [host.dec] * u.deg
    table["distance"] = [distance] * u.Mpc
    table["distance_err"] = [0.1 * distance] * u.Mpc
    return table


def _search(frames, **kwargs):
    return search_frame(frames[0], lambda ra, dec, band: frames[1], **kwargs)


def _kept_near(kept: QTable, ra: float, dec: float) -> list[str]:
    """The reasons of the kept candidates within 1.5" of a position."""
    here = SkyCoord(ra, dec, unit="deg")
    return [
        str(row["reasons"])
        for row in kept
        if SkyCoord(row["ra"], row["dec"]).separation(here).arcsec < 1.5
    ]


def _near(rows, ra: float, dec: float) -> list:
    here = SkyCoord(ra, dec, unit="deg")
    return [r for r in rows if SkyCoord(r[0], r[1], unit="deg").separation(here).arcsec < 1.5]


def test_a_host_at_the_maps_distance_keeps_the_kilonova_with_its_reasons(
    scene: Scene, frames
) -> None:
    kept = _search(frames, galaxies=_galaxies(scene, 45.0), skymap=_Map(0.31, 42.0, 8.0))
    t = _transient(scene)
    [reasons] = [r for r in _kept_near(kept, t.ra, t.dec)]
    assert "host HOST1" in reasons and "distances agree" in reasons
    assert "inside the 31.0% credible region" in reasons


def test_a_host_far_behind_the_map_or_a_place_outside_it_rejects_the_kilonova(
    scene: Scene, frames
) -> None:
    t = _transient(scene)
    far = _search(frames, galaxies=_galaxies(scene, 300.0), skymap=_Map(0.31, 42.0, 8.0))
    assert _kept_near(far, t.ra, t.dec) == []
    [(_, _, reasons)] = _near(far.meta["rejected"], t.ra, t.dec)
    assert any("distances disagree" in r for r in reasons)
    outside = _search(frames, galaxies=_galaxies(scene, 45.0), skymap=_Map(0.999, 42.0, 8.0))
    assert len(outside) == 0  # nothing at all: the whole frame is outside that map
    [(_, _, reasons)] = _near(outside.meta["rejected"], t.ra, t.dec)
    assert any("outside the 99% credible region" in r for r in reasons)


def test_without_galaxies_or_map_the_search_says_nothing_of_them(scene: Scene, frames) -> None:
    kept = _search(frames)
    t = _transient(scene)
    [reasons] = _kept_near(kept, t.ra, t.dec)
    assert "host" not in reasons and "credible" not in reasons
    assert kept.meta["left_out"] == 0


def test_at_most_max_sources_are_measured_and_the_rest_counted(scene: Scene, frames) -> None:
    every = _search(frames, max_sources=None)
    assert every.meta["found"] >= 2  # the transient and the minor planet at least
    capped = _search(frames, max_sources=1)
    assert capped.meta["found"] == 1
    assert capped.meta["left_out"] == every.meta["found"] - 1


def test_the_demo_map_and_host_agree_as_the_vetting_asks() -> None:
    """The demo's kilonova sits in the map, and its host's distance agrees with the map's."""
    demo = make_demo_alert()
    skymap = alert_skymap.fn(parse_message(demo.raw))
    assert skymap is not None and skymap.has_distance
    t = demo.transient
    along = skymap.distance_along(t.ra, t.dec)
    pull = abs(DEMO_HOST.distance_mpc - along.mean_mpc) / (
        (along.std_mpc**2 + (0.1 * DEMO_HOST.distance_mpc) ** 2) ** 0.5
    )
    assert pull < 1.0
    assert skymap.searched_probability(t.ra, t.dec) < 0.9


def test_field_galaxies_queries_the_planners_catalogue_around_the_field(tmp_path: Path) -> None:
    path = tmp_path / "glade.csv"
    path.write_text(
        "GWGC name,RA,DEC,d_L,d_L err,B\n"
        "NEAR,150.10,-20.05,110.0,11.0,15.1\n"
        "CORNER,150.30,-20.25,60.0,6.0,16.0\n"
        "AWAY,151.00,-20.00,100.0,10.0,15.5\n"
    )
    from prefect.logging import disable_run_logger

    with disable_run_logger():
        galaxies = field_galaxies.fn(LocalGalaxyCatalog(path), 150.0, -20.0, 0.4)
    assert sorted(galaxies["name"]) == ["CORNER", "NEAR"]
    assert u.Quantity(galaxies["distance"]).unit == u.Mpc
    assert "distance_err" in galaxies.colnames


# --------------------------------------------------------------------------------------------
# In a real flow (the session's Prefect API): what process-frames hands the search
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_flow_reads_the_latest_map_and_the_planners_galaxies(
    prefect_api: object, tmp_path: Path
) -> None:
    import uuid

    from prefect import flow

    from flows.frames import _galaxies_around, _latest_skymap
    from flows.runtime import load_runtime
    from followup.alerts.mock import make_lvk_alert
    from followup.models import AlertDecision
    from tests.lco_support import target
    from tests.ledger_support import store_alert
    from tests.test_flow_approvals import save_settings

    glade = tmp_path / "glade.csv"
    glade.write_text(
        "GWGC name,RA,DEC,d_L,d_L err,B\n"
        "HOST-A,150.30,-20.45,110.0,11.0,15.1\n"
        "HOST-B,151.05,-20.95,60.0,6.0,16.0\n"
        "AWAY,155.00,-25.00,100.0,10.0,15.5\n"
    )
    name = f"t-{uuid.uuid4().hex[:8]}"
    ledger = save_settings(name, tmp_path, galaxy_catalog=str(glade))
    raw = make_demo_alert().raw  # with its multi-order sky map embedded
    alert = parse_message(raw)
    event_id = alert.event_id
    store_alert(ledger, alert, raw=raw, uuid=str(uuid.uuid4()))
    # A later alert the rules rejected is passed over (only accepted alerts are read).
    update = make_lvk_alert(event_id, "UPDATE")
    store_alert(
        ledger,
        parse_message(update),
        raw=update,
        uuid=str(uuid.uuid4()),
        decision=AlertDecision.REJECTED,
    )
    fields = [target("GAL-001"), target("GAL-002", ra=151.0, dec=-21.0), target("GAL-001")]

    @flow
    def probe() -> tuple[object, dict]:
        runtime = load_runtime(name)
        return _latest_skymap(runtime, event_id), _galaxies_around(runtime, fields)

    skymap, galaxies = probe()
    assert skymap is not None and skymap.has_distance
    assert skymap.object_name in (None, event_id)
    assert sorted(galaxies) == ["GAL-001", "GAL-002"]  # one query per field
    assert list(galaxies["GAL-001"]["name"]) == ["HOST-A"]
    assert list(galaxies["GAL-002"]["name"]) == ["HOST-B"]
    assert u.Quantity(galaxies["GAL-001"]["distance"]).to_value(u.Mpc)[0] == pytest.approx(110.0)


@pytest.mark.slow
def test_without_a_galaxy_catalogue_the_flow_queries_none(
    prefect_api: object, tmp_path: Path
) -> None:
    import uuid

    from prefect import flow

    from flows.frames import _galaxies_around
    from flows.runtime import load_runtime
    from tests.lco_support import target
    from tests.test_flow_approvals import save_settings

    name = f"t-{uuid.uuid4().hex[:8]}"
    save_settings(name, tmp_path)

    @flow
    def probe() -> dict:
        return _galaxies_around(load_runtime(name), [target("GAL-001")])

    assert probe() == {}
