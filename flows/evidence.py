"""A candidate's vetting and the evidence a person decides it on, for the forms that ask.

The TNS report (:mod:`flows.report`) and the spectrum (:mod:`flows.candidate`) are asked about
with the same evidence: the science, reference and difference cutouts and the light curve as
PNG plots (artifacts of the run, linked as Markdown images: under the settings'
``plots_base_url``, else embedded), the real-bogus score and every vetting reason.
"""

from __future__ import annotations

from prefect import get_run_logger

from flows.runtime import Runtime
from followup.evidence import CandidateVetting, cutouts_png, evidence_markdown, read_cutouts
from followup.models import Measurement, Target
from followup.photometry import build_light_curve, plot_light_curve
from tasks.artifacts import image_link, publish_markdown, publish_plot

__all__ = ["candidate_evidence", "candidate_vetting", "vetted_candidates"]


def candidate_vetting(runtime: Runtime, event_id: str, name: str) -> CandidateVetting | None:
    """The vetting ``process-frames`` kept for a candidate (None: it was never vetted)."""
    row = runtime.ledger.events.get_target(event_id, name)
    return None if row is None or row.vetting is None else CandidateVetting(**row.vetting)


def vetted_candidates(runtime: Runtime, event_id: str, candidates: list[Target]) -> list[Target]:
    """The candidates that passed vetting; the others never reach the TNS form (logged)."""
    kept = []
    for c in candidates:
        vetting = candidate_vetting(runtime, event_id, c.name)
        if vetting is not None and vetting.passed:
            kept.append(c)
        else:
            why = "was not vetted" if vetting is None else "did not pass vetting"
            get_run_logger().info("%s %s: no TNS report", c.name, why)
    return kept


def _plot_link(runtime: Runtime, kind: str, event_id: str, png: bytes, description: str) -> str:
    """Publish a plot (an artifact of this run) and return where Markdown finds it."""
    settings = runtime.settings
    path = publish_plot(
        kind,
        event_id,
        png,
        description,
        plots_dir=settings.plots_dir,
        plots_base_url=settings.plots_base_url,
    )
    return image_link(path, plots_base_url=settings.plots_base_url)


def candidate_evidence(
    runtime: Runtime, event_id: str, name: str, measurements: list[Measurement]
) -> str | None:
    """A candidate's cutouts, light curve, score and reasons, as Markdown and an artifact.

    Args:
        runtime: The settings (plots directory and its public URL) and the ledger.
        event_id: The event.
        name: The candidate.
        measurements: The event's measurements (the candidate's make its light curve).

    Returns:
        The Markdown (:func:`followup.evidence.evidence_markdown`); None for a candidate that
        was never vetted (nothing to show).
    """
    vetting = candidate_vetting(runtime, event_id, name)
    if vetting is None:
        return None
    cutouts = None
    for d in vetting.detections:
        if d.difference is None or d.index is None:
            continue
        try:
            stamps = read_cutouts(d.difference, d.index)
        except (OSError, KeyError) as exc:  # the product was moved or pruned
            get_run_logger().warning("%s: no cutouts from %s: %s", name, d.difference, exc)
            continue
        png = cutouts_png(stamps, title=f"{name} on {d.frame}" if d.frame else name, score=d.score)
        cutouts = _plot_link(
            runtime, f"cutouts-{name}", event_id, png, f"{name}: science, reference, difference"
        )
        break
    curve = build_light_curve(m for m in measurements if m.target_name == name)
    light_curve = _plot_link(
        runtime,
        f"light-curve-{name}",
        event_id,
        plot_light_curve(curve, title=f"{name} ({event_id}): difference photometry"),
        f"light curve of {name}",
    )
    markdown = evidence_markdown(name, vetting, cutouts=cutouts, light_curve=light_curve)
    publish_markdown(
        f"candidate-{name}", event_id, markdown, f"{name}: cutouts, light curve, score, vetting"
    )
    return markdown
