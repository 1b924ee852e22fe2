"""Human approvals: a run pauses with a form in the Prefect UI, and the decision goes to the ledger.

The pause happens in a small subflow of its own. When nobody answers before the timeout, Prefect
fails that subflow (a timed-out pause cannot be rescued from inside the flow); the calling flow sees
the failed subflow and records the decision as declined by ``timeout``, on purpose: no answer means
no telescope time spent and nothing published.

An approving answer is checked before it is recorded (the caller says how: filters the
instrument has, exposure bounds, telescope hours, text length). A bad edit is answered in the
form: the run pauses again, in a new ``approve`` subflow, with the problems at the top of the
description and the person's answer filled in, until a valid answer or the timeout (counted from
the first question). A decline is never held back by a bad edit.

A decision already recorded in the ledger for the same subject is reused with the form as the
person submitted it (their filters, exposures or text, stored with the decision), so a rerun of
a flow neither asks the same question twice nor forgets the answer's edits.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TypeVar

from prefect import flow, get_run_logger
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field

from flows.events import APPROVAL_WAITING, emit_followup_event
from followup.ledger import Ledger
from followup.models import Approval, ObservingStrategy
from followup.strategies import ApprovalRules, StrategyEdit, edit_problems

__all__ = ["ReportApproval", "RequestApproval", "ask", "ask_for_strategy", "recorded_answer"]

PAUSE_POLL_S = 2.0
"""Seconds between a paused run's looks at its state: how soon it goes on after the answer."""


class RequestApproval(RunInput):
    """Approve spending telescope time; filters and exposures can be edited before approving."""

    approved: bool = Field(default=False, description="Submit these requests to LCO.")
    reviewer: str = Field(default="", description="Your name, recorded in the ledger.")
    filters: list[str] = Field(description="Filters to request, in order (gp, rp, ip, zs...).")
    exposure_time_s: float = Field(description="Exposure time per frame, seconds.")
    exposure_count: int = Field(description="Frames per filter per epoch.")
    comment: str = Field(default="", description="Why (recorded in the ledger).")

    @classmethod
    def of(cls, strategy: ObservingStrategy) -> RequestApproval:
        """The form with ``strategy``'s filters and exposures as its initial values."""
        return cls(
            filters=strategy.filters,
            exposure_time_s=strategy.exposure_time_s,
            exposure_count=strategy.exposure_count,
        )

    def edit(self) -> StrategyEdit:
        """The filters and exposures as the person left them."""
        return StrategyEdit(
            filters=self.filters,
            exposure_time_s=self.exposure_time_s,
            exposure_count=self.exposure_count,
        )


class ReportApproval(RunInput):
    """Approve a public report; the text can be edited before it is sent."""

    approved: bool = Field(default=False, description="Send this report.")
    reviewer: str = Field(default="", description="Your name, recorded in the ledger.")
    text: str = Field(description="The message as it will be sent (editable).")
    comment: str = Field(default="", description="Why (recorded in the ledger).")


Form = TypeVar("Form", RequestApproval, ReportApproval)


def recorded_answer(
    ledger: Ledger, subject: str, form_type: type[Form]
) -> tuple[Approval, Form] | None:
    """The last decision recorded on ``subject`` and the form as it was submitted, if any."""
    rows = ledger.approvals.for_subject(subject)
    if not rows:
        return None
    row = rows[-1]
    decision = Approval(
        subject=row.subject,
        approved=row.approved,
        decided_by=row.decided_by,
        comment=row.comment,
        decided_at=row.decided_at,
    )
    return decision, form_type.model_validate((row.data or {}).get("form", {}))


@flow(name="approve", flow_run_name="approve-{subject}")
def _wait_for_person(
    subject: str, event_id: str, description: str, form: dict, kind: str, timeout_s: int
) -> dict:
    """Pause this run until a person answers the form in the UI (or the timeout fails it)."""
    model = RequestApproval if kind == "request" else ReportApproval
    emit_followup_event(
        APPROVAL_WAITING, event_id, payload={"subject": subject, "timeout_s": timeout_s}
    )
    answer = pause_flow_run(
        wait_for_input=model.with_initial_data(description=description, **form),
        timeout=timeout_s,
        poll_interval=PAUSE_POLL_S,
        key=f"approve-{kind}",
    )
    return answer.model_dump()


