"""Batched what-if simulation: every twin under every plan in one model solve.

``simulate(twins, plans, horizon_days)`` resolves and checks the plans, turns each (twin, plan)
pair into a daily dose schedule (:func:`scenarios.schedule.plan_dose_actions` +
:func:`twin.features.treatment.dose_schedule`), stacks them into one ``[N·P, T, D]`` tensor
and calls :meth:`twin.model.stacked.StackedMembers.rollout` once for every ensemble member
together on all N twins × P plans × S samples trajectories (never once per plan or member; a
large run is split into chunks of twins and samples, see :data:`CHUNK_STATE_ELEMENTS`). Sample
``s`` comes from member ``s mod M``.

The twin's own :func:`twin.predict.predict` draws independent noise per plan row; here draws
are shared across plans so that plan differences and rankings are paired (see below).

Uncertainty: sample ``s`` of a twin draws its initial latent state ``z0 = mu + sigma·eps_s``
(epistemic) and, with ``observation_noise``, a lab-noise draw ``eta_s`` (aleatoric). Both draws
are shared by all plans of that twin (common random numbers), so differences between plans
and rankings are paired comparisons. With noise, the samples' spread around each median is
scaled by the checkpoint's interval calibration (per lab and day, :mod:`twin.calibration`), as
the forecast bands are. Everything is drawn from one ``torch.Generator`` seeded
by ``seed``: the same call gives the same numbers.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import torch
from torch_geometric.data import Batch

from core.errors import PlanError, TwinError
from scenarios.guardrails import Flag, check_plans
from scenarios.plan import ResolvedPlan, TreatmentPlan
from scenarios.result import ScenarioResult, Threshold, find_lab, first_crossing, sample_quantiles
from scenarios.schedule import plan_dose_actions
from scenarios.treatments import TreatmentCatalog
from twin.features import build_graph
from twin.features.treatment import DoseAction, actions_from_records, dose_schedule
from twin.model.stacked import StackedMembers
from twin.model.twin_model import Encoded
from twin.spec import inverse_transform

__all__ = ["CHUNK_STATE_ELEMENTS", "PreparedRun", "SimulatableTwin", "default_query_days", "prepare", "run_prepared",
           "simulate"]

_KEY_DAYS = (30.0, 90.0, 180.0, 365.0)
_QUANTILES = (0.05, 0.95)  # the bands of a summarised run: ScenarioResult.quantiles

#: One solve covers at most this many values of ODE states and decoded labs at the query days
#: (float32): larger runs are solved in chunks of twins and samples,
#: which bounds their memory (~64 MB per chunk) and gives ``on_progress`` a checkpoint between
#: chunks. Rows are independent, so the numbers do not depend on the chunking.
CHUNK_STATE_ELEMENTS = 2**24

#: ``on_progress(fraction, message)``: called before each chunk; may raise to stop the run there.
ProgressFn = Callable[[float, str], None]


class SimulatableTwin(Protocol):
    """What the engine needs of a twin (:class:`twin.twin.Twin`): its id, fitted ensemble,
    records as of the origin and the origin itself."""

    patient_id: str
    model: Any  # twin.model.checkpoint.TwinEnsemble
    records: Any  # twin.features.PatientRecords as of the origin
    as_of: datetime


def default_query_days(horizon_days: float, step_days: float, extra: Sequence[float] = ()) -> np.ndarray:
    """Query times: every ``step_days`` from 0, the horizon, 30/90/180/365 and ``extra`` (within horizon)."""
    grid = set(np.arange(0.0, horizon_days + 1e-9, step_days).round(6).tolist())
    grid |= {float(d) for d in (*_KEY_DAYS, *extra) if 0 <= d <= horizon_days}
    grid.add(float(horizon_days))
    return np.array(sorted(grid), dtype=np.float64)


@dataclass
class PreparedRun:
    """Inputs of one batched solve, built once (so benches can time the solve alone)."""

    twins: list[Any]
    encoded: list[Encoded]  # per ensemble member, one row per twin: its as-of graph encoded
    plans: list[ResolvedPlan]
    doses: torch.Tensor  # [N, P, T_days, D]
    t_query: torch.Tensor  # [Q]
    flags: list[Flag]
    horizon_days: float


def _parts(twin: Any) -> tuple[Any, Any, Any, datetime]:
    """``(ensemble, feature spec, records, origin)`` of a twin."""
    try:
        model, records, t0 = twin.model, twin.records, twin.as_of
    except AttributeError as exc:
        raise TwinError(f"{type(twin).__name__} is not a twin the scenario engine can run: missing {exc.name!r}") from None
    spec = getattr(model, "spec", None)
    if spec is None:
        raise TwinError(f"the model of twin {twin.patient_id!r} carries no feature spec (vocabulary, normalisers)")
    return model, spec, records, t0


def _encode(twins: Sequence[Any]) -> list[Encoded]:
    """Every member's encoding of each twin's as-of graph, built exactly as its own forecast
    builds it (through the ensemble's encoding cache when the twins' records are read as of
    their origins, the usual case; otherwise built here and encoded in one batch)."""
    model = twins[0].model
    parts = [_parts(tw) for tw in twins]
    if hasattr(model, "encode_many") and all(getattr(rec, "as_of", None) == t0 for _, _, rec, t0 in parts):
        return list(model.encode_many([rec for _, _, rec, _ in parts]))
    stacked = model.stacked() if hasattr(model, "stacked") else StackedMembers([model])
    graphs = [build_graph(rec, t0, spec, getattr(m, "image_encoder", None)) for m, spec, rec, t0 in parts]
    return stacked.encode(Batch.from_data_list(graphs).to(stacked.field.pk_rate.device))


def _as_plans(plans: Sequence[TreatmentPlan] | TreatmentPlan) -> list[TreatmentPlan]:
    items = [plans] if isinstance(plans, TreatmentPlan) else list(plans)
    if not items:
        raise PlanError("no plan to simulate")
    names = [p.name for p in items]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise PlanError(f"plan names must be unique in one run, repeated: {dup}")
    return items


def prepare(
    twins: Sequence[Any] | Any,
    plans: Sequence[TreatmentPlan] | TreatmentPlan,
    horizon_days: float,
    *,
    strict: bool = False,
    query_days: Sequence[float] | None = None,
    extra_days: Sequence[float] = (),
    step_days: float | None = None,
) -> PreparedRun:
    """Resolve ``plans`` against the model's treatments, check them and build the dose tensor
    for every (twin, plan) pair."""
    twin_list = list(twins) if isinstance(twins, Sequence) else [twins]
    if not twin_list:
        raise TwinError("no twin to simulate")
    if not (math.isfinite(horizon_days) and 1 <= horizon_days <= 3650):
        raise PlanError(f"horizon must be between 1 and 3650 days, got {horizon_days}")
    model, spec, *_ = _parts(twin_list[0])
    for tw in twin_list[1:]:
        m, s, *_ = _parts(tw)
        if m is not model or s.vocab.treatments != spec.vocab.treatments:
            raise TwinError("all twins of one scenario run must share one fitted model")
    cat = TreatmentCatalog(spec.vocab.cohort.treatments)
    plan_list = _as_plans(plans)
    n_days = int(math.ceil(horizon_days)) + 1
    resolved_by_twin: list[list[ResolvedPlan]] = []
    rows: list[torch.Tensor] = []
    same = {i: p.resolve(cat) for i, p in enumerate(plan_list) if not p.uses_dates}  # for every origin
    for tw in twin_list:
        _, _, records, t0 = _parts(tw)
        rp = [same[i] if i in same else p.resolve(cat, t0) for i, p in enumerate(plan_list)]
        resolved_by_twin.append(rp)
        factual: list[DoseAction] = actions_from_records(records, t0, spec.vocab)
        rows.append(torch.stack([dose_schedule(plan_dose_actions(factual, r, n_days), spec.vocab, spec.norms, n_days,
                                               strict=False) for r in rp]))
    resolved = resolved_by_twin[0]
    # Plans with calendar dates resolve per twin; flags are checked on every resolution (deduplicated).
    flags: list[Flag] = []
    seen: set[tuple[str, str, str]] = set()
    for rp in {tuple(map(id, rp)): rp for rp in resolved_by_twin}.values():
        for f in check_plans(rp, spec.vocab, spec.norms, strict=strict):
            if (f.plan, f.kind, f.treatment) not in seen:
                seen.add((f.plan, f.kind, f.treatment))
                flags.append(f)
    step = float(step_days if step_days is not None else spec.vocab.cohort.scales.step_days)
    if query_days:
        tq = np.array(sorted(set(query_days)), dtype=np.float64)
    else:
        tq = default_query_days(horizon_days, step, extra_days)
    if tq[0] < 0 or tq[-1] > horizon_days + 1e-9:
        raise PlanError(f"query days must lie within 0–{horizon_days:g}")
    return PreparedRun(twin_list, _encode(twin_list), resolved, torch.stack(rows), torch.from_numpy(tq).float(), flags,
                       float(horizon_days))


def _draw(seed: int, twin: int, n_samples: int, latent: int, noise_shape: tuple[int, ...] | None
          ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Twin ``twin``'s latent draws ``[S, latent]`` and lab-noise draws ``[S, *noise_shape]``,
    from a generator of its own, so the numbers do not depend on how twins are chunked."""
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + twin)
    eps = torch.randn(n_samples, latent, generator=gen)
    eta = torch.randn(n_samples, *noise_shape, generator=gen) if noise_shape is not None else None
    return eps, eta


