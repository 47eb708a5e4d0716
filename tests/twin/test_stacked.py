"""The one-solve ensemble (StackedMembers) against each member's own modules, and the encoding cache."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from graph import copy_store
from graph.schema import GraphBatch, Node, NodeType
from graph.store.sqlite import SQLiteStore
from twin.features import build_graph, dose_schedule
from twin.model.checkpoint import TwinEnsemble
from twin.predict import QUANTILES, mixture_quantile, predict
from twin.twin import Twin


@pytest.fixture(scope="module")
def ens(toy_model: Path) -> TwinEnsemble:
    return TwinEnsemble.load(toy_model)


def _graphs(store: SQLiteStore, ens: TwinEnsemble, ids: list[str]) -> list:
    twins = [Twin.load(store, p, ens) for p in ids]
    return [build_graph(t.records, t.as_of, ens.spec, ens.image_encoder) for t in twins], twins


def test_stacked_encoder_equals_each_members_encoder(toy_store: SQLiteStore, ens: TwinEnsemble) -> None:
    graphs, _ = _graphs(toy_store, ens, ["toy1", "toy2", "toy5", "toy9"])
    batch = Batch.from_data_list(graphs)
    stacked = ens.stacked()
    for got, m in zip(stacked.encode(batch), ens.members, strict=True):
        want = m.encode(batch)
        for f in ("mu", "logvar", "s"):
            torch.testing.assert_close(getattr(got, f), getattr(want, f), rtol=1e-5, atol=1e-5)
    # a lone graph needs no batching and encodes the same
    lone = stacked.encode(graphs[2])
    torch.testing.assert_close(lone[1].mu, stacked.encode(batch)[1].mu[2:3], rtol=1e-5, atol=1e-5)


def test_stacked_rollout_equals_each_members_rollout(toy_store: SQLiteStore, ens: TwinEnsemble) -> None:
    graphs, twins = _graphs(toy_store, ens, ["toy3", "toy4"])
    batch = Batch.from_data_list(graphs)
    v, norms = ens.spec.vocab, ens.spec.norms
    # two plans per patient (the current one and none), three draws per schedule
    scheds = torch.stack([dose_schedule(plan, v, norms, 121, strict=False)
                          for t in twins for plan in (t.current_plan(), [])])
    assert scheds.abs().sum() > 0, "the toy twins are on treatment"
    t_q = torch.tensor([0.0, 3.0, 30.0, 91.5, 120.0])
    gen = torch.Generator().manual_seed(0)
    eps = torch.randn(len(ens.members), 4 * 3, ens.model_config.latent, generator=gen)
    stacked = ens.stacked()
    ro = stacked.rollout(stacked.encode(batch), eps, scheds, t_q, rows_per_schedule=3)
    for k, m in enumerate(ens.members):
        want = m.rollout(batch, scheds.repeat_interleave(3, dim=0), t_q, eps=eps[k])
        torch.testing.assert_close(ro.mean[k], want.mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ro.logvar[k], want.logvar, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ro.cum_hazard[k], want.cum_hazard, rtol=1e-4, atol=1e-7)


def test_stacked_rollout_equals_members_with_lasting_treatments(toy_store: SQLiteStore, toy_model: Path) -> None:
    """The rate, immediate (dose given) and offset terms of lasting treatments, switched on."""
    own = TwinEnsemble.load(toy_model)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in own.members:
            m.lasting.fill_(1.0)
            for p in (m.rate_bias, m.pulse_bias, m.pulse_slope, m.decoder.offset_log_scale):
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            m.decoder.net[2].weight.add_(0.1 * torch.randn(m.decoder.net[2].weight.shape, generator=gen))
    graphs, twins = _graphs(toy_store, own, ["toy3", "toy4"])
    batch = Batch.from_data_list(graphs)
    v, norms = own.spec.vocab, own.spec.norms
    scheds = torch.stack([dose_schedule(plan, v, norms, 61, strict=False)
                          for t in twins for plan in (t.current_plan(), [])])
    t_q = torch.tensor([0.0, 0.5, 1.0, 7.0, 60.0])
    stacked = own.stacked()
    ro = stacked.rollout(stacked.encode(batch), None, scheds, t_q, rows_per_schedule=2)
    for k, m in enumerate(own.members):
        want = m.rollout(batch, scheds.repeat_interleave(2, dim=0), t_q)
        torch.testing.assert_close(ro.mean[k], want.mean, rtol=1e-4, atol=1e-5)
    # treatment changes the forecast through the immediate term from the first day on
    assert not torch.allclose(ro.mean[:, 0::4, 2], ro.mean[:, 2::4, 2])


def test_predict_equals_the_member_by_member_mixture(toy_store: SQLiteStore, ens: TwinEnsemble) -> None:
    """The one-solve forecast against the previous algorithm: each member rolled out on its own,
    each quantile by its own float64 bisection."""
    graphs, twins = _graphs(toy_store, ens, ["toy6"])
    v, norms = ens.spec.vocab, ens.spec.norms
    doses = dose_schedule(twins[0].current_plan(), v, norms, 181, strict=False)[None]
    t_q = torch.arange(0.0, 181.0, 30.0)
    n_s, seed = 8, 5
    got = predict(ens, graphs, doses, t_q, n_samples=n_s, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    batch = Batch.from_data_list(graphs)
    means, sds = [], []
    for m in ens.members:  # (rollout keeps autograd on: training calls it)
        with torch.no_grad():
            ro = m.rollout(batch, doses.repeat_interleave(n_s, dim=0), t_q,
                           eps=torch.randn(n_s, ens.model_config.latent, generator=gen))
        means.append(ro.mean.unsqueeze(0))
        sds.append(torch.exp(0.5 * ro.logvar).unsqueeze(0))
    mu, sd = torch.cat(means, 1).double(), torch.cat(sds, 1).double()  # [1, N, Q, L]
    lab_mu = np.array([norms.lab_mean[c] for c in v.target_labs])
    lab_sd = np.array([norms.lab_std[c] for c in v.target_labs])
    want = {f: mixture_quantile(mu, sd, p).numpy() for p, f in zip(QUANTILES, ("p05", "median", "p95"), strict=True)}
    assert ens.interval_calibration is not None  # the band as the checkpoint's calibration scales it
    want["p05"], want["p95"] = ens.interval_calibration.widen(want["p05"], want["median"], want["p95"], v.target_labs,
                                                              t_q.numpy())
    for field in ("p05", "median", "p95"):  # the toy targets are untransformed
        np.testing.assert_allclose(getattr(got, field), want[field] * lab_sd + lab_mu, rtol=1e-4, atol=1e-4 * lab_sd.max())


def test_stacked_members_follow_weight_changes(ens: TwinEnsemble, toy_model: Path) -> None:
    own = TwinEnsemble.load(toy_model)
    first = own.stacked()
    assert own.stacked() is first  # kept while the weights stay
    with torch.no_grad():
        own.members[1].decoder.log_scale.add_(0.5)
    again = own.stacked()
    assert again is not first
    torch.testing.assert_close(again.change_scale[1, 0], torch.exp(own.members[1].decoder.log_scale))


def test_encodings_are_reused_until_that_patients_records_change(toy_model: Path, tmp_path: Path,
                                                                  toy_store: SQLiteStore) -> None:
    store = SQLiteStore(tmp_path / "copy.db")  # written to below: a copy of the shared toy store
    copy_store(toy_store, store)
    ens = TwinEnsemble.load(toy_model)
    cold = Twin.load(store, "toy8", ens).forecast(horizon_days=60, n_samples=4)
    assert (ens.encodings.hits, ens.encodings.misses) == (0, 1)
    warm = Twin.load(store, "toy8", ens).forecast(horizon_days=60, n_samples=4)
    assert ens.encodings.hits == 1 and warm.to_dict() == cold.to_dict()
    # another patient's new record leaves this patient's entry valid
    other = Twin.load(store, "toy9", ens)
    store.write(GraphBatch(nodes=[Node(id="Observation/toy9-new", type=NodeType.LAB, patient_id="toy9",
                                       time=other.as_of - timedelta(days=1), code="T1", system="urn:test",
                                       value=20.0, unit="1")]))
    Twin.load(store, "toy8", ens).forecast(horizon_days=60, n_samples=4)
    assert ens.encodings.hits == 2
    # a new record of this patient, before its origin: a new key, a different forecast
    t0 = Twin.load(store, "toy8", ens).as_of
    store.write(GraphBatch(nodes=[Node(id="Observation/toy8-new", type=NodeType.LAB, patient_id="toy8",
                                       time=t0 - timedelta(hours=1), code="T1", system="urn:test",
                                       value=40.0, unit="1")]))
    misses = ens.encodings.misses
    after = Twin.load(store, "toy8", ens, as_of=t0).forecast(horizon_days=60, n_samples=4)
    assert ens.encodings.misses == misses + 1
    assert after.labs["T1"].median != cold.labs["T1"].median
    # what the cache returned equals a fresh ensemble's uncached answer
    fresh = TwinEnsemble.load(toy_model)
    assert Twin.load(store, "toy8", fresh, as_of=t0).forecast(horizon_days=60, n_samples=4).to_dict() == after.to_dict()


def test_encode_many_equals_one_by_one_and_builds_a_repeated_patient_once(toy_model: Path,
                                                                           toy_store: SQLiteStore) -> None:
    ens = TwinEnsemble.load(toy_model)
    ids = ["toy2", "toy6", "toy2", "toy7"]
    twins = [Twin.load(toy_store, p, ens) for p in ids]
    many = ens.encode_many([t.records for t in twins])
    assert (ens.encodings.hits, ens.encodings.misses) == (0, 3)  # toy2 built and encoded once
    assert [e.mu.shape[0] for e in many] == [4] * len(ens.members)
    alone = TwinEnsemble.load(toy_model)
    for row, t in enumerate(twins):
        _, enc = alone.encode(Twin.load(toy_store, t.patient_id, alone).records)
        for k in range(len(ens.members)):
            for f in ("mu", "logvar", "s", "anchor", "level", "dose_hist"):
                torch.testing.assert_close(getattr(many[k], f)[row], getattr(enc[k], f)[0], rtol=1e-5, atol=1e-5)
    # a second call is served from the cache
    ens.encode_many([t.records for t in twins[:2]])
    assert ens.encodings.hits == 2
