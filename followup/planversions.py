"""Plan versions: what a new map of an event changes in its fields, and why.

Each alert of an event makes a new version of the event's plan. Fields come from a fixed sky grid
per instrument (:mod:`followup.fieldgrid`), so the fields of two maps can be compared by name: a
field of the last version whose probability in the new map is still at least the strategy's
minimum is *kept* (its pending requests stay), one that fell below it is *dropped* (its pending
requests are to be cancelled, with the reason), and the new map's best fields not yet planned are
*added*. The probability gained is what the added fields hold in the new map.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PlanDiff", "PlanField", "diff_plan"]


class PlanField(BaseModel):
    """One field of a plan version.

    Attributes:
        name: Grid field name (the same sky position always has the same name).
        ra: Centre RA in degrees.
        dec: Centre Dec in degrees.
        probability: Probability inside the field in the version's map.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    ra: float
    dec: float
    probability: float = Field(ge=0)


class PlanDiff(BaseModel):
    """How a plan version differs from the previous one.

    Attributes:
        added: Fields new in this version.
        kept: Fields of the previous version still worth observing (probability in the new map).
        dropped: Fields of the previous version that fell below the minimum.
        reasons: Why each dropped field was dropped.
        probability_gained: Probability the added fields hold in the new map.
        probability_kept: Probability the kept fields hold in the new map.
    """

    model_config = ConfigDict(extra="forbid")

    added: list[PlanField] = Field(default_factory=list)
    kept: list[PlanField] = Field(default_factory=list)
    dropped: list[PlanField] = Field(default_factory=list)
    reasons: dict[str, str] = Field(default_factory=dict)
    probability_gained: float = 0.0
    probability_kept: float = 0.0

    @property
    def fields(self) -> list[PlanField]:
        """The fields of the new version: kept, then added."""
        return [*self.kept, *self.added]

    def summary(self) -> str:
        """One line: counts and probabilities."""
        return (
            f"{len(self.added)} added (+{100 * self.probability_gained:.2f}%), "
            f"{len(self.kept)} kept ({100 * self.probability_kept:.2f}%), "
            f"{len(self.dropped)} dropped"
        )


def diff_plan(
    previous: Sequence[PlanField],
    candidates: Sequence[PlanField],
    probability_now: Mapping[str, float],
    *,
    min_probability: float,
    max_fields: int,
) -> PlanDiff:
    """The next version of a plan from the last one and the new map's best fields.

    Args:
        previous: Fields of the last version (empty for the first alert).
        candidates: The new map's best fields, best first (probabilities in the new map).
        probability_now: Probability of each previous field in the new map, by name.
        min_probability: Fields holding less are dropped (previous) or not added (new).
        max_fields: Fields a version holds at most (kept ones count first).

    Returns:
        The difference; ``diff.fields`` is the new version.
    """
    diff = PlanDiff()
    for old in previous:
        now = float(probability_now.get(old.name, 0.0))
        field = old.model_copy(update={"probability": now})
        if now >= min_probability and len(diff.kept) < max_fields:
            diff.kept.append(field)
        else:
            diff.dropped.append(field)
            diff.reasons[old.name] = (
                f"p fell from {old.probability:.3g} to {now:.3g} in the new map, below the "
                f"strategy's minimum {min_probability:g}"
                if now < min_probability
                else f"beyond the strategy's {max_fields} fields"
            )
    planned = {f.name for f in previous}
    for field in candidates:
        if len(diff.kept) + len(diff.added) >= max_fields:
            break
        if field.name in planned or field.probability < min_probability:
            continue
        diff.added.append(field)
    diff.probability_gained = float(sum(f.probability for f in diff.added))
    diff.probability_kept = float(sum(f.probability for f in diff.kept))
    return diff
