"""An edited telescope-time approval is checked before it is recorded (strategies.edit_problems)."""

from __future__ import annotations

import pytest

from followup.strategies import (
    MAX_EXPOSURE_COUNT,
    ApprovalRules,
    StrategyEdit,
    edit_problems,
    estimate_hours,
)
from tests.lco_support import strategy

RULES = ApprovalRules(max_hours=2.0)
PLAN = strategy()  # Sinistro, gp and rp, 1 x 120 s


def problems(n_requests: int = 3, **edit: object) -> list[str]:
    values: dict[str, object] = {
        "filters": ["gp", "rp"],
        "exposure_time_s": 120.0,
        "exposure_count": 1,
    }
    values.update(edit)
    return edit_problems(PLAN, StrategyEdit(**values), rules=RULES, n_requests=n_requests)  # type: ignore[arg-type]


def test_the_plan_as_shown_and_sensible_edits_pass() -> None:
    assert problems() == []
    assert problems(filters=["ip", "zs", "gp"], exposure_time_s=300.0, exposure_count=2) == []
    assert problems(n_requests=1, filters=["rp"], exposure_time_s=3600.0) == []


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        ({"filters": []}, "at least one filter"),
        ({"filters": ["gp", "NOT-A-FILTER"]}, "has no filter NOT-A-FILTER"),
        ({"filters": ["gp", "gp"]}, "listed twice"),
        ({"exposure_time_s": 0.0}, "not between 0 and 3600 s"),
        ({"exposure_time_s": -5.0}, "not between 0 and 3600 s"),
        ({"exposure_time_s": 1e6}, "not between 0 and 3600 s"),
        ({"exposure_count": 0}, "not between 1 and"),
        ({"exposure_count": MAX_EXPOSURE_COUNT + 1}, "not between 1 and"),
        ({"exposure_time_s": 3000.0, "exposure_count": 3}, "h of telescope time, more than 2.0 h"),
    ],
    ids=[
        "no-filter",
        "unknown-filter",
        "filter-twice",
        "zero-exposure",
        "negative-exposure",
        "huge-exposure",
        "no-frames",
        "too-many-frames",
        "over-max-hours",
    ],
)
def test_each_bad_edit_is_named(edit: dict[str, object], problem: str) -> None:
    found = problems(**edit)
    assert any(problem in p for p in found), found


def test_a_plan_already_over_max_hours_may_be_approved_but_not_grown() -> None:
    n_requests = 40  # the plan as shown: more than max_hours, which is why a person is asked
    shown = estimate_hours(PLAN, n_requests=n_requests)
    assert shown > RULES.max_hours
    assert problems(n_requests) == []
    assert problems(n_requests, exposure_time_s=60.0) == []
    grown = problems(n_requests, exposure_count=2)
    assert grown and f"more than {shown:.1f} h" in grown[0]
