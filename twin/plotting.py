"""Figure layout shared by the forecast and scenario plots, and the forecast plot itself.

Every panel of a figure shares one x axis (days from the forecast origin); y axes are labelled
with the lab's unit in readable form (:func:`graph.display.display_unit`); names are wrapped,
never cut; the legend sits in the one spare grid slot when there is one, else on top under the
title, so no slot is left empty and no band of blank space is added.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graph.display import display_unit

if TYPE_CHECKING:
    from twin.twin import Forecast

__all__ = ["grid_shape", "lab_label", "layout_panels", "plot_forecast", "save_figure"]


def lab_label(name: str, code: str, unit: str | None = None, width: int = 50) -> str:
    """A panel title: the lab's whole name and its code, wrapped at ``width`` characters
    (never cut); the readable unit in brackets when ``unit`` is given."""
    text = f"{name} ({code})" if name and name != code else code
    if unit:
        text += f" [{display_unit(unit)}]"
    return "\n".join(textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)) or text


def grid_shape(panels: int, max_cols: int = 3) -> tuple[int, int]:
    """``(rows, cols)`` for ``panels`` panels leaving at most one slot spare (the legend's).

    The widest grid up to ``max_cols`` columns that does so; a grid of ``max_cols`` columns
    when none does (only possible for ``max_cols`` above 3).
    """
    if panels <= 0:
        raise ValueError(f"a figure needs at least one panel, got {panels}")
    for cols in range(min(max_cols, panels), 0, -1):
        rows = math.ceil(panels / cols)
        if rows * cols - panels <= 1:
            return rows, cols
    return math.ceil(panels / max_cols), max_cols


def layout_panels(panels: int, max_cols: int = 3, panel_size: tuple[float, float] = (4.6, 3.0)) -> tuple[Any, list[Any],
                                                                                                          Any | None]:
    """A figure with ``panels`` axes sharing one x axis: ``(figure, axes, spare)``, where
    ``spare`` is the one unused grid slot (axis hidden) meant for the legend, or ``None``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = grid_shape(panels, max_cols)
    fig, grid = plt.subplots(rows, cols, figsize=(panel_size[0] * cols, panel_size[1] * rows), squeeze=False,
                             sharex=True, layout="constrained")
    flat = list(grid.flat)
    axes, spare = flat[:panels], (flat[panels] if len(flat) > panels else None)
    for k, ax in enumerate(axes):
        ax.tick_params(labelsize=7, labelbottom=True)
        ax.grid(alpha=0.3)
        if k + cols >= panels:  # nothing below this panel: it carries the axis label
            ax.set_xlabel("days from forecast origin", fontsize=8)
    if spare is not None:
        spare.axis("off")
    return fig, axes, spare


def save_figure(fig: Any, path: str | Path, title: str, handles: Sequence[Any], labels: Sequence[str],
                spare: Any | None, dpi: int = 110) -> Path:
    """Title, legend (in ``spare`` if given, else on top under the title) and write the PNG."""
    import matplotlib.pyplot as plt

    if spare is not None:
        fig.suptitle(title, fontsize=10)
        spare.legend(handles, labels, loc="center", fontsize=9, frameon=False)
    else:  # the title heads the legend, so constrained layout keeps room for both above the panels
        fig.legend(handles, labels, loc="outside upper center", ncol=min(len(labels), 4), fontsize=8, frameon=False,
                   title=title, title_fontsize=10)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def plot_forecast(fc: Forecast, history: dict[str, list[tuple[float, float]]], path: str | Path,
                  dpi: int = 110) -> Path:
    """PNG of each target lab's recent history (points, days before the origin) and forecast
    (median line and 5–95 % band), all panels on one x axis."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    codes = list(fc.labs)
    fig, axes, spare = layout_panels(max(len(codes), 1), max_cols=2, panel_size=(5.0, 2.8))
    first = min((d for pts in history.values() for d, _ in pts), default=0.0)
    for ax, code in zip(axes, codes, strict=False):
        lf = fc.labs[code]
        pts = history.get(code, [])
        if pts:
            ax.plot(*zip(*pts, strict=True), "o", ms=3, color="black")
        ax.fill_between(lf.days, lf.p05, lf.p95, alpha=0.3, color="tab:blue", lw=0)
        ax.plot(lf.days, lf.median, color="tab:blue")
        ax.axvline(0, color="grey", lw=0.8, ls="--")
        ax.set_title(lab_label(lf.name, lf.code), fontsize=8)
        ax.set_ylabel(display_unit(lf.unit) or "value", fontsize=8)
        ax.set_xlim(min(first, 0.0) - 10, fc.horizon_days + 10)
    handles = [Line2D([], [], marker="o", ls="", ms=3, color="black"), Line2D([], [], color="tab:blue"),
               Patch(color="tab:blue", alpha=0.3), Line2D([], [], color="grey", lw=0.8, ls="--")]
    labels = ["observed", "forecast median", "5–95 % band", "forecast origin"]
    title = (f"Forecast from {fc.origin:%d %b %Y} over {fc.horizon_days:g} days "
             f"({fc.n_members} ensemble member{'s' if fc.n_members != 1 else ''} × {fc.n_samples} samples each)")
    if fc.event_risk:
        title += f"\nrisk by day {fc.horizon_days:g}: " + ", ".join(f"{k} {v:.1%}" for k, v in fc.event_risk.items())
    return save_figure(fig, path, title, handles, labels, spare, dpi)
