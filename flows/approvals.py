"""Human approvals: a run pauses with a form in the Prefect UI, and the decision goes to the ledger.

The pause happens in a small subflow of its own. When nobody answers before the timeout, Prefect
fails that subflow (a timed-out pause cannot be rescued from inside the flow); the calling flow sees
the failed subflow and records the decision as declined by ``timeout``, on purpose: no answer means
no telescope time spent and nothing published.

A decision already recorded in the ledger for the same subject is reused, so a rerun of a flow does
not ask the same question twice.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field

from flows.events import APPROVAL_WAITING, emit_followup_event
from followup.ledger import Ledger
from followup.models import Approval

__all__ = ["ReportApproval", "RequestApproval", "ask", "previous_decision"]


class RequestApproval(RunInput):
    """Approve spending telescope time; filters and exposures can be edited before approving."""

    approved: bool = Field(default=False, description="Submit these requests to LCO.")
    reviewer: str = Field(default="", description="Your name, recorded in the ledger.")
    filters: list[str] = Field(description="Filters to request, in order (gp, rp, ip, zs...).")
    exposure_time_s: float = Field(gt=0, description="Exposure time per frame, seconds.")
    exposure_count: int = Field(ge=1, description="Frames per filter per epoch.")
    comment: str = Field(default="", description="Why (recorded in the ledger).")


class ReportApproval(RunInput):
    """Approve a public report; the text can be edited before it is sent."""

    approved: bool = Field(default=False, description="Send this report.")
    reviewer: str = Field(default="", description="Your name, recorded in the ledger.")
    text: str = Field(description="The message as it will be sent (editable).")
    comment: str = Field(default="", description="Why (recorded in the ledger).")


def previous_decision(ledger: Ledger, subject: str) -> Approval | None:
    """The last decision recorded on ``subject``, if any."""
    rows = ledger.approvals.for_subject(subject)
    if not rows:
        return None
    row = rows[-1]
    return Approval(
        subject=row.subject,
        approved=row.approved,
        decided_by=row.decided_by,
        comment=row.comment,
        decided_at=row.decided_at,
    )


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
        poll_interval=2,
        key=f"approve-{kind}",
    )
    return answer.model_dump()


def ask(
    ledger: Ledger,
    *,
    subject: str,
    event_id: str,
    description: str,
    form: RequestApproval | ReportApproval,
    timeout_s: int,
) -> tuple[Approval, dict]:
    """Ask a person through the UI; return the decision (recorded) and the submitted form.

    Args:
        ledger: Where the decision is recorded.
        subject: What is decided on (a stable key: the same question always has the same subject).
        event_id: The event, for the ``followup.approval.waiting`` notification.
        description: Markdown shown above the form (the rendered message or the request summary).
        form: The form with its initial values.
        timeout_s: Seconds to wait; no answer by then counts as declined.
    """
    logger = get_run_logger()
    earlier = previous_decision(ledger, subject)
    if earlier is not None:
        logger.info("reusing the decision recorded on %s: approved=%s", subject, earlier.approved)
        return earlier, form.model_dump()
    kind = "request" if isinstance(form, RequestApproval) else "report"
    state = _wait_for_person(
        subject, event_id, description, form.model_dump(), kind, timeout_s, return_state=True
    )
    if state.is_completed():
        answer = state.result()
        decision = Approval(
            subject=subject,
            approved=bool(answer["approved"]),
            decided_by=answer.get("reviewer") or "anonymous",
            comment=answer.get("comment", ""),
        )
    else:
        answer = form.model_dump()
        decision = Approval(
            subject=subject, approved=False, decided_by="timeout", comment=state.message or ""
        )
    ledger.approvals.record(decision, form=answer)
    logger.info("%s: approved=%s by %s", subject, decision.approved, decision.decided_by)
    return decision, answer
