"""What happened after an origin: target-lab observations and event times (training/eval only).

These read the *full* records on purpose: they are the labels the model is scored against,
never inputs of the encoder.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from graph.schema import NodeType
from graph.timeutil import days_between
from twin.features.records import PatientRecords, death_time
from twin.features.vocab import Normalisers, Vocabulary, event_kind_of

__all__ = ["Targets", "build_targets", "change_origins", "choose_origins"]


@dataclass
class Targets:
    """Observations of target labs in ``(0, horizon]`` days after the origin, and events.

    ``t`` days after origin, ``lab`` target index, ``y`` standardised value (all ``[n_obs]``);
    ``event_time`` ``[n_kinds]`` days to the first event or to censoring, ``event_flag`` 1 if
    the event happened by then.
    """

    t: np.ndarray
    lab: np.ndarray
    y: np.ndarray
    event_time: np.ndarray
    event_flag: np.ndarray


def _end_of_followup(records: PatientRecords) -> datetime | None:
    times = [n.time for n in records.nodes if n.time is not None]
    return max(times) if times else None


def build_targets(records: PatientRecords, t0: datetime, vocab: Vocabulary, norms: Normalisers,
                  horizon_days: float) -> Targets:
    """Labels of origin ``t0`` from ``records`` (which should hold the future, i.e. not be cut)."""
    ts, labs, ys = [], [], []
    for n in records.nodes:
        if n.type is not NodeType.LAB or n.time is None or n.value is None or not math.isfinite(n.value):
            continue
        j = vocab.target(n.code)
        if j is None:
            continue
        dt = days_between(t0, n.time)
        if 0.0 < dt <= horizon_days:
            ts.append(dt)
            labs.append(j)
            ys.append(norms.lab(n.code or "", float(n.value)))
    end = _end_of_followup(records)
    follow = min(float(horizon_days), max(days_between(t0, end), 0.0)) if end else 0.0
    patient = records.patient
    death = death_time(patient) if patient is not None else None
    dt_death = days_between(t0, death) if death is not None else math.inf
    firsts: dict[str, float] = {}
    wanted = set(vocab.event_kinds)
    for n in records.nodes:
        kind = event_kind_of(n)
        if kind in wanted and n.time is not None:
            dt = days_between(t0, n.time)
            if 0.0 < dt < firsts.get(kind, math.inf):
                firsts[kind] = dt
    if 0.0 < dt_death:
        firsts["death"] = dt_death
    censor = min(follow, dt_death)  # death ends follow-up for every other kind
    k = len(vocab.event_kinds)
    ev_t = np.zeros(k, np.float32)
    ev_f = np.zeros(k, np.float32)
    for i, kind in enumerate(vocab.event_kinds):
        limit = min(float(horizon_days), dt_death) if kind == "death" else censor
        first = firsts.get(kind, math.inf)
        if first <= limit:
            ev_t[i], ev_f[i] = first, 1.0
        else:
            ev_t[i] = censor
    return Targets(np.array(ts, np.float32), np.array(labs, np.int64), np.array(ys, np.float32), ev_t, ev_f)


def _origin_candidates(records: PatientRecords, vocab: Vocabulary, min_history: int) -> list[datetime]:
    times = sorted({n.time for n in records.nodes
                    if n.type is NodeType.LAB and n.time is not None and vocab.target(n.code) is not None})
    patient = records.patient
    death = death_time(patient) if patient is not None else None
    return [t for i, t in enumerate(times) if i + 1 >= min_history and i + 1 < len(times)
            and (death is None or t < death)]


def choose_origins(records: PatientRecords, vocab: Vocabulary, k: int, rng: random.Random,
                   min_history: int = 1) -> list[datetime]:
    """Up to ``k`` distinct origins: times of target-lab measurements that have at least
    ``min_history`` target measurements up to them and at least one after them (before death)."""
    cands = _origin_candidates(records, vocab, min_history)
    if len(cands) <= k:
        return cands
    return sorted(rng.sample(cands, k))


def change_origins(records: PatientRecords, vocab: Vocabulary, k: int, rng: random.Random,
                   window_days: float = 180.0, min_history: int = 1) -> list[datetime]:
    """Up to ``k`` origins just before treatment changes: for each start or stop of one of the
    model's treatments (a pulse is a start), the last valid origin (see :func:`choose_origins`) within ``window_days``
    before it.

    Training examples from random origins rarely contain a change of therapy after the
    origin (a few per cent of a cohort's observations), so the effect of starting or stopping
    a drug is learned from little signal. Oversampling such windows is importance sampling of
    informative examples; the inputs still never see past the origin, and the dose schedule
    tells the model about the change exactly as a what-if plan does.
    """
    cands = _origin_candidates(records, vocab, min_history)
    if not cands or k < 1:
        return []
    changes = sorted({t for n in records.nodes
                      if n.type in (NodeType.MEDICATION, NodeType.PROCEDURE) and vocab.treatment(n.code) is not None
                      for t in (n.time, n.end) if t is not None})
    picked = set()
    for tc in changes:
        before = [t for t in cands if 0 < days_between(t, tc) <= window_days]
        if before:
            picked.add(before[-1])
    picked_list = sorted(picked)
    if len(picked_list) <= k:
        return picked_list
    return sorted(rng.sample(picked_list, k))
