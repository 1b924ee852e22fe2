"""Circulars of what was found and what was not: golden texts, names GCN derives, the fixes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from followup.models import Alert, AlertKind, AlertType
from followup.reporting.extinction import Extinction
from followup.reporting.findings import (
    CandidateFinding,
    Coverage,
    ObservedField,
    candidates_circular,
    no_counterpart_circular,
    non_detection_message,
    sexagesimal,
)
from followup.reporting.gcn import (
    draft_circular,
    gcn_event_name,
    parse_event_from_subject,
    subject_is_valid,
)
from followup.reporting.outbox import event_name, no_counterpart_outgoing
from sandbox import gcn as gcn_sandbox
from tests.reporting.conftest import T0, make_measurement

AUTHORS = ["A. Author (LCO)", "B. Author (UCSB)"]


def _field(i: int, depth: float, prob: float, band: str = "rp") -> ObservedField:
    return ObservedField(
        name=f"S260314ab-F{i:03d}",
        ra=150.0 + 0.44 * i,
        dec=-20.5 + 0.1 * i,
        band=band,
        depth=depth,
        probability=prob,
        date_obs=T0 + timedelta(hours=1.5, minutes=6 * i),
        exposure_time_s=300.0,
    )


COVERAGE = Coverage(
    fields=[_field(1, 20.94, 0.121), _field(2, 21.32, 0.085), _field(3, 20.41, 0.052)],
    skymap="bayestar.multiorder.fits,1",
    area_deg2=0.59,
)

NO_COUNTERPART = """\
A. Author (LCO), B. Author (UCSB) report on behalf of the LCO follow-up team:

We observed 3 fields in the localization of LIGO/Virgo/KAGRA S260314ab
(LIGO/Virgo/KAGRA Collaboration, GCN Circ. 40001) with the LCO 1-m Sinistro of
the Las Cumbres Observatory network between 2026-03-14 07:36:00 and 2026-03-14
07:48:00 UT (starting 1.60 h after the event), in the r filter. The fields
cover 29% of the probability in the 90% credible region of the
bayestar.multiorder.fits,1 sky map (0.6 deg2 observed).

Comparing the images with reference catalogs and earlier images, we find no
new source brighter than the 5-sigma limits of the fields: r = 20.9 (median;
20.4 to 21.3) AB mag. The fields and their limits are:

Field           RA (deg)  Dec (deg)  Date (UT)         T-T0 (h)  Filter  Prob   Limit
--------------  --------  ---------  ----------------  --------  ------  -----  ------
S260314ab-F001  150.4400  -20.4000   2026-03-14 07:36  1.60      r       0.121  > 20.9
S260314ab-F002  150.8800  -20.3000   2026-03-14 07:42  1.70      r       0.085  > 21.3
S260314ab-F003  151.3200  -20.2000   2026-03-14 07:48  1.80      r       0.052  > 20.4

Magnitudes are in the AB system, calibrated against ATLAS-REFCAT2, and are not
corrected for Galactic extinction (median over the fields E(B-V) = 0.045 mag
(A_r = 0.10); Schlafly & Finkbeiner 2011).

Further observations are planned.
"""


def test_no_counterpart_circular_golden_text():
    c = no_counterpart_circular(
        "S260314ab",
        COVERAGE,
        name="LIGO/Virgo/KAGRA S260314ab",
        observers=AUTHORS,
        team="the LCO follow-up team",
        event_time=T0,
        catalog="ATLAS-REFCAT2",
        references=["LIGO/Virgo/KAGRA Collaboration, GCN Circ. 40001"],
        extinction=Extinction(ebv=0.045),
    )
    assert c.subject == "LIGO/Virgo/KAGRA S260314ab: LCO optical upper limits"
    assert c.body == NO_COUNTERPART
    assert gcn_sandbox.subject_is_valid(c.subject) and c.body.isascii() and c.line_count < 60
    assert gcn_sandbox._event_from_subject(c.subject) == "LIGO/Virgo/KAGRA S260314ab"


def test_coverage_counts_a_field_once_and_is_capped():
    two_bands = Coverage(fields=[_field(1, 21.0, 0.3), _field(1, 20.5, 0.3, band="gp")])
    assert two_bands.covered == pytest.approx(0.3)
    assert two_bands.fraction_of_region == pytest.approx(0.3 / 0.9)
    full = Coverage(fields=[_field(1, 21.0, 0.7), _field(2, 21.0, 0.5)])
    assert full.covered == 1.0 and full.fraction_of_region == 1.0


def test_long_field_lists_are_summarised_not_dropped():
    many = Coverage(fields=[_field(i, 21.0, 0.001) for i in range(60)])
    c = no_counterpart_circular(
        "S260314ab", many, name="LIGO/Virgo/KAGRA S260314ab", observers=["A"], team="T"
    )
    assert "(35 further fields are not listed here.)" in c.body and c.line_count < 60


CANDIDATE = """\
A. Author (LCO), B. Author (UCSB) report on behalf of the LCO follow-up team:

