"""PNG plots of scenario trajectories: one panel per lab (and event risk), one band per plan.

Lab samples carry an independent observation-noise draw per query time, so a quantile taken
at each time alone wobbles from week to week with a few hundred samples. The curves are
therefore quantiles of the samples *pooled over neighbouring query times* (:func:`pooled_quantiles`,
``±smooth`` times, shrinking at both ends so day 0 and the horizon use their own samples);
the title says how wide the window is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from graph.display import display_unit
from scenarios.result import ScenarioResult
from twin.plotting import lab_label, layout_panels, save_figure

__all__ = ["plot_trajectories", "pooled_quantiles"]


def pooled_quantiles(x: np.ndarray, quantiles: tuple[float, ...], half_window: int) -> np.ndarray:
    """Quantiles ``[Q, T]`` of samples ``x`` ``[S, T]``, at each time over the samples of the
    ``half_window`` times on either side as well (fewer near both ends)."""
    S, T = x.shape
    out = np.empty((len(quantiles), T), dtype=np.float64)
    for t in range(T):
        h = min(half_window, t, T - 1 - t)
        out[:, t] = np.quantile(x[:, t - h: t + h + 1].reshape(-1), quantiles)
    return out


def plot_trajectories(result: ScenarioResult, path: str | Path, *, patient: str | int | None = None,
                      labs: list[str] | None = None, dpi: int = 110, smooth: int = 2) -> Path:
    """Write median trajectories with 5–95 % bands of every plan for one patient to ``path`` (PNG).

    Risks are shown in %; ``smooth`` is the half-width, in query times, of the pooling window
    of :func:`pooled_quantiles` (0: each time alone).
    """
    from matplotlib.lines import Line2D

    result.full_samples("a plot of trajectories")
    pi = result.patient_index(patient)
    codes = [result.labs[result.lab_index(lab)] for lab in labs] if labs else list(result.labs)
    panels: list[tuple[str, bool]] = [(c, False) for c in codes] + [(e, True) for e in result.events]
    fig, axes, spare = layout_panels(len(panels), max_cols=3)
    colors = [f"C{p % 10}" for p in range(len(result.plans))]
    t = result.times
    q_lo, q_hi = result.quantiles
    for ax, (name, is_risk) in zip(axes, panels, strict=True):
        for p in range(len(result.plans)):
            if is_risk:
                x = 100.0 * result.risk_samples[:, pi, p, :, result.event_index(name)]  # type: ignore[index]
            else:
                x = result.lab_samples[:, pi, p, :, result.lab_index(name)]
            med, lo, hi = pooled_quantiles(np.asarray(x, dtype=np.float64), (0.5, q_lo, q_hi), smooth)
            ax.plot(t, med, color=colors[p], lw=1.8)
            ax.fill_between(t, lo, hi, color=colors[p], alpha=0.15, lw=0)
        if is_risk:
            ax.set_title(f"risk of {name} by each day", fontsize=8)
            ax.set_ylabel("cumulative risk (%)", fontsize=8)
            ax.set_ylim(bottom=0)
        else:
            ax.set_title(lab_label(result.lab_names.get(name, name), name), fontsize=8)
            ax.set_ylabel(display_unit(result.lab_units.get(name)) or "value", fontsize=8)
        ax.set_xlim(0, float(t[-1]))
    handles = [Line2D([], [], color=c, lw=1.8) for c in colors]
    step = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
    pooled = f"; quantiles pooled over ±{smooth * step:.0f} days" if smooth and step else ""
    title = (f"What-if for patient {result.patients[pi]}: median and {q_lo:.0%}–{q_hi:.0%} band per plan\n"
             f"{result.n_samples} samples per plan{pooled}; day 0 = forecast origin")
    return save_figure(fig, path, title, handles, list(result.plans), spare, dpi)
