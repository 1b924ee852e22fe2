"""What a person needs to decide on a candidate: its vetting, score, cutouts and how they look.

The difference search keeps, for each frame, the candidates that passed vetting with their
real-bogus ``score`` and the ``reasons`` of each check, and writes their science, reference and
difference cutouts into the frame's difference product (``CUT<k>`` of
:func:`followup.photometry.transients.save_difference`). :func:`vettings_of` gathers that per
candidate once the frames are merged (:func:`followup.photometry.associate_candidates`), as a
:class:`CandidateVetting` the ledger keeps beside the target; :func:`cutouts_png` draws the
cutouts and :func:`evidence_markdown` lays it all out for an approval form.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "STAMPS",
    "CandidateVetting",
    "Detection",
    "cutouts_png",
    "evidence_markdown",
    "read_cutouts",
    "vettings_of",
]

STAMPS = ("science", "reference", "difference")
"""The planes of a ``CUT<k>`` cube, in order."""


class Detection(BaseModel):
    """One frame's detection of a candidate, as vetted on that frame.

    Attributes:
        frame: The frame's basename (or path).
        score: Real-bogus score on that frame's difference (0-1), if scored.
        reasons: Every reason the vetting gave on that frame.
        difference: The frame's difference product (science, reference and difference cutouts
            of its candidates), if written.
        index: The candidate's ``CUT<index>`` in that product.
    """

    model_config = ConfigDict(extra="forbid")

    frame: str = ""
    score: float | None = None
    reasons: list[str] = Field(default_factory=list)
    difference: str | None = None
    index: int | None = None


class CandidateVetting(BaseModel):
    """A candidate's vetting over its frames, kept in the ledger beside the target.

    Attributes:
        passed: It passed vetting (only such a candidate gets telescope time or a TNS report).
        score: The best real-bogus score over its frames.
        reasons: Every reason given on any frame, once each, in the order first given.
        detections: Each frame's detection, highest score first.
    """

    model_config = ConfigDict(extra="forbid")

    passed: bool
    score: float | None = None
    reasons: list[str] = Field(default_factory=list)
    detections: list[Detection] = Field(default_factory=list)


def _value(cell: Any) -> float:
    return float(cell.value if hasattr(cell, "value") else cell)


def _reasons(cell: Any) -> list[str]:
    if isinstance(cell, list | tuple):
        return [str(r) for r in cell if str(r)]
    return [r.strip() for r in str(cell).split(";") if r.strip()]


def vettings_of(
    candidates: Sequence[dict[str, Any]], tables: Iterable[Any], *, radius_arcsec: float = 1.5
) -> dict[str, CandidateVetting | None]:
    """Each merged candidate's vetting, from the per-frame tables it was merged from.

    Args:
        candidates: ``[{name, ra, dec, ...}]`` of
            :func:`~followup.photometry.associate_candidates`.
        tables: The per-frame tables of vetted candidates (``ra``, ``dec``, ``score``,
            ``reasons``; ``meta["difference"]`` and ``meta["frame"]`` when written), in any
            order. Their rows passed vetting on their frame (a catalogue search has ``reasons``
            but no ``score``); a table without ``reasons`` was not vetted and gives no vetting.
        radius_arcsec: A row this close to a candidate is its detection.

    Returns:
        ``{name: CandidateVetting}``; None for a candidate no vetted frame saw.
    """
    tables = list(tables)
    found: dict[str, list[Detection]] = {c["name"]: [] for c in candidates}
    for table in tables:
        if "reasons" not in table.colnames or not len(table):
            continue
        ra = np.array([_value(v) for v in table["ra"]])
        dec = np.array([_value(v) for v in table["dec"]])
        meta = table.meta or {}
        for c in candidates:
            dra = ((ra - c["ra"] + 180.0) % 360.0 - 180.0) * math.cos(math.radians(c["dec"]))
            sep = np.hypot(dra, dec - c["dec"]) * 3600.0
            if not len(sep) or sep.min() > radius_arcsec:
                continue
            k = int(np.argmin(sep))
            row = table[k]
            found[c["name"]].append(
                Detection(
                    frame=Path(str(meta.get("frame", ""))).name,
                    score=_value(row["score"]) if "score" in table.colnames else None,
                    reasons=_reasons(row["reasons"]) if "reasons" in table.colnames else [],
                    difference=str(meta["difference"]) if meta.get("difference") else None,
                    index=k if meta.get("difference") else None,
                )
            )
    out: dict[str, CandidateVetting | None] = {}
    for name, detections in found.items():
        if not detections:
            out[name] = None
            continue
        detections.sort(key=lambda d: -(d.score if d.score is not None else -1.0))
        reasons = list(dict.fromkeys(r for d in detections for r in d.reasons))
        best = detections[0].score
        out[name] = CandidateVetting(
            passed=True, score=best, reasons=reasons, detections=detections
        )
    return out


def read_cutouts(difference: str | Path, index: int) -> dict[str, np.ndarray]:
    """The science, reference and difference cutouts of candidate ``index`` of a product.

    Raises:
        FileNotFoundError: No such product.
        KeyError: The product has no ``CUT<index>``.
    """
    from astropy.io import fits

    with fits.open(difference, memmap=False) as hdus:
        cube = np.asarray(hdus[f"CUT{index}"].data, dtype=np.float32)
    return dict(zip(STAMPS, cube, strict=True))


def _limits(image: np.ndarray) -> tuple[float, float]:
    """Display limits: astropy's zscale of the finite pixels (0, 1 when there are none)."""
    from astropy.visualization import ZScaleInterval

    finite = image[np.isfinite(image)]
    if not finite.size:
        return 0.0, 1.0
    low, high = ZScaleInterval().get_limits(finite)
    return (float(low), float(high)) if high > low else (float(low), float(low) + 1.0)


