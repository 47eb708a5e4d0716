"""PNG plots of scenario trajectories: one panel per lab (and event risk), one band per plan."""

from __future__ import annotations

import math
from pathlib import Path

from scenarios.result import ScenarioResult
from twin.twin import lab_label

__all__ = ["plot_trajectories"]


def plot_trajectories(result: ScenarioResult, path: str | Path, *, patient: str | int | None = None,
                      labs: list[str] | None = None, dpi: int = 110) -> Path:
    """Write median trajectories with 5–95 % bands of every plan for one patient to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result.full_samples("a plot of trajectories")
    pi = result.patient_index(patient)
    codes = [result.labs[result.lab_index(lab)] for lab in labs] if labs else list(result.labs)
    panels: list[tuple[str, str | None]] = [(c, None) for c in codes] + [(e, "risk") for e in result.events]
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.2 * rows), squeeze=False)
    colors = plt.get_cmap("tab10")
    t = result.times
    for k, (name, kind) in enumerate(panels):
        ax = axes[k // cols][k % cols]
        for p, plan in enumerate(result.plans):
            if kind == "risk":
                x = result.risk_samples[:, pi, p, :, result.event_index(name)]  # type: ignore[index]
            else:
                x = result.lab_samples[:, pi, p, :, result.lab_index(name)]
            med, lo, hi = result.summarise(x)
            ax.plot(t, med, color=colors(p % 10), lw=1.8, label=plan)
            ax.fill_between(t, lo, hi, color=colors(p % 10), alpha=0.15, lw=0)
        if kind == "risk":
            ax.set_title(f"cumulative risk: {name}", fontsize=9)
            ax.set_ylim(bottom=0)
        else:
            unit = result.lab_units.get(name, "")
            ax.set_title(lab_label(result.lab_names.get(name, name), name, unit), fontsize=8)
        ax.set_xlabel("days from origin", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for k in range(len(panels), rows * cols):
        axes[k // cols][k % cols].axis("off")
    handles, labels_ = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels_, loc="lower center", ncol=min(len(result.plans), 4), fontsize=8, frameon=False)
    q_lo, q_hi = result.quantiles
    fig.suptitle(f"patient {result.patients[pi]}: median and {q_lo:.0%}–{q_hi:.0%} band per plan "
                 f"({result.n_samples} samples)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06 + 0.02 * math.ceil(len(result.plans) / 4), 1, 0.95))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out