In 3 fields covering 29% of the probability in the 90% credible region of
LIGO/Virgo/KAGRA S260314ab, observed with the LCO 1-m Sinistro of the Las
Cumbres Observatory network between 2026-03-14 08:00:00 and 2026-03-14
11:00:00 UT (starting 2.00 h after the event), we find 1 candidate
counterpart:

S260314ab-C1 (AT 2026abc)
  RA, Dec (J2000) = 150.12346, -20.65432 deg = 10:00:29.63 -20:39:15.6
  Host: NGC 3115 (z = 0.0022), offset 5.2 arcsec
  Galactic extinction: E(B-V) = 0.045 mag (A_g = 0.15, A_r = 0.10)

  Date (UT)            T-T0 (h)  Telescope         Filter  Exp (s)  AB mag
  -------------------  --------  ----------------  ------  -------  --------------
  2026-03-14 08:00:00  2.00      LCO 1-m Sinistro  r       300      19.42 +/- 0.08
  2026-03-14 08:10:00  2.17      LCO 1-m Sinistro  g       300      > 21.10
  2026-03-14 11:00:00  5.00      LCO 1-m Sinistro  r       300      19.61 +/- 0.08

Magnitudes are in the AB system, calibrated against ATLAS-REFCAT2, and are not
corrected for Galactic extinction; limits are 5-sigma.