def cutouts_png(
    stamps: dict[str, np.ndarray], *, title: str = "", score: float | None = None, dpi: int = 80
) -> bytes:
    """Science, reference and difference side by side (zscale, the candidate marked), as PNG.

    Args:
        stamps: ``{"science", "reference", "difference"}`` arrays of one size (NaN off the frame).
        title: Above the panels (the candidate's name).
        score: The real-bogus score, written in the difference panel.
        dpi: Resolution (the default keeps the image near 20 kB, small enough to embed).

    Returns:
        The PNG image.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.6, 2.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    for ax, name in zip(axes, STAMPS, strict=True):
        image = np.asarray(stamps[name], dtype=float)
        low, high = _limits(image)
        ax.imshow(image, origin="lower", cmap="gray", vmin=low, vmax=high, interpolation="nearest")
        ny, nx = image.shape
        cx, cy = (nx - 1) / 2, (ny - 1) / 2
        gap, arm = max(3.0, 0.14 * nx), max(4.0, 0.12 * nx)  # ticks clear of the source
        for xs, ys in (
            ((cx - gap - arm, cx - gap), (cy, cy)),
            ((cx + gap, cx + gap + arm), (cy, cy)),
            ((cx, cx), (cy - gap - arm, cy - gap)),
            ((cx, cx), (cy + gap, cy + gap + arm)),
        ):
            ax.plot(xs, ys, color="tab:red", linewidth=1.2)
        label = name if name != "difference" or score is None else f"{name} (score {score:.2f})"
        ax.set_title(label, fontsize="small")
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def evidence_markdown(
    name: str,
    vetting: CandidateVetting,
    *,
    cutouts: str | None = None,
    light_curve: str | None = None,
) -> str:
    """The candidate as a person decides on it: cutouts, light curve, score, every reason.

    Args:
        name: The candidate.
        vetting: Its vetting.
        cutouts: URL (or data URI) of the cutouts image; None: none could be drawn.
        light_curve: URL (or data URI) of its light curve.

    Returns:
        Markdown: the images, the score, the verdict, each reason, and a row per frame.
    """
    lines = [f"### Candidate {name}: what to decide on", ""]
    if cutouts:
        lines += [f"![{name}: science, reference, difference]({cutouts})", ""]
    else:
        lines += ["*No cutouts: the difference product is not at hand.*", ""]
    if light_curve:
        lines += [f"![{name}: light curve]({light_curve})", ""]
    score = "not scored" if vetting.score is None else f"{vetting.score:.2f}"
    lines += [
        f"**Real-bogus score:** {score} (best of {len(vetting.detections)} frame(s); "
        "0 bogus, 1 real)",
        "",
        f"**Vetting:** {'passed' if vetting.passed else 'did not pass'}",
        "",
        *[f"- {reason}" for reason in vetting.reasons],
    ]
    if vetting.detections:
        lines += ["", "| frame | score | reasons |", "| --- | --- | --- |"]
        for d in vetting.detections:
            shown = "" if d.score is None else f"{d.score:.2f}"
            lines.append(f"| {_cell(d.frame)} | {shown} | {_cell('; '.join(d.reasons))} |")
    return "\n".join(lines)
