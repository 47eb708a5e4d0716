"""A virtual trial: every patient matching a cohort predicate simulated under each plan, merged
into per-arm outcome distributions and per-patient effect distributions.

    spec = TrialSpec(store_url, model_path, predicate, [plan_a, plan_b], days=(90, 180))
    result = run_trial(spec)                    # in this process
    result = run_trial(spec, ray="local")       # shards on a local Ray cluster
    result = run_trial(spec, ray="ray://head:10001")

The cohort's patient ids are split into shards of ``shard_size`` (sorted ids, fixed boundaries).
A shard is the unit of work: :func:`run_shard` opens the store from its URL and the model from
its path *itself* (a worker on another machine receives the URL, never a store object), builds
every twin as of its origin and runs one batched :func:`scenarios.simulate` with a seed derived
from the trial's seed and the shard's index. The shards run in this process one after the
other, or as Ray tasks; either way each shard computes the same numbers, so the merged result
does not depend on where the shards ran (only on ``seed`` and ``shard_size``).

Samples are paired across plans within a patient (common random numbers, as in
:func:`scenarios.simulate`), so a patient's effect ``B - A`` is taken sample by sample.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from core.errors import ConfigError, PlanError, TwinError
from graph import cohort, open_store, predicate_from_dict
from scenarios.guardrails import check_plan
from scenarios.plan import TreatmentPlan
from scenarios.simulate import simulate
from scenarios.treatments import TreatmentCatalog

__all__ = ["DEFAULT_SHARD_SIZE", "ShardOutcome", "TrialResult", "TrialSpec", "run_shard", "run_trial",
           "select_cohort", "shards_of"]

#: Patients per shard: one batched solve each (large enough to amortise the solve's fixed cost).
DEFAULT_SHARD_SIZE = 250
#: A patient "benefits" from a plan when P(plan better than the reference) reaches this.
BENEFIT_PROBABILITY = 0.9

Better = Literal["lower", "higher"]
ProgressFn = Callable[[float, str], None]


@dataclass(frozen=True)
class TrialSpec:
    """What a trial runs: cohort, plans (the first is the reference arm), days and sampling.

    ``predicate`` is the JSON form of a cohort predicate (:func:`graph.predicate_from_dict`);
    ``as_of`` the origin of every twin (default: each patient's latest record); ``better`` says
    per lab (code or name) which direction is an improvement (default ``lower`` for every lab).
    """

    store_url: str
    model_path: str
    predicate: dict[str, Any]
    plans: tuple[dict[str, Any], ...]
    days: tuple[float, ...] = (90.0, 180.0, 365.0)
    samples: int = 64
    seed: int = 0
    as_of: str | None = None
    shard_size: int = DEFAULT_SHARD_SIZE
    better: dict[str, Better] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.plans) < 2:
            raise PlanError(f"a trial compares at least 2 plans, got {len(self.plans)}")
        names = [str(p.get("name")) for p in self.plans]
        if len(set(names)) != len(names):
            raise PlanError(f"plan names must be unique in one trial, got {names}")
        if not self.days or any(not (math.isfinite(d) and 1 <= d <= 3650) for d in self.days):
            raise PlanError(f"trial days must lie within 1–3650, got {list(self.days)}")
        if self.samples < 2 or self.shard_size < 1:
            raise ConfigError(f"a trial needs samples >= 2 and shard_size >= 1, got {self.samples} and "
                              f"{self.shard_size}")
        for lab, way in self.better.items():
            if way not in ("lower", "higher"):
                raise ConfigError(f"better[{lab!r}] must be 'lower' or 'higher', got {way!r}")
        predicate_from_dict(self.predicate)  # refuses a malformed or oversized predicate now
        for p in self.plans:
            TreatmentPlan.from_dict(p)

    @property
    def horizon_days(self) -> float:
        return float(max(self.days))

    def plan_objects(self) -> list[TreatmentPlan]:
        return [TreatmentPlan.from_dict(p) for p in self.plans]

    def origin(self) -> datetime | None:
        return None if self.as_of is None else datetime.fromisoformat(self.as_of)

    def to_dict(self) -> dict[str, Any]:
        """The spec without the store URL and model path (no credentials, no server paths)."""
        d = asdict(self)
        d.pop("store_url")
        d.pop("model_path")
        return d


def select_cohort(spec: TrialSpec) -> list[str]:
    """Sorted ids of the patients matching the spec's predicate (as of its ``as_of``)."""
    with open_store(spec.store_url) as store:
        return cohort(store, predicate_from_dict(spec.predicate), as_of=spec.origin())


def shards_of(ids: Sequence[str], shard_size: int) -> list[list[str]]:
    """``ids`` in consecutive shards of ``shard_size`` (the last may be shorter)."""
    return [list(ids[i:i + shard_size]) for i in range(0, len(ids), shard_size)]


@dataclass
class ShardOutcome:
    """One shard's samples at the trial days, ``values[n, S, P, D, L]``, and its guardrail flags."""

    index: int
    patients: list[str]
    values: np.ndarray
    labs: list[str]
    lab_names: dict[str, str]
    lab_units: dict[str, str]
    flagged: dict[str, list[str]]  # plan -> patients for whom the plan is out of the model's support
    excluded: dict[str, str]  # patient -> why no twin could be built
    seconds: float
    load_seconds: float = 0.0  # of which reading records and building twins (the rest: graphs + solve)


@lru_cache(maxsize=4)
def _model(path: str, mtime_ns: int) -> Any:
    from twin.model.checkpoint import load_model

    return load_model(path)


def _shard_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def run_shard(spec: TrialSpec, index: int, ids: list[str]) -> ShardOutcome:
    """Simulate shard ``index`` (patients ``ids``): opens the store and the model from the spec.

    Patients whose twin cannot be built (no time-stamped records before the origin) are
    excluded with the reason; the others are simulated in one batched solve."""
    import time

    from twin.twin import Twin

    t = time.perf_counter()
    ens = _model(spec.model_path, os.stat(spec.model_path).st_mtime_ns)
    plans = spec.plan_objects()
    catalog = TreatmentCatalog(ens.spec.vocab.cohort.treatments)
    twins, excluded = [], {}
    flagged: dict[str, list[str]] = {p.name: [] for p in plans}
    with open_store(spec.store_url) as store:
        for pid in ids:
            try:
                tw = Twin.load(store, pid, ens, as_of=spec.origin())
            except TwinError as exc:
                excluded[pid] = str(exc)
                continue
            if not tw.records.nodes:
                excluded[pid] = "no records before the origin"
                continue
            twins.append(tw)
            for p in plans:
                if check_plan(p.resolve(catalog, tw.as_of), ens.spec.vocab, ens.spec.norms):
                    flagged[p.name].append(pid)
    loaded = time.perf_counter() - t
    labs = list(ens.spec.vocab.target_labs)
    if not twins:
        return ShardOutcome(index, [], np.zeros((0, spec.samples, len(plans), len(spec.days), len(labs)), np.float32),
                            labs, dict(ens.spec.vocab.target_names), dict(ens.spec.vocab.target_units), flagged,
                            excluded, time.perf_counter() - t, loaded)
    days = sorted(set(float(d) for d in spec.days))
    res = simulate(twins, plans, spec.horizon_days, n_samples=spec.samples, seed=_shard_seed(spec.seed, index),
                   query_days=days)
    idx = [res.time_index(d) for d in spec.days]
    values = np.ascontiguousarray(res.lab_samples[:, :, :, idx, :].transpose(1, 0, 2, 3, 4))
    return ShardOutcome(index, list(res.patients), values, list(res.labs), dict(res.lab_names), dict(res.lab_units),
                        flagged, excluded, time.perf_counter() - t, loaded)


@dataclass
class TrialResult:
    """The merged trial: ``values[n, S, P, D, L]`` (patients × samples × plans × days × labs)."""

    spec: TrialSpec
    cohort_size: int
    patients: list[str]
    plans: list[str]
    labs: list[str]
    lab_names: dict[str, str]
    lab_units: dict[str, str]
    values: np.ndarray
    flagged: dict[str, list[str]]
    excluded: dict[str, str]
    shards: int
    executor: str
    seconds: float = 0.0
    shard_seconds: list[float] = field(default_factory=list)
    load_seconds: list[float] = field(default_factory=list)

    @property
    def reference(self) -> str:
        return self.plans[0]

    def lab_index(self, lab: str) -> int:
        key = lab.strip().lower()
        for i, c in enumerate(self.labs):
            if key in (c.lower(), self.lab_names.get(c, "").lower()):
                return i
        raise PlanError(f"lab {lab!r} is not forecast by this model (labs: {', '.join(self.labs)})")

    def direction(self, lab_i: int) -> Better:
        for name, way in self.spec.better.items():
            if self.lab_index(name) == lab_i:
                return way
        return "lower"

    def effect_samples(self, plan: str) -> np.ndarray:
        """Paired samples of ``plan`` minus the reference arm, ``[n, S, D, L]``."""
        p = self.plans.index(plan)
        return self.values[:, :, p] - self.values[:, :, 0]

    def p_better(self, plan: str) -> np.ndarray:
        """Per patient, day and lab: the probability that ``plan`` beats the reference, ``[n, D, L]``."""
        eff = self.effect_samples(plan)
        sign = np.array([-1.0 if self.direction(i) == "lower" else 1.0 for i in range(len(self.labs))])
        return (eff * sign > 0).mean(axis=1)

    def average_effect(self, plan: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cohort-average effect of ``plan`` vs the reference ``[D, L]``: the mean, and the 5 % and
        95 % quantiles over samples of the cohort average (the model's uncertainty about it)."""
        per_sample = self.effect_samples(plan).mean(axis=0)  # [S, D, L]
        return per_sample.mean(axis=0), np.quantile(per_sample, 0.05, axis=0), np.quantile(per_sample, 0.95, axis=0)

    def summary(self) -> dict[str, Any]:
        """Cohort size, per-arm median and 5–95 % interval of each lab at each day (pooled over
        patients and samples), each plan's average effect vs the reference with its interval,
        the share of patients for whom it beats the reference with probability >= 0.9, and
        guardrail counts."""
        arms = {}
        for p, name in enumerate(self.plans):
            arms[name] = {self.labs[li]: {f"{d:g}": _interval(self.values[:, :, p, di, li])
                                          for di, d in enumerate(self.spec.days)} for li in range(len(self.labs))}
        effects = {}
        for name in self.plans[1:]:
            mean, lo, hi = self.average_effect(name)
            share = (self.p_better(name) >= BENEFIT_PROBABILITY).mean(axis=0) if self.patients else None
            effects[name] = {self.labs[li]: {f"{d:g}": {
                "mean": float(mean[di, li]), "low": float(lo[di, li]), "high": float(hi[di, li]),
                "share_benefit": None if share is None else float(share[di, li]),
                "better": self.direction(li)} for di, d in enumerate(self.spec.days)} for li in range(len(self.labs))}
        return {
            "cohort_size": self.cohort_size, "simulated": len(self.patients), "excluded": len(self.excluded),
            "plans": self.plans, "reference": self.reference, "days": list(self.spec.days),
            "labs": {c: {"name": self.lab_names.get(c, c), "unit": self.lab_units.get(c, "")} for c in self.labs},
            "samples": self.spec.samples, "seed": self.spec.seed, "benefit_probability": BENEFIT_PROBABILITY,
            "arms": arms, "effects": effects,
            "guardrails": {p: len(v) for p, v in self.flagged.items()},
            "shards": self.shards, "executor": self.executor, "seconds": self.seconds,
        }

    def per_patient(self) -> list[dict[str, Any]]:
        """Each patient's effect distribution of every plan vs the reference at each day:
        mean, 5–95 % interval and P(better)."""
        out = []
        stats = {name: (self.effect_samples(name), self.p_better(name)) for name in self.plans[1:]}
        for i, pid in enumerate(self.patients):
            row: dict[str, Any] = {"patient_id": pid, "effects": {}}
            for name, (eff, pb) in stats.items():
                row["effects"][name] = {self.labs[li]: {f"{d:g}": {
                    "mean": float(eff[i, :, di, li].mean()), "low": float(np.quantile(eff[i, :, di, li], 0.05)),
                    "high": float(np.quantile(eff[i, :, di, li], 0.95)), "p_better": float(pb[i, di, li])}
                    for di, d in enumerate(self.spec.days)} for li in range(len(self.labs))}
            out.append(row)
        return out

    def plot(self, path: str | Path) -> Path:
        """PNG: per lab at the last trial day, each arm's outcome distribution (top) and the
        distribution of per-patient mean effects vs the reference (bottom)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n_labs = len(self.labs)
        fig, axes = plt.subplots(2, n_labs, figsize=(4.2 * n_labs, 6.4), squeeze=False)
        day_i, day = len(self.spec.days) - 1, self.spec.days[-1]
        for li, code in enumerate(self.labs):
            label = f"{self.lab_names.get(code, code)} ({self.lab_units.get(code, '')})"
            ax = axes[0, li]
            data = [self.values[:, :, p, day_i, li].ravel() for p in range(len(self.plans))]
            if self.patients:
                ax.violinplot(data, showmedians=True)
            ax.set_xticks(range(1, len(self.plans) + 1), [p[:18] for p in self.plans], rotation=20, fontsize=7)
            ax.set_title(f"{label} at day {day:g}", fontsize=9)
            ax = axes[1, li]
            for name in self.plans[1:]:
                if self.patients:
                    ax.hist(self.effect_samples(name)[:, :, day_i, li].mean(axis=1), bins=30, alpha=0.5,
                            label=name[:24])
            ax.axvline(0.0, color="k", lw=0.8)
            ax.set_xlabel(f"per-patient effect vs {self.reference[:24]}", fontsize=8)
            ax.legend(fontsize=6)
        fig.suptitle(f"virtual trial: {len(self.patients)} patients, {len(self.plans)} arms", fontsize=10)
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, dpi=100)
        plt.close(fig)
        return out


def _interval(x: np.ndarray) -> dict[str, float | None]:
    x = x[np.isfinite(x)]
    if not x.size:
        return {"median": None, "low": None, "high": None}
    lo, med, hi = np.quantile(x, [0.05, 0.5, 0.95])
    return {"median": float(med), "low": float(lo), "high": float(hi)}


def run_trial(spec: TrialSpec, *, ray: str | None = None, workers: int = 2, ids: Sequence[str] | None = None,
              on_progress: ProgressFn | None = None) -> TrialResult:
    """Select the cohort (restricted to ``ids`` when given), run its shards and merge them.

    ``ray``: ``None`` runs the shards in this process; ``"local"`` starts a local Ray cluster
    of ``workers`` CPUs for this call; any other value is a Ray address (``ray://host:10001``,
    ``auto``) of a running cluster (``ray start``) whose nodes can read the store URL and the
    model path. ``on_progress(fraction, message)`` hears of every finished shard and may raise
    to stop the trial (pending Ray tasks are cancelled).
    """
    import time

    report = on_progress or (lambda _f, _m: None)
    t = time.perf_counter()
    report(0.0, "selecting the cohort")
    chosen = select_cohort(spec)
    if ids is not None:
        chosen = sorted(set(chosen) & set(ids))
    if not chosen:
        raise TwinError("no patient matches the trial's cohort predicate")
    shards = shards_of(chosen, spec.shard_size)
    report(0.02, f"{len(chosen)} patients in {len(shards)} shards")
    if ray is None:
        outcomes = []
        for i, shard in enumerate(shards):
            outcomes.append(run_shard(spec, i, shard))
            report(0.02 + 0.96 * (i + 1) / len(shards), f"shard {i + 1}/{len(shards)} done")
        executor = "in-process"
    else:
        outcomes = _run_on_ray(spec, shards, ray, workers, report)
        executor = "ray-local" if ray == "local" else "ray"
    if not any(o.patients for o in outcomes):
        raise TwinError(f"no twin could be built for any of the cohort's {len(chosen)} patients "
                        "(no time-stamped records before the origin)")
    result = _merge(spec, len(chosen), outcomes, executor)
    result.seconds = time.perf_counter() - t
    report(1.0, "merged")
    return result


def _merge(spec: TrialSpec, cohort_size: int, outcomes: list[ShardOutcome], executor: str) -> TrialResult:
    outcomes = sorted(outcomes, key=lambda o: o.index)
    first = outcomes[0]
    flagged: dict[str, list[str]] = {str(p["name"]): [] for p in spec.plans}
    excluded: dict[str, str] = {}
    for o in outcomes:
        for k, v in o.flagged.items():
            flagged[k].extend(v)
        excluded.update(o.excluded)
    return TrialResult(spec, cohort_size, [p for o in outcomes for p in o.patients], [str(p["name"]) for p in spec.plans],
                       first.labs, first.lab_names, first.lab_units, np.concatenate([o.values for o in outcomes]),
                       flagged, excluded, len(outcomes), executor, shard_seconds=[o.seconds for o in outcomes],
                       load_seconds=[o.load_seconds for o in outcomes])


def _run_on_ray(spec: TrialSpec, shards: list[list[str]], address: str, workers: int,
                report: ProgressFn) -> list[ShardOutcome]:
    try:
        import ray
    except ImportError:
        raise ConfigError("running a trial on Ray needs the optional dependency 'ray' "
                          "(pip install 'patient-twin[scale]')") from None
    started = False
    if not ray.is_initialized():
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never phone home
        env: dict[str, Any] = {"env_vars": {"RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}}
        if address == "local":
            # local workers import this package from the driver's path (a cluster installs it on every node)
            env["env_vars"]["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")) if p)
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False,
                     runtime_env=env)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False, runtime_env=env)
        started = True
    try:
        task = ray.remote(num_cpus=1, max_retries=1)(run_shard)
        refs = {task.remote(spec, i, shard): i for i, shard in enumerate(shards)}
        pending = list(refs)
        outcomes: list[ShardOutcome] = []
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=0.5)
                for ref in done:
                    outcomes.append(ray.get(ref))
                if done:
                    report(0.02 + 0.96 * len(outcomes) / len(shards), f"shard {len(outcomes)}/{len(shards)} done")
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        return outcomes
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, TwinError):
            raise cause from None
        raise TwinError(f"a trial shard failed on a Ray worker ({type(cause).__name__})") from None
    finally:
        if started:
            ray.shutdown()
