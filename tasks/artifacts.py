"""Artifacts on runs: tables, links and plots, keyed per event so the UI keeps their history."""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect.artifacts import create_image_artifact, create_markdown_artifact, create_table_artifact

__all__ = ["artifact_key", "image_link", "publish_markdown", "publish_plot", "publish_table"]


def artifact_key(kind: str, event_id: str) -> str:
    """A valid artifact key (lowercase letters, digits, dashes) for ``kind`` of an event."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{kind}-{event_id}".lower()).strip("-")


def publish_table(
    kind: str, event_id: str, rows: Sequence[dict[str, Any]], description: str
) -> None:
    """A table artifact (one dict per row)."""
    create_table_artifact(
        table=[dict(row) for row in rows], key=artifact_key(kind, event_id), description=description
    )


def publish_markdown(kind: str, event_id: str, markdown: str, description: str) -> None:
    """A markdown artifact."""
    create_markdown_artifact(
        markdown=markdown, key=artifact_key(kind, event_id), description=description
    )


def publish_plot(
    kind: str,
    event_id: str,
    png: bytes,
    description: str,
    *,
    plots_dir: Path,
    plots_base_url: str = "",
) -> Path:
    """Save a PNG and show it on the run, under the key ``<kind>-plot-<event>``.

    With a public base URL for the plots directory the plot becomes an image artifact pointing at
    it; without one it is embedded in a markdown artifact, so it shows even with no file server.

    Returns:
        Where the PNG was written.
    """
    # A plot never shares its key with a table of the same kind ("light-curve"): artifacts of
    # one key are versions of one thing, and the UI would show only the later of the two.
    key = artifact_key(kind if kind.endswith("plot") else f"{kind}-plot", event_id)
    plots_dir.mkdir(parents=True, exist_ok=True)
    path = plots_dir / f"{key}.png"
    path.write_bytes(png)
    if plots_base_url:
        create_image_artifact(
            image_url=f"{plots_base_url.rstrip('/')}/{path.name}", key=key, description=description
        )
    else:
        data = base64.b64encode(png).decode()
        create_markdown_artifact(
            markdown=f"![{description}](data:image/png;base64,{data})",
            key=key,
            description=description,
        )
    return path


def image_link(path: Path, *, plots_base_url: str = "") -> str:
    """Where Markdown finds a published plot: its public URL, else the PNG as a data URI.

    Args:
        path: The PNG, as :func:`publish_plot` wrote it.
        plots_base_url: Public URL of the plots directory (empty: embed the image).
    """
    if plots_base_url:
        return f"{plots_base_url.rstrip('/')}/{path.name}"
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
