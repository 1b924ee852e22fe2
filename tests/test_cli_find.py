"""`followup find FRAME --reference REF --json` and `followup measure ... --reference REF`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmarks.transient_scenes import Scene, pair, standard_scene
from followup.cli import app


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Scene, Path, Path, Path]:
    scene = standard_scene(3)
    science, reference = pair(scene, 3)
    folder = tmp_path_factory.mktemp("find")
    paths = folder / "science-e91.fits", folder / "reference-e91.fits"
    science.writeto(paths[0])
    reference.writeto(paths[1])
    catalog = folder / "refcat.csv"
    scene.catalog().write(catalog, format="ascii.csv")
    return scene, paths[0], paths[1], catalog


def test_find_lists_the_transient_and_the_minor_planet_only(files) -> None:
    scene, science, reference, catalog = files
    result = CliRunner().invoke(
        app,
        ["find", str(science), "--reference", str(reference), "--catalog", str(catalog), "--json"],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    keys = {"ra", "dec", "flux_ujy", "flux_err_ujy", "mag", "mag_err", "score", "reasons"}
    assert rows and all(keys <= set(r) for r in rows)
    # Without the event's services the minor planet cannot be told apart: both are listed.
    truth = [s for s in scene.sources if s.kind in ("transient", "asteroid")]
    assert len(rows) == len(truth)
    for source in truth:
        [hit] = [
            r
            for r in rows
            if abs(r["ra"] - source.ra) < 1.5 / 3600 and abs(r["dec"] - source.dec) < 1.5 / 3600
        ]
        assert abs(hit["mag"] - source.mag) < 3 * hit["mag_err"] + 0.02
        assert hit["score"] > 0.5
        assert any("real-bogus score" in reason for reason in hit["reasons"])
        assert "minor planets not checked" in hit["reasons"]


def test_measure_on_the_difference_leaves_the_host_out(files) -> None:
    scene, science, reference, catalog = files
    transient = next(s for s in scene.sources if s.kind == "transient")
    base = ["measure", str(science), "--ra", f"{transient.ra}", "--dec", f"{transient.dec}",
            "--catalog", str(catalog), "--json"]  # fmt: skip
    on_frame = json.loads(CliRunner().invoke(app, base).output)
    result = CliRunner().invoke(app, [*base, "--reference", str(reference)])
    assert result.exit_code == 0, result.output
    on_difference = json.loads(result.output)
    assert set(on_difference) >= set(on_frame)
    assert abs(on_difference["mag"] - transient.mag) < 3 * on_difference["mag_err"]
    assert on_frame["mag"] < transient.mag - 0.5  # the host's light


def test_missing_reference_is_a_usage_error(files) -> None:
    _, science, _, _ = files
    result = CliRunner().invoke(app, ["find", str(science), "--reference", "/nonexistent.fits"])
    assert result.exit_code == 2
    assert "no such reference frame" in result.output
