"""Light-curve plots: AB magnitudes against time, 5-sigma limits as down triangles."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["plot_light_curve"]

_BAND_COLOURS = {
    "gp": "tab:green",
    "g": "tab:green",
    "rp": "tab:red",
    "r": "tab:red",
    "ip": "tab:brown",
    "i": "tab:brown",
    "zs": "black",
    "z": "black",
}


def plot_light_curve(df: pd.DataFrame, *, title: str | None = None, dpi: int = 110) -> bytes:
    """Plot a light curve (AB magnitude against MJD, 5-sigma limits as down triangles) as PNG bytes.

    Args:
        df: A table from :func:`build_light_curve`.
        title: Plot title (default: the target names).
        dpi: Resolution.

    Returns:
        The PNG image.
    """
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if len(df):
        for band, group in df.groupby("band", sort=True):
            colour = _BAND_COLOURS.get(str(band))
            det = group[group["is_detection"]]
            lim = group[~group["is_detection"]]
            if len(det):
                ax.errorbar(
                    det["mjd"],
                    det["mag"],
                    yerr=det["mag_err"],
                    fmt="o",
                    color=colour,
                    label=str(band),
                    capsize=2,
                )
            if len(lim):
                ax.plot(
                    lim["mjd"],
                    lim["limit_mag_5sigma"],
                    "v",
                    color=colour,
                    alpha=0.6,
                    label=f"{band} (5σ limit)" if not len(det) else None,
                )
        ax.invert_yaxis()
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no measurements", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("MJD")
    ax.set_ylabel("AB magnitude")
    names = sorted(set(df["target_name"])) if len(df) else []
    ax.set_title(title if title is not None else ", ".join(names))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
