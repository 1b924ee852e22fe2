"""Frame depths from empty apertures, the coverage table and the sky plot of observed fields."""

from __future__ import annotations

import numpy as np
import pytest

from followup.coverage import (
    FieldDepth,
    FrameDepth,
    coverage_rows,
    covered_probability,
    plot_coverage,
)
from followup.photometry import frame_depth
from sandbox.sky import SyntheticSky
from tests.frames_support import DEC, RA, spec


@pytest.fixture(scope="module")
def sky() -> SyntheticSky:
    return SyntheticSky(seed=31, shape=(1024, 1024))


@pytest.mark.parametrize("number", [700, 701, 702])
def test_frame_depth_is_the_true_depth(sky: SyntheticSky, number: int) -> None:
    s = spec(number, exptime=120.0 * (number - 699))
    truth = sky.frame_truth(s)
    refcat = sky.reference_catalog(RA, DEC, 0.15)
    depth = frame_depth(sky.render(s), catalog=refcat, frame_name=s.basename)
    print(f"{s.basename}: depth {depth.depth_5sigma:.3f} truth {truth.depth_5sigma:.3f}")
    assert depth.depth_5sigma == pytest.approx(truth.depth_5sigma, abs=0.12)
    assert depth.band == "rp" and depth.frame == s.basename
    assert depth.n_apertures >= 300
    assert len(depth.footprint) == 4
    ras = [c[0] for c in depth.footprint]
    assert min(ras) < depth.ra < max(ras)
    # A 1024-pixel frame of 0.389" pixels is 6.6' across.
    assert (max(ras) - min(ras)) * np.cos(np.radians(DEC)) == pytest.approx(
        1024 * 0.389 / 3600, rel=0.02
    )


def test_frame_depth_without_a_catalogue_uses_the_header(sky: SyntheticSky) -> None:
    s = spec(710)
    depth = frame_depth(sky.render(s))
    assert depth.depth_5sigma == pytest.approx(sky.frame_truth(s).depth_5sigma, abs=0.2)


def _depth(frame: str, band: str, value: float, mjd: float = 60000.0) -> FrameDepth:
    return FrameDepth(
        frame=frame, band=band, mjd=mjd, ra=10.0, dec=-5.0, depth_5sigma=value, zero_point=23.0,
        n_apertures=500,
        footprint=[(9.9, -5.1), (10.1, -5.1), (10.1, -4.9), (9.9, -4.9)],
    )  # fmt: skip


def test_coverage_rows_per_field_and_band() -> None:
    depths = [
        FieldDepth("S1-field02", 10.0, -5.0, 0.05, _depth("a", "rp", 20.5, 60000.1)),
        FieldDepth("S1-field02", 10.0, -5.0, 0.05, _depth("b", "rp", 21.0, 60000.2)),
        FieldDepth("S1-field02", 10.0, -5.0, 0.05, _depth("c", "gp", 20.8, 60000.3)),
        FieldDepth("S1-field01", 11.0, -5.0, 0.20, _depth("d", "rp", 20.0, 60000.4)),
        FieldDepth("S1-field01", 11.0, -5.0, 0.20, _depth("e", "rp", float("nan"))),
    ]
    rows = coverage_rows(depths)
    assert [(r.field, r.band) for r in rows] == [
        ("S1-field01", "rp"),
        ("S1-field02", "gp"),
        ("S1-field02", "rp"),
    ]
    r = rows[2]
    assert (r.frames, r.depth_5sigma, r.median_depth_5sigma) == (2, 21.0, 20.75)
    assert (r.first_mjd, r.last_mjd) == (60000.1, 60000.2)
    assert rows[0].frames == 1  # the frame without a depth is left out
    assert covered_probability(rows) == pytest.approx(0.25)


def test_coverage_plot_is_a_png_across_zero_hours() -> None:
    near_zero = _depth("z", "rp", 20.0).model_copy(
        update={"ra": 0.05, "footprint": [(359.9, -5.1), (0.1, -5.1), (0.1, -4.9), (359.9, -4.9)]}
    )
    png = plot_coverage(
        [FieldDepth("f1", 10.0, -5.0, 0.1, _depth("a", "rp", 20.5)), FieldDepth("f2", 0.0, -5.0, 0.1, near_zero)],
        planned=[("f3", 12.0, -4.0)],
        title="S1",
    )  # fmt: skip
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 5000


