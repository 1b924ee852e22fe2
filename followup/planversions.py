"""Plan versions: what a new map of an event changes in its fields, and why.

Each alert of an event makes a new version of the event's plan. Fields come from a fixed sky grid
per instrument (:mod:`followup.fieldgrid`), so the fields of two maps can be compared by name: a
field of the last version whose probability in the new map is still at least the strategy's
minimum is *kept* (its pending requests stay), one that fell below it is *dropped* (its pending
requests are to be cancelled, with the reason), and the new map's best fields not yet planned are
*added*. The probability gained is what the added fields hold in the new map.

Galaxies and point sources are versioned the same way, by name: one still in the new plan keeps
its new probability, one no longer in it holds nothing and is dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from followup.models import Target
    from followup.skymap import SkyMap

__all__ = ["PlanDiff", "PlanField", "diff_plan", "plan_fields", "probability_now"]


class PlanField(BaseModel):
    """One field of a plan version.

    Attributes:
        name: Grid field name (the same sky position always has the same name).
        ra: Centre RA in degrees.
        dec: Centre Dec in degrees.
        probability: Probability inside the field in the version's map.
        kind: ``field``, ``galaxy`` or ``point`` (:class:`followup.models.TargetKind`).
        instrument_type: The instrument whose grid the field is on (fields only).
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    ra: float
    dec: float
    probability: float = Field(ge=0)
    kind: str = "field"
    instrument_type: str | None = None


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

    @property
    def probability_covered(self) -> float:
        """Probability the new version's fields hold in the new map."""
        return self.probability_gained + self.probability_kept

    def summary(self) -> str:
        """One line: counts and probabilities."""
        return (
            f"{len(self.added)} added (+{100 * self.probability_gained:.2f}%), "
            f"{len(self.kept)} kept ({100 * self.probability_kept:.2f}%), "
            f"{len(self.dropped)} dropped"
        )

    def markdown(self, *, version: int | None = None, hours: float | None = None) -> str:
        """The difference as Markdown: a line of totals and one table row per field."""
        title = f"Plan version {version}" if version is not None else "Plan"
        lines = [
            f"**{title}:** {self.summary()}; the plan covers "
            f"{100 * self.probability_covered:.2f}% of the map"
            + (f" in {hours:.1f} h of telescope time" if hours is not None else "")
            + ".",
        ]
        if not (self.added or self.kept or self.dropped):
            return lines[0]
        lines += [
            "",
            "| change | field | RA | Dec | p (new map) | why |",
            "|---|---|---|---|---|---|",
        ]
        for change, fields in (
            ("added", self.added),
            ("kept", self.kept),
            ("dropped", self.dropped),
        ):
            for f in fields:
                why = self.reasons.get(f.name, "") if change == "dropped" else ""
                lines.append(
                    f"| {change} | {f.name} | {f.ra:.4f} | {f.dec:+.4f} | {f.probability:.4f} | "
                    f"{why} |"
                )
        return "\n".join(lines)


def plan_fields(targets: Sequence[Target]) -> list[PlanField]:
    """The targets of a plan as plan-version fields, best first."""
    return [
        PlanField(
            name=t.name,
            ra=t.ra,
            dec=t.dec,
            probability=t.probability,
            kind=t.kind.value,
            instrument_type=t.instrument_type,
        )
        for t in targets
    ]


def probability_now(
    previous: Sequence[PlanField], candidates: Sequence[PlanField], sky: SkyMap | None
) -> dict[str, float]:
    """Probability of each field of the last version in the new map, by name.

    A field the new plan also chose takes its probability there; any other grid field is
    integrated over its rectangle in the new map (:func:`followup.fieldgrid.field_probability`);
    a galaxy or point source the new plan no longer holds has none.
    """
    now = {c.name: c.probability for c in candidates}
    rest = [
        f
        for f in previous
        if f.name not in now and f.kind == "field" and f.instrument_type and sky is not None
    ]
    if rest:
        from followup.fieldgrid import field_probability

        by_instrument: dict[str, list[PlanField]] = {}
        for f in rest:
            by_instrument.setdefault(str(f.instrument_type), []).append(f)
        for instrument, fields in by_instrument.items():
            values = field_probability(
                sky, instrument, [f.ra for f in fields], [f.dec for f in fields]
            )
            now.update({f.name: float(p) for f, p in zip(fields, values, strict=True)})
    return {f.name: now.get(f.name, 0.0) for f in previous}


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
        worth = now > 0 and now >= min_probability
        if worth and len(diff.kept) < max_fields:
            diff.kept.append(field)
        else:
            diff.dropped.append(field)
            diff.reasons[old.name] = (
                f"beyond the strategy's {max_fields} fields"
                if worth
                else f"p fell from {old.probability:.3g} to {now:.3g} in the new map, below the "
                f"strategy's minimum {min_probability:g}"
                if min_probability > 0
                else f"p fell from {old.probability:.3g} to 0 in the new map"
            )
    planned = {f.name for f in previous}
    for field in candidates:
        if len(diff.kept) + len(diff.added) >= max_fields:
            break
        if field.name in planned or field.probability < min_probability or field.probability <= 0:
            continue
        diff.added.append(field)
    diff.probability_gained = float(sum(f.probability for f in diff.added))
    diff.probability_kept = float(sum(f.probability for f in diff.kept))
    return diff
