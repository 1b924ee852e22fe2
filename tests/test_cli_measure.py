"""`followup measure FRAME --ra --dec [--catalog FILE] [--json]` against a synthetic frame."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from followup.cli import app
from sandbox.sky import SyntheticSky
from sandbox.specs import Transient
from tests.frames_support import DEC, RA, START, spec

KEYS = {
    "flux_ujy",
    "flux_err_ujy",
    "mag",
    "mag_err",
    "limit_mag_5sigma",
    "zero_point",
    "zero_point_err",
    "n_ref_stars",
    "band",
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Transient, float]:
    target = Transient(
        name="AT2025cli",
        ra=RA + 0.01,
        dec=DEC + 0.005,
        peak_mag={"ip": 18.5},
        peak_time=START - timedelta(days=1),
    )
    sky = SyntheticSky(seed=31, shape=(1024, 1024), transients=[target])
    folder = tmp_path_factory.mktemp("cli")
    frame = folder / "cpt1m010-fa16-20250301-0007-e91.fits.fz"
    s = spec(7, band="ip")
    frame.write_bytes(sky.render(s))
    catalog = folder / "refcat2.csv"
    sky.reference_catalog(RA, DEC, 0.15).write(catalog, format="ascii.csv")
    return frame, catalog, target, sky.frame_truth(s).transients["mag"][0]


@pytest.mark.parametrize("with_catalog", [True, False], ids=["refcat-csv", "frame-cat"])
def test_measure_json(setup: tuple[Path, Path, Transient, float], with_catalog: bool) -> None:
    frame, catalog, target, true_mag = setup
    args = ["measure", str(frame), "--ra", f"{target.ra}", "--dec", f"{target.dec}", "--json"]
    if with_catalog:
        args += ["--catalog", str(catalog)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) >= KEYS
    assert data["band"] == "ip"
    assert data["frame_basename"] == "cpt1m010-fa16-20250301-0007-e91"
    assert abs(data["mag"] - true_mag) < 4 * data["mag_err"] + 0.01
    assert data["n_ref_stars"] >= 5
    assert data["flux_ujy"] == pytest.approx(10 ** (-0.4 * (data["mag"] - 23.9)))


def test_measure_text_output_and_psf(setup: tuple[Path, Path, Transient, float]) -> None:
    frame, catalog, target, _ = setup
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    c = SkyCoord(target.ra * u.deg, target.dec * u.deg)
    ra = c.ra.to_string(u.hourangle, sep=":", precision=3)
    dec = c.dec.to_string(sep=":", precision=2, alwayssign=True)
    result = CliRunner().invoke(
        app,
        [
            "measure",
            str(frame),
            "--ra",
            ra,
            "--dec",
            dec,
            "--catalog",
            str(catalog),
            "--method",
            "psf",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "AB mag" in result.output and "zero pt" in result.output and "(ip, psf)" in result.output


def test_measure_errors(setup: tuple[Path, Path, Transient, float], tmp_path: Path) -> None:
    frame, _, target, _ = setup
    runner = CliRunner()
    off = runner.invoke(app, ["measure", str(frame), "--ra", str(RA + 2), "--dec", str(DEC)])
    assert off.exit_code == 1 and "off the frame" in off.output
    missing = runner.invoke(
        app, ["measure", str(tmp_path / "nope.fits"), "--ra", "1", "--dec", "2"]
    )
    assert missing.exit_code == 2 and "no such file" in missing.output
    bad_method = runner.invoke(
        app, ["measure", str(frame), "--ra", "1", "--dec", "2", "--method", "kron"]
    )
    assert bad_method.exit_code == 2
    broken = tmp_path / "broken.fits"
    broken.write_bytes(frame.read_bytes()[:5000])
    truncated = runner.invoke(
        app, ["measure", str(broken), "--ra", str(target.ra), "--dec", str(target.dec)]
    )
    assert truncated.exit_code == 1 and "error" in truncated.output