def _refused(problems: list[str], description: str) -> str:
    listed = "\n".join(f"- {p}" for p in problems)
    return (
        f"**Your answer was not recorded:**\n\n{listed}\n\nCorrect the form and resume again "
        f"(or switch Approved off to decline).\n\n---\n\n{description}"
    )


def ask(
    ledger: Ledger,
    *,
    subject: str,
    event_id: str,
    description: str,
    form: Form,
    timeout_s: int,
    check: Callable[[Form], list[str]] | None = None,
) -> tuple[Approval, Form]:
    """Ask a person through the UI; return the decision (recorded) and the form as submitted.

    Args:
        ledger: Where the decision is recorded.
        subject: What is decided on (a stable key: the same question always has the same subject).
        event_id: The event, for the ``followup.approval.waiting`` notification.
        description: Markdown shown above the form (the rendered message or the request summary).
        form: The form with its initial values.
        timeout_s: Seconds to wait for a valid answer; none by then counts as declined.
        check: The problems of an approving answer (empty: it may be recorded); each problem is
            shown to the person, who is asked again.

    Returns:
        The decision, and the submitted form (the initial form after a timeout). A decision
        recorded earlier on ``subject`` is returned with the form it was recorded with.
    """
    logger = get_run_logger()
    earlier = recorded_answer(ledger, subject, type(form))
    if earlier is not None:
        logger.info(
            "reusing the decision recorded on %s: approved=%s", subject, earlier[0].approved
        )
        return earlier
    kind = "request" if isinstance(form, RequestApproval) else "report"
    deadline = time.monotonic() + timeout_s
    shown, note = form, description
    while True:
        remaining = math.ceil(deadline - time.monotonic())
        state = None
        if remaining > 0:
            state = _wait_for_person(
                subject, event_id, note, shown.model_dump(), kind, remaining, return_state=True
            )
        if state is None or not state.is_completed():
            decision = Approval(
                subject=subject,
                approved=False,
                decided_by="timeout",
                comment=(state.message if state is not None else None) or "no valid answer",
            )
            answer = form
            break
        answer = type(form).model_validate(state.result())
        problems = check(answer) if check is not None and answer.approved else []
        if not problems:
            decision = Approval(
                subject=subject,
                approved=answer.approved,
                decided_by=answer.reviewer or "anonymous",
                comment=answer.comment,
            )
            break
        logger.warning("%s: answer not recorded: %s", subject, "; ".join(problems))
        shown, note = answer, _refused(problems, description)
    ledger.approvals.record(decision, form=answer.model_dump())
    logger.info("%s: approved=%s by %s", subject, decision.approved, decision.decided_by)
    return decision, answer


def ask_for_strategy(
    ledger: Ledger,
    *,
    subject: str,
    event_id: str,
    description: str,
    strategy: ObservingStrategy,
    rules: ApprovalRules,
    n_requests: int,
    timeout_s: int,
) -> tuple[Approval, ObservingStrategy | None]:
    """Ask a person for telescope time under ``strategy``, its filters and exposures editable.

    An edit is checked (filters of the instrument, exposure bounds, telescope hours:
    :func:`followup.strategies.edit_problems`) before it is recorded, and a rerun gets the
    recorded edit back, so the same group names.

    Args:
        ledger: Where the decision is recorded.
        subject: What is decided on, as for :func:`ask`.
        event_id: The event.
        description: Markdown shown above the form.
        strategy: The strategy the requests are planned with.
        rules: The approval rules an edit must keep.
        n_requests: How many requests the strategy plans (for the telescope hours).
        timeout_s: Seconds to wait for a valid answer.

    Returns:
        The decision, and the strategy as approved (None: declined or timed out).
    """
    decision, answer = ask(
        ledger,
        subject=subject,
        event_id=event_id,
        description=description,
        form=RequestApproval.of(strategy),
        timeout_s=timeout_s,
        check=lambda form: edit_problems(strategy, form.edit(), rules=rules, n_requests=n_requests),
    )
    if not decision.approved:
        return decision, None
    return decision, strategy.model_copy(update=answer.edit().model_dump())