Further observations are planned.
"""


def test_candidates_circular_golden_text():
    points = [
        make_measurement(hours=2.0, mag=19.42),
        make_measurement(hours=2.0 + 1 / 6, band="gp", limit=21.1),
        make_measurement(hours=5.0, mag=19.61),
        make_measurement(target="S260314ab-F001", hours=1.0),  # another target: not listed
    ]
    candidate = CandidateFinding(
        name="S260314ab-C1",
        ra=150.123456,
        dec=-20.654321,
        tns_name="AT 2026abc",
        host_name="NGC 3115",
        host_redshift=0.0022,
        host_offset_arcsec=5.2,
        extinction=Extinction(ebv=0.045),
    )
    c = candidates_circular(
        "S260314ab",
        [candidate],
        points,
        name="LIGO/Virgo/KAGRA S260314ab",
        observers=AUTHORS,
        team="LCO follow-up team",
        event_time=T0,
        coverage=COVERAGE,
        catalog="ATLAS-REFCAT2",
    )
    assert c.subject == "LIGO/Virgo/KAGRA S260314ab: LCO optical candidate counterpart"
    assert c.body == CANDIDATE
    assert gcn_sandbox.subject_is_valid(c.subject) and c.body.isascii()


def test_candidates_circular_refuses_a_candidate_without_photometry():
    with pytest.raises(ValueError, match="without photometry"):
        candidates_circular(
            "S1",
            [CandidateFinding(name="X", ra=1.0, dec=2.0)],
            [make_measurement()],
            name="LIGO/Virgo/KAGRA S1",
            observers=["A"],
            team="T",
        )


@pytest.mark.parametrize(
    ("ra", "dec", "text"),
    [
        (150.123456, -20.654321, "10:00:29.63 -20:39:15.6"),
        (0.0, 0.0, "00:00:00.00 +00:00:00.0"),
        (197.4133, -23.3996, "13:09:39.19 -23:23:58.6"),
    ],
)
def test_sexagesimal(ra, dec, text):
    assert sexagesimal(ra, dec) == text


def test_non_detection_message_lists_every_field_with_its_limit():
    message = non_detection_message(
        "S260314ab",
        COVERAGE,
        name="LIGO/Virgo/KAGRA S260314ab",
        authors="A. Author (LCO)",
        team="LCO follow-up team",
        topic="hermes.test",
    )
    assert [t.name for t in message.data.targets] == [f"S260314ab-F00{i}" for i in (1, 2, 3)]
    assert [p.limiting_brightness for p in message.data.photometry] == [20.94, 21.32, 20.41]
    assert all(p.brightness is None for p in message.data.photometry)
    assert message.message_text.startswith("The LCO follow-up team observed 3 fields covering 29%")
    assert "r > 20.9 (median)" in message.message_text
    assert message.title == "LIGO/Virgo/KAGRA S260314ab: LCO optical upper limits"


# ----------------------------------------------------------------------------- fixes
def test_team_with_the_is_not_doubled_and_times_before_t0_say_before():
    points = [make_measurement(hours=-0.13), make_measurement(hours=1.0)]
    c = draft_circular(
        "S260314ab", points, observers=["A"], team="the followup team", event_time=T0
    )
    assert "the the" not in c.body
    assert c.body.startswith("A report on behalf of the followup team:")
    text = " ".join(c.body.split())
    assert "starting 0.13 h before the event" in text and "-0.13 h after" not in text


# ----------------------------------------------------------------------------- subjects
def _alert(event_id: str, source: str, kind: AlertKind, **extra) -> Alert:
    title = extra.pop("title", None)
    return Alert(
        source=source,
        kind=kind,
        format="gcn-json",
        event_id=event_id,
        alert_type=AlertType.INITIAL,
        issued_at=datetime(2025, 1, 1, 12, tzinfo=UTC),
        event_time=datetime(2025, 1, 1, 11, 26, 0, tzinfo=UTC),
        title=title,
        extra=extra,
    )


@pytest.mark.parametrize(
    ("alert", "name"),
    [
        (_alert("S250101ab", "LVK", AlertKind.GW), "LIGO/Virgo/KAGRA S250101ab"),
        (
            _alert(
                "IceCube-138632_31747601",
                "IceCube",
                AlertKind.NEUTRINO,
                aliases=["IceCube-230416A"],
            ),
            "IceCube-230416A",
        ),
        (
            _alert("IceCube-230416A", "IceCube", AlertKind.NEUTRINO),
            "IceCube-230416A",
        ),
        (_alert("EP240508a", "EP", AlertKind.X_RAY), "EP240508a"),
        (
            _alert("EP-01708973486", "EP", AlertKind.X_RAY, event_name="EP240508a"),
            "EP240508a",
        ),
        (_alert("GRB 230410A", "Fermi", AlertKind.GAMMA_RAY), "GRB 230410A"),
        # A Swift trigger with no GRB name yet: the date and day fraction GCN parses.
        (_alert("Swift-1125809", "Swift", AlertKind.GAMMA_RAY), "GRB 250101.476"),
    ],
    ids=["lvk", "icecube-alias", "icecube", "ep", "ep-name", "grb", "swift-trigger"],
)
def test_subjects_name_the_event_gcn_derives(alert, name):
    assert event_name(alert) == name
    subject = f"{name}: LCO optical upper limits"
    assert subject_is_valid(subject) and gcn_sandbox.subject_is_valid(subject)
    derived = gcn_sandbox._event_from_subject(subject)
    assert derived is not None and derived == parse_event_from_subject(subject)
    assert "1125809" not in derived and "138632" not in derived


@pytest.mark.parametrize(
    ("event_id", "source", "kind", "name"),
    [
        ("CHIME-427325191", "CHIME", "radio", "FRB CHIME-427325191"),
        ("KM3-240901A", "KM3NeT", "neutrino", "KM3NeT transient KM3-240901A"),
        ("G298048", "LVK", "gw", "LIGO/Virgo/KAGRA G298048"),
    ],
)
def test_events_without_a_gcn_name_get_a_subject_gcn_accepts(event_id, source, kind, name):
    assert gcn_event_name(event_id, source=source, kind=kind) == name
    assert gcn_sandbox.subject_is_valid(f"{name}: LCO optical upper limits")


def test_an_unnameable_event_is_refused():
    with pytest.raises(ValueError, match="no name GCN accepts"):
        gcn_event_name("X-12", kind="other")


def test_no_counterpart_outgoing_for_a_swift_trigger():
    alert = _alert("Swift-1125809", "Swift", AlertKind.GAMMA_RAY)
    outgoing = no_counterpart_outgoing(alert, COVERAGE, authors=["A"], team="T")
    assert outgoing.content.subject == "GRB 250101.476: LCO optical upper limits"
    assert outgoing.report.event_id == "Swift-1125809" and outgoing.public
