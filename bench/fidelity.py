"""Forecast fidelity of the twin against ground truth, baselines and ablations (one command).

    PYTHONPATH=. .venv/bin/python bench/fidelity.py                 # 500 synthetic patients
    PYTHONPATH=. .venv/bin/python bench/fidelity.py --patients 200 --epochs 15 --members 2
    PYTHONPATH=. .venv/bin/python bench/fidelity.py --external      # Synthea records, no truth

Synthetic mode: generate (or reuse) a cohort, ingest it into a temporary embedded store,
hold out 20% of patients, train the twin on the rest, and score forecasts from random
origins of the held-out patients against the generator's noise-free trajectories at
30/90/180/365 days, under the treatments the patients actually received (the same inputs
for the twin and the GRU baseline). The row ``oracle_known_patient`` is the generator's own
forecast from the true parameters and state at the origin, without the disturbances still to
come: the floor under every forecaster. ``records_bound`` goes one step closer to what records
allow: a forecaster that knows everything about the patient (drug responses, doses, past and
future disturbance paths up to the origin, the exact kidney state at each past image) except
the 12 random effects of :data:`synthetic.physiology.RANDOM_EFFECT_SD`, which it
estimates from the patient's noisy past lab values with their true prior (linear-Gaussian
posterior, Jacobians by finite differences of the generator): its expected RMSE is, up to
that linearisation, a lower bound for any forecaster that reads records, and its margin over
the best baseline the most any forecaster can claim. Also: 90% interval coverage of the observed future lab
values, and the C-index of the 1-year event risk. Prints tables, writes
``bench/results/fidelity.json`` (or ``fidelity-external.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.metrics import bootstrap_cindex, change_correlation, coverage_by_horizon  # noqa: E402
from graph.ingest import ingest_paths  # noqa: E402
from graph.schema import NodeType  # noqa: E402
from graph.store.sqlite import SQLiteStore  # noqa: E402
from graph.timeutil import days_between, parse_fhir_time  # noqa: E402
from twin.baselines import lab_history, last_value, linear_trend, seq_example, smoothed_level, train_gru  # noqa: E402
from twin.calibration import fit_interval_calibration  # noqa: E402
from twin.features import Example, drop_modalities, load_records  # noqa: E402
from twin.model.checkpoint import TwinEnsemble  # noqa: E402
from twin.predict import Prediction, predict  # noqa: E402
from twin.spec import forward_transform, inverse_transform  # noqa: E402
from twin.training import TrainConfig, TrainReport, build_examples, split_patients, train  # noqa: E402

HORIZONS = (30, 90, 180, 365)
WINDOWS = {30: (1, 60), 90: (60, 135), 180: (135, 270), 365: (270, 366)}


def _truth_at(truth: dict[str, Any], code: str, day: float) -> float | None:
    tr = truth["trajectories"]
    days = np.asarray(tr["days"], float)
    vals = tr.get(code)
    if vals is None or not len(days) or day > days[-1] or day < days[0]:
        return None
    v = np.asarray([np.nan if x is None else x for x in vals], float)
    out = float(np.interp(day, days, v))
    return None if math.isnan(out) else out


class Scores:
    """Accumulates errors per model, lab and horizon."""

    def __init__(self) -> None:
        self.err: dict[str, dict[str, dict[int, list[float]]]] = {}

    def add(self, model: str, code: str, h: int, e: float) -> None:
        self.err.setdefault(model, {}).setdefault(code, {}).setdefault(h, []).append(e)

    def table(self) -> dict[str, Any]:
        return {m: {c: {str(h): {"mae": float(np.mean(np.abs(v))), "rmse": float(np.sqrt(np.mean(np.square(v)))),
                                 "n": len(v)} for h, v in hs.items()} for c, hs in cs.items()}
                for m, cs in self.err.items()}


def calibrated(ens: TwinEnsemble, p: Prediction) -> Prediction:
    """``p`` (forecast uncalibrated) with its band scaled by the checkpoint's interval
    calibration, as :func:`twin.predict.predict` does by default (one solve gives both)."""
    cal = ens.interval_calibration
    if cal is None:
        return p
    codes = ens.spec.vocab.target_labs
    kinds = [ens.spec.norms.transforms.get(c, "identity") for c in codes]

    def fwd(x: np.ndarray) -> np.ndarray:
        return np.stack([forward_transform(k, x[..., j]) for j, k in enumerate(kinds)], axis=-1)

    lo, hi = cal.widen(fwd(p.p05), fwd(p.median), fwd(p.p95), codes, p.t)
    inv = [np.stack([inverse_transform(k, x[..., j]) for j, k in enumerate(kinds)], axis=-1) for x in (lo, hi)]
    return dataclasses.replace(p, p05=inv[0], p95=inv[1])


def noise_sd(code: str, value: float) -> float | None:
    """The generator's measurement noise SD of lab ``code`` at ``value`` (None: not a generator lab,
    or one without noise of its own)."""
    from synthetic.physiology import LABS

    spec = next((s for s in LABS.values() if s.code == code), None)
    sd = None if spec is None else math.sqrt(spec.noise_sd ** 2 + (spec.noise_cv * value) ** 2)
    return sd or None  # eGFR is computed from the noisy creatinine, it has no noise of its own


def evaluate(ens: TwinEnsemble, test_ex: list[Example], records: dict[str, Any], truths: dict[str, dict] | None,
             gru: Any, n_samples: int, seed: int) -> dict[str, Any]:
    vocab, norms = ens.spec.vocab, ens.spec.norms
    codes = vocab.target_labs
    mu = np.array([norms.lab_mean[c] for c in codes])
    sd = np.array([norms.lab_std[c] for c in codes])
    t_query = np.unique(np.concatenate([np.arange(0, 366, 7), HORIZONS])).astype(np.float32)
    hix = {h: int(np.flatnonzero(t_query == h)[0]) for h in HORIZONS}
    vs_truth, vs_obs = Scores(), Scores()
    cover: dict[str, list[float]] = {"twin_obs": [], "twin_truth": []}
    # per horizon: inside the band (calibrated and not), vs observations (by window) and vs the truth
    by_h: dict[str, tuple[list[float], list[str]]] = {k: ([], []) for k in ("obs", "obs_raw", "truth", "truth_raw")}
    width: dict[str, dict[str, dict[str, list[float]]]] = {k: {c: {} for c in codes} for k in ("twin", "twin_raw")}
    miss: dict[str, dict[str, list[float]]] = {c: {} for c in codes}  # observed - median, for the width needed
    true_change: dict[str, dict[str, list[float]]] = {c: {} for c in codes}
    change: dict[str, dict[str, tuple[list[float], list[float]]]] = {m: {c: ([], []) for c in codes}
                                                                     for m in ("twin", "gru")}
    origin_noise: dict[str, list[float]] = {c: [] for c in codes}
    risks, ev_t, ev_f = [], [], []
    variants = {"twin": {}, "twin_no_images": {"images": True}, "twin_no_variants": {"variants": True}}
    has_mod = {"images": [], "variants": []}
    for i in range(0, len(test_ex), 32):
        chunk = test_ex[i: i + 32]
        doses = torch.stack([e.doses for e in chunk])
        preds = {}
        for name, drop in variants.items():
            graphs = [drop_modalities(e.graph, **drop) if drop else e.graph for e in chunk]
            preds[name] = predict(ens, graphs, doses, torch.from_numpy(t_query), n_samples=n_samples, seed=seed,
                                  calibrated=False)
        raw = preds["twin"]
        preds = {name: calibrated(ens, p) for name, p in preds.items()}
        risks.append(preds["twin"].risk)
        ev_t.append(np.stack([e.targets.event_time for e in chunk]))
        ev_f.append(np.stack([e.targets.event_flag for e in chunk]))
        if gru is not None:
            seqs = [seq_example(records[e.patient_id], e, vocab, norms) for e in chunk]
            with torch.no_grad():
                grid, gmean, _ = gru([s.seq for s in seqs], torch.stack([s.anchor for s in seqs]),
                                     torch.stack([s.anchor_mask for s in seqs]), doses, 365.0)
            gmean = gmean.numpy()
            gi = {h: int(np.argmin(np.abs(grid.numpy() - h))) for h in (0, *HORIZONS)}
        for b, ex in enumerate(chunk):
            for key, pp in (("twin", preds["twin"]), ("twin_raw", raw)):
                for h in (0, *HORIZONS):
                    g = int(np.argmin(np.abs(t_query - h)))
                    for j, c in enumerate(codes):
                        width[key][c].setdefault(str(h), []).append(float(pp.p95[b, g, j] - pp.p05[b, g, j]) / sd[j])
            hist = lab_history(records[ex.patient_id].cut(ex.t0), ex.t0, vocab, norms)
            hq = np.array(HORIZONS, float)
            base = {"last_value": last_value(hist, hq) * sd + mu, "smoothed_level": smoothed_level(hist, hq) * sd + mu,
                    "linear_trend": linear_trend(hist, hq) * sd + mu}
            if gru is not None:
                base["gru"] = np.stack([gmean[b, gi[h]] for h in HORIZONS]) * sd + mu
            has_mod["images"].append(ex.graph["image"].num_nodes > 0)
            has_mod["variants"].append(ex.graph["variant"].num_nodes > 0)
            # against the generator's noise-free truth
            if truths is not None:
                tr = truths[ex.patient_id]
                d0 = days_between(parse_fhir_time(tr["start_date"]), ex.t0)
                for k, h in enumerate(HORIZONS):
                    for j, c in enumerate(codes):
                        y = _truth_at(tr, c, d0 + h)
                        if y is None:
                            continue
                        for name, p in preds.items():
                            vs_truth.add(name, c, h, float(p.mean[b, hix[h], j]) - y)
                        for name, arr in base.items():
                            vs_truth.add(name, c, h, float(arr[k, j]) - y)
                        p = preds["twin"]
                        cover["twin_truth"].append(float(p.p05[b, hix[h], j] <= y <= p.p95[b, hix[h], j]))
                        for key, pp in (("truth", p), ("truth_raw", raw)):
                            by_h[key][0].append(float(pp.p05[b, hix[h], j] <= y <= pp.p95[b, hix[h], j]))
                            by_h[key][1].append(str(h))
                        y0 = _truth_at(tr, c, d0)
                        if y0 is not None:
                            true_change[c].setdefault(str(h), []).append(y - y0)
                            if h == 180:
                                change["twin"][c][0].append(float(p.mean[b, hix[h], j] - p.mean[b, 0, j]))
                                change["twin"][c][1].append(y - y0)
                                if gru is not None:
                                    change["gru"][c][0].append(float(gmean[b, gi[h], j] - gmean[b, gi[0], j]) * sd[j])
                                    change["gru"][c][1].append(y - y0)
                    for j, c in enumerate(codes):
                        y0 = _truth_at(tr, c, d0)
                        ns = noise_sd(c, y0) if y0 is not None else None
                        if ns is not None:
                            origin_noise[c].append(2 * 1.6449 * ns / sd[j])
            # against observed future values (noisy), bucketed into horizon windows
            for t, j, ys in zip(ex.targets.t, ex.targets.lab, ex.targets.y, strict=True):
                y = float(ys) * sd[j] + mu[j]
                g = int(np.argmin(np.abs(t_query - t)))
                p = preds["twin"]
                cover["twin_obs"].append(float(p.p05[b, g, j] <= y <= p.p95[b, g, j]))
                h = next((h for h, (lo, hi) in WINDOWS.items() if lo <= t < hi), None)
                if h is None:
                    continue
                for key, pp in (("obs", p), ("obs_raw", raw)):
                    by_h[key][0].append(float(pp.p05[b, g, j] <= y <= pp.p95[b, g, j]))
                    by_h[key][1].append(str(h))
                miss[codes[j]].setdefault(str(h), []).append((y - float(p.median[b, g, j])) / sd[j])
                for name, pp in preds.items():
                    vs_obs.add(name, codes[j], h, float(pp.mean[b, g, j]) - y)
                tq = np.array([t], float)
                vs_obs.add("last_value", codes[j], h, float(last_value(hist, tq)[0, j] * sd[j] + mu[j]) - y)
                vs_obs.add("smoothed_level", codes[j], h, float(smoothed_level(hist, tq)[0, j] * sd[j] + mu[j]) - y)
                vs_obs.add("linear_trend", codes[j], h, float(linear_trend(hist, tq)[0, j] * sd[j] + mu[j]) - y)
                if gru is not None:
                    gg = int(np.argmin(np.abs(grid.numpy() - t)))
                    vs_obs.add("gru", codes[j], h, float(gmean[b, gg, j] * sd[j] + mu[j]) - y)
    bound = None
    if truths is not None:
        known = known_patient_floor(test_ex, truths, codes, vs_truth)
        bound = records_bound(test_ex, truths, records, codes, known)
    risk = np.concatenate(risks) if risks else np.zeros((0, 0))
    et, ef = (np.concatenate(ev_t), np.concatenate(ev_f)) if ev_t else (np.zeros((0, 0)), np.zeros((0, 0)))
    groups = [e.patient_id for e in test_ex]
    cidx = {k: bootstrap_cindex(risk[:, i], et[:, i], ef[:, i], groups, seed=seed) for i, k in enumerate(vocab.event_kinds)}

    def mean_over_labs(per_lab: dict[str, dict[str, list[float]]], fn: Any) -> dict[str, float | None]:
        out = {}
        for h in ("0", *map(str, HORIZONS)):
            v = [fn(np.asarray(per_lab[c][h])) for c in codes if len(per_lab[c].get(h, [])) >= 5]
            out[h] = float(np.mean(v)) if v else None
        return out

    uncertainty = {
        "coverage90_by_horizon": {k: coverage_by_horizon(*v) for k, v in by_h.items() if v[0]},
        "mean_width90_std": {k: mean_over_labs(w, np.mean) for k, w in width.items()},
        "width90_std_by_lab": {k: {c: {h: float(np.mean(v)) for h, v in w[c].items()} for c in codes}
                               for k, w in width.items()},
        # the width a band centred on the twin's median needs to hold 90 % of the observations
        "needed_width90_std": mean_over_labs(miss, lambda v: float(np.quantile(v, 0.95) - np.quantile(v, 0.05))),
        # the truth's spread: 90 % range of the true change from the origin across origins
        "truth_change_width90_std": mean_over_labs(
            {c: {h: [x / sd[j] for x in v] for h, v in true_change[c].items()} for j, c in enumerate(codes)},
            lambda v: float(np.quantile(v, 0.95) - np.quantile(v, 0.05))),
        "origin": {c: {"twin_width90_std": float(np.mean(width["twin"][c]["0"])) if width["twin"][c].get("0") else None,
                       "noise_width90_std": float(np.mean(origin_noise[c])) if origin_noise[c] else None}
                   for c in codes},
        "calibration": ens.interval_calibration.to_dict() if ens.interval_calibration is not None else None,
    }
    change_corr = {m: {c: change_correlation(*change[m][c]) for c in codes} for m in change}
    return {
        "uncertainty": uncertainty,
        "change_correlation_180": change_corr,
        "vs_truth": vs_truth.table() if truths is not None else None,
        "records_bound": bound,
        "vs_observed": vs_obs.table(),
        "coverage90": {k: (float(np.mean(v)) if v else None) for k, v in cover.items()},
        "coverage_n": {k: len(v) for k, v in cover.items()},
        "event_c_index_1y": cidx,
        "n_test_examples": len(test_ex),
        "share_with": {k: float(np.mean(v)) if v else 0.0 for k, v in has_mod.items()},
    }


def known_patient_floor(test_ex: list[Example], truths: dict[str, dict], codes: list[str],
                        scores: Scores) -> dict[tuple[int, str, int], float]:
    """Score the generator's own forecast from the true parameters and state at each origin,
    with the disturbances still to come unknown (set to their mean, zero), under the factual
    treatments: the error no forecaster working from records can go below. Returns the
    errors by (example index, lab, horizon)."""
    from synthetic import Plan, simulate
    from synthetic.truth import PatientTruth

    pats = [PatientTruth.from_json(truths[ex.patient_id]) for ex in test_ex]
    starts = [_origin_day(truths[ex.patient_id], ex) for ex in test_ex]
    errors: dict[tuple[int, str, int], float] = {}
    if not pats:
        return errors
    res = simulate(pats, Plan.factual(), max(HORIZONS), origin=starts, future_disturbances=False)
    for i, ex in enumerate(test_ex):
        for h in HORIZONS:
            for c in codes:
                y = _truth_at(truths[ex.patient_id], c, starts[i] + h)
                if y is not None and c in res.labs:
                    errors[(i, c, h)] = float(res.labs[c][i, h]) - y
                    scores.add("oracle_known_patient", c, h, errors[(i, c, h)])
    return errors


def _origin_day(truth: dict[str, Any], ex: Example) -> int:
    return int(math.floor(days_between(parse_fhir_time(truth["start_date"]), ex.t0)))


def records_bound(test_ex: list[Example], truths: dict[str, dict], records: dict[str, Any], codes: list[str],
                  known_errors: dict[tuple[int, str, int], float]) -> dict[str, dict[str, float]]:
    """Expected RMSE per lab and horizon of the partial oracle described in the module docstring.

    For each origin: the Jacobian ``J`` of every noise-free value (past observations, past
    images' structural eGFR, the future targets) with respect to the random effects, by
    finite differences of the replay; posterior covariance ``(P^-1 + J' R^-1 J)^-1`` with the
    prior ``P`` and the generator's measurement variances ``R`` (eGFR is left out: it is computed
    from the same creatinine sample; images count as exact); expected squared error at a target
    ``j' Cov j`` plus the known-patient floor's squared error there (future disturbances)."""
    from synthetic import Plan, simulate
    from synthetic.physiology import LABS, RANDOM_EFFECT_SD
    from synthetic.truth import PatientTruth

    names = list(RANDOM_EFFECT_SD)
    step = {k: 0.01 * sd for k, sd in RANDOM_EFFECT_SD.items()}
    base = [PatientTruth.from_json(truths[ex.patient_id]) for ex in test_ex]
    starts = [_origin_day(truths[ex.patient_id], ex) for ex in test_ex]
    if not base:
        return {}
    n = len(base)
    pats = base + [dataclasses.replace(b, params={**b.params, k: b.params[k] + step[k]}) for k in names for b in base]
    res = simulate(pats, Plan.factual(), max(starts) + max(HORIZONS) + 1, origin=0)

    def jac(series: np.ndarray, i: int, day: float) -> np.ndarray:
        d = int(math.floor(day))
        w = day - d
        at = series[i::n, d] * (1.0 - w) + series[i::n, d + 1] * w  # base, then one row per effect
        return (at[1:] - at[0]) / np.array([step[k] for k in names])

    spec_of = {s.code: s for s in LABS.values()}
    prior_prec = np.diag([1.0 / RANDOM_EFFECT_SD[k] ** 2 for k in names])
    sq: dict[str, dict[int, list[float]]] = {c: {h: [] for h in HORIZONS} for c in codes}
    for i, ex in enumerate(test_ex):
        tr = truths[ex.patient_id]
        rows, var = [], []
        for o in tr["observations"]:
            spec = spec_of.get(o["code"])
            if o["day"] > starts[i] or spec is None or spec.key == "egfr":
                continue
            rows.append(jac(res.labs[o["code"]], i, o["day"]))
            var.append(spec.noise_sd ** 2 + (spec.noise_cv * o["true"]) ** 2 + (10.0 ** -spec.decimals) ** 2 / 12)
        start = parse_fhir_time(tr["start_date"])
        for node in records[ex.patient_id].nodes:
            if node.type is NodeType.IMAGE and node.time is not None and node.time <= ex.t0:
                rows.append(jac(res.hidden["egfr_struct"], i, max(days_between(start, node.time), 0.0)))
                var.append(1e-6)
        jp = np.asarray(rows).reshape(-1, len(names))
        cov = np.linalg.inv(prior_prec + jp.T @ (jp / np.asarray(var)[:, None]))
        for c in codes:
            if c not in res.labs:
                continue
            for h in HORIZONS:
                if (i, c, h) in known_errors:
                    j = jac(res.labs[c], i, starts[i] + h)
                    sq[c][h].append(float(j @ cov @ j) + known_errors[(i, c, h)] ** 2)
    return {c: {str(h): float(np.sqrt(np.mean(v))) for h, v in hs.items() if v} for c, hs in sq.items()}


def event_discrimination(ens: TwinEnsemble, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """1-year event risk on a fresh cohort none of whose patients the model saw (the generator
    with another seed), large enough for the events to mean something: C-index per event
    kind with a 95 % bootstrap interval over patients."""
    from synthetic import SynthConfig, generate_cohort

    seed = args.seed + 1000
    cdir = work / f"events-{args.event_patients}-{seed}"
    if not (cdir / "cohort.json").exists():
        generate_cohort(SynthConfig(patients=args.event_patients, seed=seed), cdir)
    db = work / f"events-{args.event_patients}-{seed}.db"
    db.unlink(missing_ok=True)
    store = SQLiteStore(db)
    ingest_paths(store, [cdir / "fhir"])
    ids = store.patient_ids()
    exs = build_examples([load_records(store, p) for p in ids], ens.spec, args.test_origins, seed, ens.image_encoder)
    store.close()
    t_q = torch.tensor([0.0, 365.0])
    risk = np.concatenate([predict(ens, [e.graph for e in exs[i: i + 64]], torch.stack([e.doses for e in exs[i: i + 64]]),
                                   t_q, n_samples=8, seed=args.seed).risk for i in range(0, len(exs), 64)])
    et = np.stack([e.targets.event_time for e in exs])
    ef = np.stack([e.targets.event_flag for e in exs])
    groups = [e.patient_id for e in exs]
    return {"patients": len(ids), "seed": seed, "origins": len(exs),
            "c_index_1y": {k: bootstrap_cindex(risk[:, i], et[:, i], ef[:, i], groups, seed=args.seed)
                           for i, k in enumerate(ens.spec.vocab.event_kinds)}}


def summarise(table: dict[str, Any], codes: list[str], norms: Any) -> dict[str, Any]:
    """Mean standardised RMSE per model and horizon; twin vs best baseline at 180 days."""
    out: dict[str, Any] = {"mean_std_rmse": {}, "rmse_180": {}}
    for m, cs in table.items():
        out["mean_std_rmse"][m] = {}
        for h in HORIZONS:
            v = [cs[c][str(h)]["rmse"] / norms.lab_std[c] for c in codes if c in cs and str(h) in cs[c]]
            out["mean_std_rmse"][m][str(h)] = float(np.mean(v)) if v else None
        out["rmse_180"][m] = {c: cs[c]["180"]["rmse"] for c in codes if c in cs and "180" in cs[c]}
    baselines = [m for m in ("last_value", "smoothed_level", "linear_trend", "gru") if m in table]
    imp = {}
    for c in codes:
        vals = {m: out["rmse_180"][m].get(c) for m in baselines if out["rmse_180"][m].get(c) is not None}
        tw = out["rmse_180"].get("twin", {}).get(c)
        if vals and tw is not None:
            best = min(vals, key=vals.get)
            imp[c] = {"best_baseline": best, "baseline_rmse": vals[best], "twin_rmse": tw,
                      "improvement": 1.0 - tw / vals[best]}
    out["twin_vs_best_baseline_180"] = imp
    ms = out["mean_std_rmse"]
    best_mean = min((ms[m]["180"] for m in baselines if ms[m]["180"] is not None), default=None)
    if best_mean and ms.get("twin", {}).get("180") is not None:
        out["mean_improvement_180"] = 1.0 - ms["twin"]["180"] / best_mean
        floor = ms.get("oracle_known_patient", {}).get("180")
        if floor is not None and best_mean > floor:
            # how much of the error a forecaster could still remove the twin removes
            out["floor_180"] = floor
            out["twin_share_of_reducible_gap_180"] = (best_mean - ms["twin"]["180"]) / (best_mean - floor)
    return out


def add_bound_summary(summary: dict[str, Any], bound: dict[str, dict[str, float]], codes: list[str],
                      norms: Any) -> None:
    """The records bound's mean standardised RMSE by horizon, the largest margin over the best
    baseline any forecaster could reach at 180 days, and the share of it the twin reaches."""
    ms = {str(h): float(np.mean([bound[c][str(h)] / norms.lab_std[c] for c in codes if str(h) in bound.get(c, {})]))
          for h in HORIZONS}
    summary["mean_std_rmse"]["records_bound"] = ms
    summary["rmse_180"]["records_bound"] = {c: bound[c]["180"] for c in codes if "180" in bound.get(c, {})}
    base = [m for m in ("last_value", "smoothed_level", "linear_trend", "gru") if m in summary["mean_std_rmse"]]
    best = min(summary["mean_std_rmse"][m]["180"] for m in base)
    summary["max_improvement_180"] = 1.0 - ms["180"] / best
    if "mean_improvement_180" in summary:
        summary["twin_share_of_max_improvement_180"] = summary["mean_improvement_180"] / summary["max_improvement_180"]


def print_tables(res: dict[str, Any], codes: list[str], key: str) -> None:
    table = res[key]
    if not table:
        return
    models = list(table)
    print(f"\nRMSE at 180 days ({key}) per lab")
    print(f"{'model':18s}" + "".join(f"{c:>11s}" for c in codes))
    for m in models:
        print(f"{m:18s}" + "".join(f"{table[m].get(c, {}).get('180', {}).get('rmse', float('nan')):11.3f}" for c in codes))
    s = res["summary_" + key]["mean_std_rmse"]
    print(f"\nmean standardised RMSE ({key}) by horizon")
    print(f"{'model':18s}" + "".join(f"{h:>9d}d" for h in HORIZONS))
    for m in [*models, *(["records_bound"] if "records_bound" in s else [])]:
        vals = [s[m][str(h)] for h in HORIZONS]
        print(f"{m:18s}" + "".join(f"{(v if v is not None else float('nan')):10.3f}" for v in vals))


def print_uncertainty(res: dict[str, Any]) -> None:
    """Coverage and mean width of the 90 % band per horizon, the width needed, the truth's spread,
    the origin's width against measurement noise, and the change correlations at 180 days."""
    u = res["uncertainty"]
    hs = ["0", *map(str, HORIZONS)]
    print(f"\n{'90% band by horizon':34s}" + "".join(f"{h + 'd':>9s}" for h in hs))
    for key, cov in u["coverage90_by_horizon"].items():
        print(f"{'coverage ' + key:34s}" + "".join(f"{cov[h]['coverage']:9.3f}" if h in cov else f"{'-':>9s}" for h in hs))
    rows = {"width twin (calibrated)": u["mean_width90_std"]["twin"], "width twin (uncalibrated)":
            u["mean_width90_std"]["twin_raw"], "width needed (obs - median)": u["needed_width90_std"],
            "truth's change from origin, 90% range": u["truth_change_width90_std"]}
    for name, row in rows.items():
        print(f"{name:34s}" + "".join(f"{row[h]:9.3f}" if row.get(h) is not None else f"{'-':>9s}" for h in hs))
    print("origin: twin width / measurement-noise width (lab SDs): " + ", ".join(
        f"{c} {v['twin_width90_std']:.2f}/{v['noise_width90_std']:.2f}" for c, v in u["origin"].items()
        if v["twin_width90_std"] is not None and v["noise_width90_std"] is not None))
    cc = res["change_correlation_180"]
    print("correlation of predicted and true change, origin to 180 d: " + ", ".join(
        f"{c} twin {_f(cc['twin'][c])} GRU {_f(cc['gru'][c])}" for c in cc["twin"]))


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    t_start = time.perf_counter()
    work = Path(args.work or tempfile.mkdtemp(prefix="twin-fidelity-"))
    work.mkdir(parents=True, exist_ok=True)
    truths: dict[str, dict] | None = None
    if args.external:
        src = ROOT.parent / "shared" / "data" / "external" / "synthea-fhir"
        paths = [src]
        cohort_info: dict[str, Any] = {"source": str(src)}
    else:
        from synthetic import SynthConfig, generate_cohort

        cdir = work / f"cohort-{args.patients}-{args.seed}"
        if not (cdir / "cohort.json").exists():
            generate_cohort(SynthConfig(patients=args.patients, seed=args.seed), cdir)
        paths = [cdir / "fhir"]
        cohort_info = {"dir": str(cdir), "patients": args.patients, "seed": args.seed}
    db = work / ("external.db" if args.external else f"cohort-{args.patients}-{args.seed}.db")
    db.unlink(missing_ok=True)
    store = SQLiteStore(db)
    t0 = time.perf_counter()
    ingest_paths(store, paths, keep_going=args.external)
    ingest_s = time.perf_counter() - t0
    ids = store.patient_ids()
    if not args.external:
        truths = {p: json.loads((cdir / "truth" / f"{p}.json").read_text()) for p in ids}
    rest, test_ids = split_patients(ids, args.test_fraction, args.seed + 17)
    cfg = TrainConfig(epochs=args.epochs, members=args.members, seed=args.seed, progress=not args.quiet,
                      origins_per_patient=args.origins, device=args.device, batch_size=args.batch_size,
                      val_fraction=0.15 if len(rest) >= 20 else 0.25)
    t0 = time.perf_counter()
    if args.reuse_model and (work / "model.pt").is_file():  # evaluate again without retraining
        rep = TrainReport(**json.loads((work / "model.report.json").read_text()))
    else:
        rep = train(store, cfg, work / "model.pt", patient_ids=rest)
    train_s = time.perf_counter() - t0
    ens = TwinEnsemble.load(work / "model.pt")
    vocab, norms = ens.spec.vocab, ens.spec.norms
    records = {p: load_records(store, p) for p in ids}
    tr_ids, va_ids = split_patients(rest, cfg.val_fraction, cfg.seed)
    cal_s = None
    if ens.interval_calibration is None:  # a model trained before training fitted it: fit it as training does
        t0 = time.perf_counter()
        val_ex = build_examples([records[p] for p in va_ids], ens.spec, cfg.origins_per_patient, cfg.seed + 1,
                                ens.image_encoder, cfg.change_origins_per_patient)
        ens.interval_calibration = fit_interval_calibration(ens, val_ex, seed=cfg.seed)
        ens.save(work / "model.pt")
        cal_s = time.perf_counter() - t0
    test_ex = build_examples([records[p] for p in test_ids], ens.spec, args.test_origins, args.seed + 99,
                             ens.image_encoder)
    # GRU baseline on the same training origins as the twin
    t0 = time.perf_counter()
    tr_ex = build_examples([records[p] for p in tr_ids], ens.spec, cfg.origins_per_patient, cfg.seed,
                           k_change=cfg.change_origins_per_patient)
    va_ex = build_examples([records[p] for p in va_ids], ens.spec, cfg.origins_per_patient, cfg.seed + 1,
                           k_change=cfg.change_origins_per_patient)
    gru = None
    if tr_ex:
        gru = train_gru([seq_example(records[e.patient_id], e, vocab, norms) for e in tr_ex],
                        [seq_example(records[e.patient_id], e, vocab, norms) for e in va_ex],
                        vocab.n_targets, vocab.n_treatments, horizon_days=365, epochs=args.epochs, seed=args.seed)
    gru_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = evaluate(ens, test_ex, records, truths, gru, args.samples, args.seed)
    eval_s = time.perf_counter() - t0
    if args.event_patients and not args.external:
        t0 = time.perf_counter()
        res["event_cohort"] = event_discrimination(ens, work, args)
        res["event_cohort"]["seconds"] = time.perf_counter() - t0
    codes = vocab.target_labs
    for key in ("vs_truth", "vs_observed"):
        if res[key]:
            res["summary_" + key] = summarise(res[key], codes, norms)
    if res.get("records_bound"):
        add_bound_summary(res["summary_vs_truth"], res["records_bound"], codes, norms)
    res.update({
        "mode": "external" if args.external else "synthetic", "cohort": cohort_info,
        "n_patients": len(ids), "n_train_patients": len(rest), "n_test_patients": len(test_ids),
        "target_labs": codes, "drugs": vocab.treatments, "event_kinds": vocab.event_kinds,
        "train": {k: v for k, v in rep.to_dict().items() if k != "members"},
        "train_members": [{k: v for k, v in m.items() if k != "history"} for m in rep.members],
        "seconds": {"ingest": ingest_s, "train_twin": train_s, "calibrate": cal_s, "train_gru": gru_s, "evaluate": eval_s,
                    "total": time.perf_counter() - t_start},
        "config": {k: v for k, v in vars(args).items()}, "torch_threads": torch.get_num_threads(),
        "created": datetime.now().isoformat(timespec="seconds"),
    })
    store.close()
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--origins", type=int, default=4, help="training origins per patient")
    ap.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    ap.add_argument("--test-origins", type=int, default=None, help="origins per held-out patient (2; external 6)")
    ap.add_argument("--test-fraction", type=float, default=None, help="held-out share (0.2; external 0.4)")
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--work", default=None, help="directory for the cohort, store and model (reused)")
    ap.add_argument("--external", action="store_true", help="run on ../shared/data/external/synthea-fhir")
    ap.add_argument("--out", default=None)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--reuse-model", action="store_true", help="reuse WORK/model.pt (same --work, seed and cohort)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (train() leaves this to its caller)")
    ap.add_argument("--event-patients", type=int, default=0,
                    help="also score 1-year event risk on a fresh cohort of this many patients (0: no)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.test_origins is None:
        args.test_origins = 6 if args.external else 2
    if args.test_fraction is None:  # Synthea adults are seen about yearly: more held-out patients, more origins
        args.test_fraction = 0.4 if args.external else 0.2
    random.seed(args.seed)
    res = run(args)
    codes = res["target_labs"]
    print(f"\n{res['mode']} cohort: {res['n_patients']} patients ({res['n_test_patients']} held out, "
          f"{res['n_test_examples']} test origins); targets {', '.join(codes)}")
    for key in ("vs_truth", "vs_observed"):
        if res.get(key):
            print_tables(res, codes, key)
            imp = res["summary_" + key].get("mean_improvement_180")
            if imp is not None:
                print(f"twin vs best baseline, mean standardised RMSE at 180 d ({key}): {imp:+.1%}")
            gap = res["summary_" + key].get("twin_share_of_reducible_gap_180")
            if gap is not None:
                print(f"known-patient floor at 180 d: {res['summary_' + key]['floor_180']:.3f}; the twin removes "
                      f"{gap:.0%} of the best baseline's error above it")
            top = res["summary_" + key].get("max_improvement_180")
            if top is not None:
                print(f"records bound at 180 d: {res['summary_' + key]['mean_std_rmse']['records_bound']['180']:.3f}, "
                      f"at most {top:+.1%} vs the best baseline for any forecaster reading records; the twin "
                      f"reaches {res['summary_' + key]['twin_share_of_max_improvement_180']:.0%} of that")
    print(f"\n90% interval coverage: {res['coverage90']}  (n={res['coverage_n']})")
    print_uncertainty(res)
    print(f"event C-index at 1 year (held-out origins): {res['event_c_index_1y']}")
    if res.get("event_cohort"):
        print(f"event C-index at 1 year ({res['event_cohort']['patients']} fresh patients, "
              f"{res['event_cohort']['origins']} origins): {res['event_cohort']['c_index_1y']}")
    print(f"seconds: {json.dumps({k: round(v, 1) for k, v in res['seconds'].items() if v is not None})}; "
          f"per epoch {res['train']['seconds_per_epoch']:.2f}s on {res['train']['device']}")
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / (
        "fidelity-external.json" if args.external else "fidelity.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=lambda o: None if isinstance(o, float) else str(o)))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
