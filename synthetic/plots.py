"""PNG figures of synthetic patients: hidden trajectories, observations, treatments, what-ifs, images.

Used by ``twin synth-plots`` to (re)make the figures referenced from ``docs/synthetic.md``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthetic.drugs import DRUGS
from synthetic.oracle import Action, Plan, simulate
from synthetic.physiology import LABS
from synthetic.truth import PatientTruth, load_truth

__all__ = ["pick_patients", "plot_cohort"]

_PANELS = ("hba1c", "egfr", "sbp", "ldl", "potassium")


def pick_patients(truths: list[PatientTruth], k: int) -> list[PatientTruth]:
    """The ``k`` patients with the most distinct drugs (ties: most observations), alive at the end."""
    alive = [t for t in truths if t.death_day is None] or truths
    ranked = sorted(alive, key=lambda t: (-len({s["drug"] for s in t.treatments}), -len(t.observations), t.patient_id))
    return ranked[:k]


def _plot_patient(t: PatientTruth, path: Path) -> None:
    import matplotlib.pyplot as plt

    res = simulate(t, Plan.factual(), t.follow_up_days - 1)
    days = res.days
    fig, axes = plt.subplots(len(_PANELS) + 1, 1, figsize=(9, 11), sharex=True,
                             gridspec_kw={"height_ratios": [2] * len(_PANELS) + [1.4]})
    for ax, key in zip(axes, _PANELS, strict=False):
        spec = LABS[key]
        ax.plot(days, res.labs[spec.code][0], color="tab:blue", lw=1.4, label="hidden (noise-free)")
        if key == "egfr":
            ax.plot(days, res.hidden["egfr_struct"][0], color="tab:gray", lw=1.0, ls="--", label="structural eGFR")
        pts = [(o["day"], o["value"]) for o in t.observations if o["code"] == spec.code]
        if pts:
            ax.scatter(*zip(*pts, strict=True), s=14, color="tab:red", zorder=3, label="observed")
        ax.set_ylabel(f"{key}\n[{spec.unit}]", fontsize=8)
        ax.grid(alpha=0.3)
    for ev in t.events:
        for ax in axes[:-1]:
            ax.axvline(ev["day"], color="black" if ev["kind"] == "death" else "tab:orange", lw=0.8, ls=":")
    axes[0].legend(fontsize=7, loc="upper left")
    ax = axes[-1]
    for j, d in enumerate(DRUGS):
        for s in t.treatments:
            if s["drug"] != d.code:
                continue
            stop = s["stop_day"] if s["stop_day"] is not None else t.follow_up_days
            ax.plot([s["start_day"], stop], [j, j], lw=6, solid_capstyle="butt",
                    color=plt.cm.viridis(s["dose"] / d.max_dose))
            ax.text(s["start_day"], j + 0.25, f"{s['dose']:g} mg", fontsize=6)
    ax.set_yticks(range(len(DRUGS)), [d.key for d in DRUGS], fontsize=7)
    ax.set_ylim(-0.6, len(DRUGS) - 0.2)
    ax.set_xlabel("days since follow-up start")
    fig.suptitle(f"synthetic patient {t.patient_id[:8]} (orange: hospitalisation)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_counterfactual(t: PatientTruth, path: Path) -> None:
    import matplotlib.pyplot as plt

    origin = t.follow_up_days // 3
    horizon = 2 * 365
    plans = [
        Plan.factual(),
        Plan.untreated(),
        Plan((Action("860975", 2000.0), Action("1545658", 25.0), Action("314076", 40.0), Action("617312", 80.0)),
             False, "intensive"),
    ]
    res = simulate([t], plans, horizon, origin=origin)
    days = origin + res.days
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True)
    for ax, key in zip(axes.flat, ("hba1c", "egfr", "sbp", "ldl"), strict=True):
        code = LABS[key].code
        hist = t.trajectories
        ax.plot(hist["days"], hist[code], color="black", lw=1.0, label="recorded (hidden)")
        for j, pl in enumerate(plans):
            ax.plot(days, res.labs[code][j], lw=1.4, label=pl.name)
        ax.axvline(origin, color="gray", ls=":")
        ax.set_title(f"{key} [{LABS[key].unit}]", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"true counterfactuals from day {origin} (patient {t.patient_id[:8]})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_images(cohort_dir: Path, truths: list[PatientTruth], path: Path) -> None:
    import matplotlib.pyplot as plt

    rows = []
    for t in truths:
        files = sorted((cohort_dir / "images").glob(f"{t.patient_id}_*.npy"), key=lambda p: int(p.stem.split("_")[-1]))
        if len(files) >= 3:
            rows.append((t, files[:4]))
        if len(rows) == 3:
            break
    if not rows:
        return
    fig, axes = plt.subplots(len(rows), 4, figsize=(8, 2.2 * len(rows)), squeeze=False)
    for r, (t, files) in enumerate(rows):
        for c in range(4):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(files):
                ax.imshow(np.load(files[c]), cmap="gray", vmin=0, vmax=1)
                ax.set_title(f"{t.patient_id[:6]} #{c + 1}", fontsize=7)
    fig.suptitle("renal ultrasound arrays (size/brightness/lesion follow hidden kidney state)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _last_value(t: PatientTruth, code: str) -> float:
    """The last recorded value of ``code`` (0.0 when there is none or it is missing), a sort key."""
    series = t.trajectories[code]
    last = series[-1] if series else None
    return 0.0 if last is None else last


def plot_cohort(cohort_dir: str | Path, out_dir: str | Path, n_patients: int = 3) -> list[Path]:
    """Write the documentation figures for a generated cohort; returns the PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    cohort_dir, out = Path(cohort_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    truths = [load_truth(p) for p in sorted((cohort_dir / "truth").glob("*.json"))]
    chosen = pick_patients(truths, n_patients)
    paths = []
    for k, t in enumerate(chosen, start=1):
        p = out / f"synthetic_patient_{k}.png"
        _plot_patient(t, p)
        paths.append(p)
    p = out / "synthetic_counterfactual.png"
    _plot_counterfactual(chosen[0], p)
    paths.append(p)
    p = out / "synthetic_images.png"
    with_images = [t for t in truths if t.modalities.get("images")]
    egfr = LABS["egfr"].code
    with_images.sort(key=lambda t: _last_value(t, egfr))
    _plot_images(cohort_dir, with_images, p)
    if p.exists():
        paths.append(p)
    return paths