def test_the_ledger_keeps_frame_depths_per_field(ledger, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from followup.models import Frame, ObservationRequest
    from tests.test_ledger import add_target

    add_target(ledger)  # field F001 of S250101ab, probability 0.3
    request = ObservationRequest(
        event_id="S250101ab", target_name="F001", group_name="S250101ab-F001-e0", filters=["rp"]
    )
    req, _ = ledger.requests.claim(request)
    frame = Frame(frame_id=9, basename="cpt1m010-fa16-20250101-0003-e91", filename="z", url="u")
    row, _ = ledger.frames.record(frame, req.id)
    assert ledger.frames.depths("S250101ab") == []  # not measured yet
    ledger.frames.record_depth(row.id, _depth(frame.basename, "rp", 20.7))
    (stored,) = ledger.frames.depths("S250101ab")
    assert (stored.field, stored.probability) == ("F001", 0.3)
    assert stored.depth == _depth(frame.basename, "rp", 20.7)
    assert ledger.frames.depths("S250101xx") == []
    with pytest.raises(KeyError):
        ledger.frames.record_depth(row.id + 1000, stored.depth)


def test_migration_0007_adds_frame_depths_to_an_existing_ledger(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import inspect

    from followup.ledger import Ledger

    ledger = Ledger(f"sqlite:///{tmp_path / 'old.db'}")
    ledger.migrate("0005")
    assert "depth" not in {c["name"] for c in inspect(ledger.engine).get_columns("frames")}
    ledger.migrate()
    assert "depth" in {c["name"] for c in inspect(ledger.engine).get_columns("frames")}
    ledger.dispose()


def test_update_coverage_measures_new_frames_once_and_publishes(prefect_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The flow hook: depths of new frames go to the ledger, the coverage to artifacts."""
    from types import SimpleNamespace

    from prefect import flow

    from flows.coverage import update_coverage
    from followup.ledger import Ledger
    from followup.models import Frame, ObservationRequest
    from tests.test_ledger import add_target

    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.migrate()
    add_target(ledger)
    req, _ = ledger.requests.claim(
        ObservationRequest(
            event_id="S250101ab", target_name="F001", group_name="S250101ab-F001-e0",
            filters=["rp"],
        )
    )  # fmt: skip
    small = SyntheticSky(seed=32, shape=(512, 512))
    frames, rows = [], {}
    for k, band in enumerate(["rp", "gp"]):
        s = spec(720 + k, band=band)
        path = tmp_path / f"{s.basename}.fits"
        path.write_bytes(small.render(s))
        frame = Frame(
            frame_id=100 + k, basename=s.basename, filename=path.name, url="u",
            local_path=str(path), filter=band,
        )  # fmt: skip
        frames.append(frame)
        rows[frame.frame_id] = ledger.frames.record(frame, req.id)[0]
    settings = SimpleNamespace(
        get_reference_catalog=lambda: None, plots_dir=tmp_path / "plots", plots_base_url=""
    )
    runtime = SimpleNamespace(ledger=ledger, settings=settings)

    @flow
    def hook() -> list:
        return update_coverage(runtime, "S250101ab", frames, rows)  # type: ignore[arg-type]

    table = hook()
    assert [(r.field, r.band, r.frames) for r in table] == [("F001", "gp", 1), ("F001", "rp", 1)]
    for r, band in zip(table, ["gp", "rp"], strict=True):
        truth = small.frame_truth(spec(720 + ["rp", "gp"].index(band), band=band)).depth_5sigma
        assert r.depth_5sigma == pytest.approx(truth, abs=0.2)
    assert (tmp_path / "plots" / "coverage-plot-s250101ab.png").read_bytes()[:4] == b"\x89PNG"
    # Frames already measured are not measured again: their rows now carry the depth.
    again = {f.frame_id: ledger.frames.record(f, req.id)[0] for f in frames}
    assert all(row.depth is not None for row in again.values())
    ledger.dispose()