def run_prepared(
    run: PreparedRun,
    *,
    n_samples: int = 32,
    seed: int = 0,
    observation_noise: bool = True,
    sample_latent: bool = True,
    reference: str | None = None,
    thresholds: Sequence[Threshold] = (),
    plan_rows: slice | None = None,
    sample_days: Sequence[float] | None = None,
    on_progress: ProgressFn | None = None,
    workers: int = 1,
) -> ScenarioResult:
    """Solve a prepared run in chunks of twins (and of samples when one twin is large, see
    :data:`CHUNK_STATE_ELEMENTS`), every ensemble member in the same solve, and collect samples.

    ``sample_days``: keep samples only on these days (each must be a query day) and reduce the
    rest, chunk by chunk, to quantile bands (:attr:`ScenarioResult.bands`) and threshold
    crossing days: memory then grows with twins x plans x query days, not with samples.
    ``None`` keeps every sample on every query day. ``plan_rows`` restricts the solve to a
    slice of the plans (the loop-over-plans comparison in ``bench/whatif.py``).
    ``on_progress(fraction, message)`` is called before every chunk and may raise to stop.
    ``workers`` > 1 solves that many chunks at once in threads (each chunk ``1/workers`` of
    the size, so memory stays bounded alike); the numbers do not change. Meant for
    ``workers x torch threads`` up to the cores: the caller sets torch's threads.
    """
    if workers < 1:
        raise PlanError(f"workers must be >= 1, got {workers}")
    if n_samples < 1:
        raise PlanError(f"n_samples must be >= 1, got {n_samples}")
    model, spec, *_ = _parts(run.twins[0])
    stacked = model.stacked() if hasattr(model, "stacked") else StackedMembers([model])
    n_m = len(stacked.members)
    vocab, norms = spec.vocab, spec.norms
    doses = run.doses if plan_rows is None else run.doses[:, plan_rows]
    plans = run.plans if plan_rows is None else run.plans[plan_rows]
    names = [pl.name for pl in plans]
    ref = reference or names[0]
    if ref not in names:
        raise PlanError(f"reference plan {ref!r} is not among the plans ({', '.join(names)})")
    n, p, t_days, d = doses.shape
    s = n_samples
    times = run.t_query.numpy().astype(np.float64)
    q = len(times)
    keep = None if sample_days is None else _day_indices(times, sample_days)
    labs, events = list(vocab.target_labs), list(vocab.event_kinds)
    n_l, n_e = len(labs), len(events)
    lab_mean = torch.tensor([norms.lab_mean.get(c, 0.0) for c in labs])
    lab_std = torch.tensor([norms.lab_std.get(c, 1.0) for c in labs])
    transforms = {j: norms.transforms[c] for j, c in enumerate(labs) if norms.transforms.get(c, "identity") != "identity"}
    latent = int(stacked.cfg.latent)
    device = stacked.field.pk_rate.device
    tq = run.t_query.to(device)
    # Sample s comes from ensemble member s mod M: column j of member k is sample k + j*M. A solve
    # covers every member and plan of a chunk of twins and columns (rows ordered twin, plan,
    # column: each schedule's samples are consecutive, as StackedMembers.rollout expects).
    # per trajectory: its ODE state (latent, hazards) and decoded labs (mean, log-variance) at
    # each query day, and its share of its schedule's treatment states
    width = latent + n_e + 2 * n_l + (2 * d + n_l * d) / max(1, s)
    columns = math.ceil(s / n_m)
    per_column = max(1, math.ceil(n_m * p * max(q, 1) * width))  # values of one twin's column
    budget = CHUNK_STATE_ELEMENTS // workers
    twins_per_chunk = max(1, budget // (per_column * columns))
    if workers > 1:  # enough chunks to keep every worker busy
        twins_per_chunk = max(1, min(twins_per_chunk, math.ceil(n / (2 * workers))))
    cols_per_chunk = max(1, budget // (per_column * min(n, twins_per_chunk)))
    n_kept = q if keep is None else len(keep)
    lab_out = np.empty((s, n, p, n_kept, n_l), np.float32)
    risk_out = np.empty((s, n, p, n_kept, n_e), np.float32) if n_e else None
    bands = None if keep is None else {k: np.empty((n, p, q, w), np.float32) for k, w in
                                       (("median", n_l), ("lo", n_l), ("hi", n_l),
                                        ("risk_median", n_e), ("risk_lo", n_e), ("risk_hi", n_e))}
    crossings = None if keep is None else np.empty((len(thresholds), s, n, p), np.float64)
    lo_q, hi_q = _QUANTILES
    cal = getattr(model, "interval_calibration", None)
    calibration = torch.from_numpy(cal.scale(labs, times)).float() if cal is not None else None  # [Q, L]
    lock = threading.Lock()
    done = 0
    stopped: list[BaseException] = []  # the error that stopped the run: every later checkpoint stops too

    def report(message: str) -> None:  # a checkpoint: may raise to stop the run
        nonlocal done
        with lock:  # in order, also from several workers
            if stopped:
                raise _Halted
            if on_progress is not None:
                try:
                    on_progress(done / total, message)
                except BaseException as exc:
                    stopped.append(exc)
                    raise
            done += 1

    total = math.ceil(n / twins_per_chunk) * math.ceil(columns / cols_per_chunk)

    def solve_twins(i0: int) -> None:
        """Twins ``i0 : i0 + twins_per_chunk``: solve, summarise, write their slices of the outputs."""
        i1 = min(n, i0 + twins_per_chunk)
        n_c = i1 - i0
        draws = [_draw(seed, i, s, latent, (q, n_l) if observation_noise else None) for i in range(i0, i1)]
        eps = torch.stack([e for e, _ in draws])  # [n_c, S, latent], shared by all plans of a twin
        if not sample_latent:
            eps.zero_()
        enc = [e.rows(i0, i1) for e in run.encoded]
        sched = doses[i0:i1].reshape(n_c * p, t_days, d).to(device)  # one copy per schedule
        mean = torch.empty(n_c, s, p, q, n_l)
        logvar = torch.empty_like(mean)
        cum_haz = torch.empty(n_c, s, p, q, n_e)
        for j0 in range(0, columns, cols_per_chunk):
            cols = range(j0, min(columns, j0 + cols_per_chunk))
            report(f"solving twins {i0 + 1}-{i1} of {n}, samples {j0 * n_m + 1}-"
                                 f"{min(s, cols[-1] * n_m + n_m)} of {s}")
            idx = torch.tensor([[k + j * n_m for j in cols] for k in range(n_m)], dtype=torch.long)  # [M, C]
            m_c = len(cols)
            # a column past the last sample is solved and dropped
            e_rows = eps[:, idx.clamp(max=s - 1)].permute(1, 0, 2, 3).unsqueeze(2)  # [M, n_c, 1, C, latent]
            e_rows = e_rows.expand(n_m, n_c, p, m_c, latent).reshape(n_m, -1, latent)
            ro = stacked.rollout(enc, e_rows.to(device), sched, tq, rows_per_schedule=m_c)
            for k in range(n_m):
                own = idx[k][idx[k] < s]
                if own.numel():
                    for out, val in ((mean, ro.mean), (logvar, ro.logvar), (cum_haz, ro.cum_hazard)):
                        out[:, own] = val[k].view(n_c, p, m_c, q, -1).transpose(1, 2)[:, : own.numel()].cpu()
        if observation_noise:
            eta = torch.stack([e for _, e in draws if e is not None])  # [n_c, S, Q, L]
            mean.add_(logvar.mul_(0.5).exp_().mul_(eta.unsqueeze(2)))
            if calibration is not None:  # observed values' spread, scaled as forecast bands are (twin.calibration)
                centre = torch.from_numpy(sample_quantiles(mean.numpy(), [0.5], axis=1)[0]).unsqueeze(1)
                mean.sub_(centre).mul_(calibration).add_(centre)
        del logvar
        values = mean.mul_(lab_std).add_(lab_mean).transpose(0, 1).numpy()  # [S, n_c, P, Q, L], transformed
        for j, kind in transforms.items():  # back in each target's own unit (transforms are monotone)
            values[..., j] = inverse_transform(kind, values[..., j])
        risk = cum_haz.clamp_(min=0.0).neg_().exp_().neg_().add_(1.0).transpose(0, 1).numpy() if n_e else None
        if keep is None:
            lab_out[:, i0:i1] = values
            if risk_out is not None and risk is not None:
                risk_out[:, i0:i1] = risk
            return
        assert bands is not None and crossings is not None
        lab_out[:, i0:i1] = values[..., keep, :]
        for key, x in (("", values), ("risk_", risk)):
            if x is not None:
                med, lo, hi = sample_quantiles(x, [0.5, lo_q, hi_q])
                bands[key + "median"][i0:i1], bands[key + "lo"][i0:i1], bands[key + "hi"][i0:i1] = med, lo, hi
        if risk_out is not None and risk is not None:
            risk_out[:, i0:i1] = risk[..., keep, :]
        for t_i, th in enumerate(thresholds):
            crossings[t_i, :, i0:i1] = first_crossing(values[..., find_lab(labs, vocab.target_names, th.lab)], times, th)

    starts = range(0, n, twins_per_chunk)
    if workers <= 1 or len(starts) == 1:
        for i0 in starts:
            solve_twins(i0)
    else:  # chunks in parallel threads (torch releases the GIL); the first error stops the rest
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(solve_twins, i0) for i0 in starts]
            try:
                for f in futures:
                    f.result()
            except BaseException:
                for f in futures:
                    f.cancel()
                if stopped:  # the progress callback's own error, not a worker halted after it
                    raise stopped[0] from None
                raise
    if on_progress is not None:
        on_progress(1.0, "summarising samples")
    return ScenarioResult(
        patients=[str(tw.patient_id) for tw in run.twins], plans=names, reference=ref,
        times=times, labs=labs, lab_samples=lab_out, events=events, risk_samples=risk_out,
        lab_names=dict(vocab.target_names), lab_units=dict(vocab.target_units), thresholds=list(thresholds),
        flags=[f for f in run.flags if f.plan in names], seed=int(seed), horizon_days=run.horizon_days,
        sample_times=None if keep is None else times[keep], bands=bands, crossings=crossings, quantiles=_QUANTILES,
        members=n_m)


class _Halted(Exception):
    """A worker's checkpoint after another worker's checkpoint stopped the run."""


def _day_indices(times: np.ndarray, days: Sequence[float]) -> np.ndarray:
    """Indices of ``days`` among the query ``times`` (each must be one)."""
    out = []
    for day in sorted(set(float(x) for x in days)):
        hit = np.flatnonzero(np.abs(times - day) < 1e-6)
        if not hit.size:
            raise PlanError(f"sample day {day:g} is not a query day of this run")
        out.append(int(hit[0]))
    return np.array(out, dtype=np.int64)


def simulate(
    twins: Sequence[Any] | Any,
    plans: Sequence[TreatmentPlan] | TreatmentPlan,
    horizon_days: float,
    *,
    n_samples: int = 32,
    seed: int = 0,
    strict: bool = False,
    reference: str | None = None,
    thresholds: Sequence[Threshold] = (),
    observation_noise: bool = True,
    sample_latent: bool = True,
    query_days: Sequence[float] | None = None,
    extra_days: Sequence[float] = (),
    sample_days: Sequence[float] | None = None,
    on_progress: ProgressFn | None = None,
    workers: int = 1,
) -> ScenarioResult:
    """Simulate every twin under every plan for ``horizon_days`` in one batched model solve.

    Args:
        twins: one twin or a list sharing one fitted model (see :class:`SimulatableTwin`).
        plans: the plans; names must be unique. ``reference`` (default: the first) is the plan
            differences are taken against.
        horizon_days: days after each twin's origin to simulate (1–3650).
        n_samples: draws of the twin's uncertainty per twin (shared across plans).
        seed: seeds every random draw; equal inputs and seed give equal results.
        strict: refuse (``PlanError``) plans the model cannot be trusted with (a dose far
            outside training) instead of flagging them in the result.
        thresholds: lab thresholds whose first crossing time is reported (e.g. eGFR < 45).
        observation_noise: add the model's predicted lab noise (aleatoric) to the samples.
        sample_latent: draw ``z0`` from the twin's posterior (False: its mean, epistemic off).
        query_days: times to report (default: every solver step, key days 30/90/180/365, the
            horizon, and ``extra_days``).
        sample_days: keep samples only on these days (and the horizon) and summarise every
            query day as quantile bands, chunk by chunk: a cohort run's memory then grows with
            twins x plans, not with samples. ``None`` (default) keeps every sample.
        on_progress: ``(fraction, message)`` before every chunk of the solve; it may raise
            (e.g. a cancellation) to stop the run there.
        workers: chunks solved at once in threads (see :func:`run_prepared`).

    Returns:
        A :class:`ScenarioResult` with samples ``[S, N, P, T, L]`` and summaries.

    Raises:
        PlanError: invalid plans, treatments the model does not know (the message lists those it
            knows), doses in units that do not convert to the treatment's, or (``strict``)
            out-of-distribution plans.
        TwinError: twins that do not share one model.
    """
    kept = None if sample_days is None else (*sample_days, horizon_days)
    if kept is not None and query_days:
        query_days = (*query_days, *kept)
    run = prepare(twins, plans, horizon_days, strict=strict, query_days=query_days,
                  extra_days=(*extra_days, *(kept or ())))
    return run_prepared(run, n_samples=n_samples, seed=seed, observation_noise=observation_noise,
                        sample_latent=sample_latent, reference=reference, thresholds=thresholds,
                        sample_days=kept, on_progress=on_progress, workers=workers)
