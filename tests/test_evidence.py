"""What a person decides a candidate on: its vetting gathered over frames, cutouts, Markdown."""

from __future__ import annotations

import io

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.table import QTable

from followup.evidence import (
    CandidateVetting,
    Detection,
    cutouts_png,
    evidence_markdown,
    read_cutouts,
    vettings_of,
)
from followup.photometry import associate_candidates

RA, DEC = 150.0, -20.0


def frame_table(
    frame: str, rows: list[tuple[float, float, float, str]], difference: str | None = None
) -> QTable:
    """Vetted candidates of one frame: (ra, dec, score, reasons) rows, as the search keeps them."""
    table = QTable(
        {
            "ra": [r[0] for r in rows] * u.deg,
            "dec": [r[1] for r in rows] * u.deg,
            "snr": [20.0 + r[2] for r in rows],
            "mag": [19.0] * len(rows) * u.mag,
            "score": [r[2] for r in rows],
            "reasons": [r[3] for r in rows],
        },
        meta={"frame": frame, "origin": "difference"},
    )
    if difference:
        table.meta["difference"] = difference
    return table


def test_a_candidates_vetting_gathers_every_frame_best_score_first() -> None:
    one = frame_table(
        "f1",
        [(RA + 0.01, DEC, 0.9, "score 0.90; no star"), (RA, DEC, 0.7, "score 0.70; hostless")],
        difference="/p/f1-diff.fits",
    )
    two = frame_table("f2", [(RA + 0.2 / 3600, DEC, 0.95, "score 0.95; no star")])
    merged = associate_candidates([one, two])
    vettings = vettings_of(merged, [one, two])
    [name] = [c["name"] for c in merged if abs(c["ra"] - RA) < 0.001]
    vetting = vettings[name]
    assert vetting.passed and vetting.score == 0.95
    assert [d.frame for d in vetting.detections] == ["f2", "f1"]
    # The cutouts are where that frame's product holds them: CUT1 of f1's, none for f2.
    assert [(d.difference, d.index) for d in vetting.detections] == [
        (None, None),
        ("/p/f1-diff.fits", 1),
    ]
    assert vetting.reasons == ["score 0.95", "no star", "score 0.70", "hostless"]


def test_an_unvetted_table_gives_no_vetting_and_a_catalogue_one_no_score() -> None:
    table = frame_table("f1", [(RA, DEC, 0.9, "x")])
    unvetted = table.copy()
    unvetted.remove_columns(["score", "reasons"])
    merged = associate_candidates([unvetted])
    assert vettings_of(merged, [unvetted]) == {merged[0]["name"]: None}
    # A catalogue search vets too (minor planets, the map), without a real-bogus score.
    table.remove_column("score")
    (vetting,) = vettings_of(merged, [table]).values()
    assert vetting is not None and vetting.passed and vetting.score is None
    assert vetting.reasons == ["x"] and vetting.detections[0].score is None


def test_cutouts_are_read_from_the_product_and_drawn_side_by_side(tmp_path) -> None:
    rng = np.random.default_rng(0)
    cube = rng.normal(size=(3, 51, 51)).astype(np.float32)
    cube[2, 25, 25] = 50.0  # the transient, on the difference only
    cube[0, :5, :5] = np.nan  # off the frame
    path = tmp_path / "diff.fits"
    fits.HDUList(
        [
            fits.PrimaryHDU(),
            fits.ImageHDU(np.zeros((3, 3)), name="SCI"),
            fits.ImageHDU(cube, name="CUT0"),
        ]
    ).writeto(path)
    stamps = read_cutouts(path, 0)
    assert list(stamps) == ["science", "reference", "difference"]
    assert stamps["difference"][25, 25] == 50.0
    with pytest.raises(KeyError):
        read_cutouts(path, 1)
    png = cutouts_png(stamps, title="C1", score=0.93)
    assert png.startswith(b"\x89PNG") and len(png) < 60_000  # small enough to embed
    from matplotlib.image import imread

    image = imread(io.BytesIO(png))
    assert image.shape[1] > 2 * image.shape[0]  # three panels in a row


def test_the_markdown_shows_images_score_and_every_reason() -> None:
    vetting = CandidateVetting(
        passed=True,
        score=0.93,
        reasons=["real-bogus score 0.93", "host NGC 1 at 1.2″ | 40 Mpc: the distances agree"],
        detections=[Detection(frame="f1", score=0.93, reasons=["a | b"])],
    )
    text = evidence_markdown("C1", vetting, cutouts="http://p/c.png", light_curve="http://p/l.png")
    assert "![C1: science, reference, difference](http://p/c.png)" in text
    assert "![C1: light curve](http://p/l.png)" in text
    assert "**Real-bogus score:** 0.93" in text and "**Vetting:** passed" in text
    assert "- real-bogus score 0.93" in text
    assert "- host NGC 1 at 1.2″ | 40 Mpc: the distances agree" in text
    assert "| f1 | 0.93 | a \\| b |" in text  # a pipe in a reason does not break the table
    assert "No cutouts" in evidence_markdown("C1", vetting)
