"""The dynamics model: shapes, patients x plans batching, PK filter, no leakage, devices."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from datetime import timedelta

import pytest
import torch
from torch_geometric.data import Batch

from graph.schema import GraphBatch, Node, NodeType
from graph.store.sqlite import SQLiteStore
from twin.features import FeatureSpec, build_graph, choose_origins, load_records
from twin.features.vocab import build_vocabulary
from twin.model import LatentDynamics, ModelConfig, TwinModel, solve
from twin.model.checkpoint import TwinEnsemble
from twin.model.twin_model import cumulative_dose
from twin.spec import TimeScales


@pytest.fixture(scope="module")
def setup(toy_store: SQLiteStore):
    recs = [load_records(toy_store, p) for p in toy_store.patient_ids()]
    vocab, norms = build_vocabulary(recs)
    spec = FeatureSpec(vocab, norms)
    torch.manual_seed(0)
    model = TwinEnsemble.build_member(ModelConfig(), spec).eval()
    rng = random.Random(0)
    graphs = []
    for r in recs[:3]:
        t0 = choose_origins(r, vocab, 1, rng)[0]
        graphs.append(build_graph(r.cut(t0), t0, spec))
    return recs, spec, model, graphs


def _randomise_vector_field(model: TwinModel) -> None:
    torch.nn.init.normal_(model.dynamics.f[-1].weight, std=0.3)


def test_model_config_validates() -> None:
    with pytest.raises(ValueError, match="step_days"):
        TimeScales(step_days=0)
    with pytest.raises(ValueError, match="at least twice"):
        TimeScales(step_days=7, time_unit_days=10)
    with pytest.raises(ValueError, match="solver"):
        ModelConfig(solver="dopri5x")


def test_rollout_shapes_and_plans_in_one_solve(setup) -> None:
    _, spec, model, graphs = setup
    _randomise_vector_field(model)
    batch = Batch.from_data_list(graphs)
    p, k, d = len(graphs), 3, spec.vocab.n_treatments
    doses = torch.zeros(p * k, 366, d)
    doses[1::k, :, 0] = 1.0  # plan 1 of each patient: the drug at its usual dose
    doses[2::k, :, 0] = 2.0  # plan 2: double dose
    t = torch.arange(0, 366, 7.0)
    with torch.no_grad():
        ro = model.rollout(batch, doses, t)
    n_l, n_e = spec.vocab.n_targets, len(spec.vocab.event_kinds)
    assert ro.mean.shape == ro.logvar.shape == (p * k, len(t), n_l)
    assert ro.cum_hazard.shape == (p * k, len(t), n_e) and ro.exposure.shape == (p * k, len(t), d)
    assert torch.all(ro.cum_hazard[:, 1:] >= ro.cum_hazard[:, :-1])  # cumulative hazard never decreases
    assert torch.all((ro.survival > 0) & (ro.survival <= 1))
    # plans of one patient start from the same state and diverge only through the doses
    assert torch.allclose(ro.mean[0, 0], ro.mean[1, 0]) and not torch.allclose(ro.mean[0, -1], ro.mean[2, -1])
    # each (patient, plan) row equals a solve of that row alone
    with torch.no_grad():
        alone = model.rollout(Batch.from_data_list([graphs[1]]), doses[k + 2: k + 3], t)
    assert torch.allclose(alone.mean[0], ro.mean[k + 2], atol=1e-5)
    with pytest.raises(ValueError, match="cannot be split"):
        model.rollout(batch, doses[:4], t)


def test_pk_filter_matches_closed_form() -> None:
    """With a zero vector field, exposure solves de/dt = k (u - e): e(t) = u (1 - exp(-k t))."""
    field = LatentDynamics(latent=2, n_drugs=1, static=1, n_events=1, hidden=4, time_unit_days=30.0)
    b, u = 2, torch.tensor([[1.0], [3.0]])
    field.set_inputs(u.view(b, 1, 1).expand(b, 200, 1).contiguous(), torch.zeros(b, 1))
    grid = torch.arange(0, 181, 1.0)
    y0 = torch.zeros(b, 2 + 1 + 1 + 1)  # z, e, Lambda, c
    with torch.no_grad():
        states = solve(field, y0, grid, step_days=1.0, method="rk4")
    k = field.pk_rate.item()
    expected = u.view(1, b) * (1 - torch.exp(-k * grid.view(-1, 1) / 30.0))
    assert torch.allclose(states[:, :, 2], expected, atol=1e-4)
    assert torch.allclose(states[:, :, :2], torch.zeros_like(states[:, :, :2]))  # z stays put
    # the accumulated response c is the integral of e / (e + EC50)
    r = expected / (expected + field.ec50.item())
    integral = torch.cumulative_trapezoid(r, grid / 30.0, dim=0)
    assert torch.allclose(states[1:, :, 4], integral, atol=2e-3)


def test_exposure_at_origin_filters_the_dose_history_exactly() -> None:
    """Yesterday's pulse still acts today: e0 is the per-day PK recursion over the history."""
    field = LatentDynamics(latent=2, n_drugs=2, static=1, n_events=0, hidden=4, time_unit_days=3.0)
    hist = torch.zeros(1, 6, 2)
    hist[0, 4, 0] = 2.0  # a pulse two days before the origin (index 5 is the day before it)
    hist[0, :, 1] = 1.5  # continuous therapy: steady state
    a = torch.exp(-field.pk_rate / 3.0)
    e = hist[0, 0].clone()
    for d in range(6):
        e = a * e + (1 - a) * hist[0, d]
    with torch.no_grad():
        got = field.exposure0(hist)[0]
    assert torch.allclose(got, e, atol=1e-6)
    assert got[1].item() == pytest.approx(1.5, abs=1e-6) and 0 < got[0].item() < 2.0


def test_z0_does_not_see_records_after_origin(setup, tmp_path) -> None:
    """Changing or adding any record after t0 leaves z0 unchanged (store reads are cut at t0)."""
    recs, spec, model, _ = setup
    rec = recs[5]
    t0 = choose_origins(rec, spec.vocab, 1, random.Random(3))[0]
    store = SQLiteStore(tmp_path / "leak.db")
    store.write(GraphBatch(nodes=list(rec.nodes), edges=list(rec.edges)))

    def z0() -> torch.Tensor:
        g = build_graph(load_records(store, rec.patient_id, as_of=t0), t0, spec)
        with torch.no_grad():
            return model.encode(Batch.from_data_list([g])).mu

    before = z0()
    future = [n for n in rec.nodes if n.time is not None and n.time > t0]
    assert future, "the origin must have a future to change"
    changed = [replace(n, value=(n.value or 0) * 3 + 7) for n in future if n.type is NodeType.LAB]
    added = [Node(id=f"Observation/new-{i}", type=NodeType.LAB, patient_id=rec.patient_id, time=t0 + timedelta(days=i + 1),
                  code="T1", system="urn:test", value=99.0) for i in range(3)]
    store.write(GraphBatch(nodes=changed + added))
    assert torch.equal(before, z0())
    # ... while a change at or before t0 does move it
    past = next(n for n in rec.nodes if n.type is NodeType.LAB and n.code == "T1" and n.time <= t0)
    store.write(GraphBatch(nodes=[replace(past, value=past.value + 5)]))
    assert not torch.equal(before, z0())


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="CUDA not available"))])
def test_same_code_path_on_every_device(setup, device: str) -> None:
    _, spec, model, graphs = setup
    dev = torch.device(device)
    m = TwinEnsemble.build_member(ModelConfig(), spec)
    m.load_state_dict(model.state_dict())
    m.to(dev).eval()
    batch = Batch.from_data_list(graphs)
    doses = torch.ones(len(graphs), 100, spec.vocab.n_treatments)
    t = torch.tensor([0.0, 30.0, 90.0])
    with torch.no_grad():
        ref = model.rollout(batch, doses, t)
        got = m.rollout(batch.to(dev), doses.to(dev), t.to(dev))
    assert got.mean.device.type == dev.type
    assert torch.allclose(ref.mean, got.mean.cpu(), atol=1e-4)
    assert math.isfinite(float(got.logvar.sum()))


def test_mixture_quantiles_known_answers() -> None:
    from twin.predict import mixture_quantile

    one = mixture_quantile(torch.zeros(2, 1, 3, dtype=torch.float64), torch.ones(2, 1, 3, dtype=torch.float64), 0.95)
    assert torch.allclose(one, torch.full((2, 3), 1.6448536, dtype=torch.float64), atol=1e-6)
    mu = torch.tensor([[-1.0, 1.0]], dtype=torch.float64)
    sd = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    assert abs(float(mixture_quantile(mu, sd, 0.5))) < 1e-9  # symmetric mixture: median 0
    q = float(mixture_quantile(mu, sd, 0.05))
    cdf = torch.distributions.Normal(mu, sd).cdf(torch.tensor(q, dtype=torch.float64)).mean()
    assert abs(float(cdf) - 0.05) < 1e-9


def test_direct_treatment_pathway_acts_with_lag_and_saturation(setup) -> None:
    """A gain on (lab 0, drug 0) moves lab 0 only: not at the origin, then towards
    ``gain * r(dose)`` (the Emax response) as the PK and effect compartments fill."""
    _, spec, _, graphs = setup
    torch.manual_seed(1)
    m = TwinEnsemble.build_member(ModelConfig(), spec).eval()  # zero-initialised vector field: z stays put
    with torch.no_grad():
        m.effect_bias[0, 0] = -1.0
    p, d = len(graphs), spec.vocab.n_treatments
    doses = torch.zeros(2 * p, 400, d)
    doses[1::2, :, 0] = 2.0  # plan 1 of each patient: twice the usual dose of drug 0 from day 0
    t = torch.tensor([0.0, 7.0, 30.0, 90.0, 365.0])
    with torch.no_grad():
        ro = m.rollout(Batch.from_data_list(graphs), doses, t)
        full = float(m.dynamics.response(torch.full((d,), 2.0))[0])
    diff = ro.mean[1::2] - ro.mean[0::2]  # [P, Q, L]
    assert torch.allclose(diff[:, :, 1:], torch.zeros_like(diff[:, :, 1:]), atol=1e-6)
    assert torch.allclose(diff[:, 0, 0], torch.zeros(p), atol=1e-6)
    assert torch.all(diff[:, 1:, 0] < 0) and torch.all(diff[:, 1:, 0][:, 1:] <= diff[:, 1:, 0][:, :-1] + 1e-6)
    assert 0 < -float(diff[0, 1, 0]) < 0.5 * full  # lagged: well short of the full effect after a week
    assert torch.allclose(diff[:, -1, 0], torch.full((p,), -full), atol=1e-3)  # saturating Emax response



def test_forecast_starts_at_the_anchor_and_follows_the_latent(setup) -> None:
    """The decoder's change is ``h(z(t)) - h(z(0))`` plus an offset that starts at 0: an untrained
    model forecasts every measured target at the origin as its last value exactly, whatever the
    latent, and later values move only as the latent moves."""
    _, spec, _, graphs = setup
    torch.manual_seed(2)
    m = TwinEnsemble.build_member(ModelConfig(), spec).eval()
    batch = Batch.from_data_list(graphs)
    doses = torch.zeros(len(graphs), 31, spec.vocab.n_treatments)
    t = torch.tensor([0.0, 30.0])
    with torch.no_grad():
        still = m.rollout(batch, doses, t)  # zero vector field at initialisation: z(t) = z(0)
        _randomise_vector_field(m)
        moving = m.rollout(batch, doses, t)
        p = batch["patient"]
        anchor = p.anchor * p.anchor_mask
    for ro in (still, moving):
        assert torch.allclose(ro.mean[:, 0], anchor, atol=1e-6)
    assert torch.allclose(still.mean[:, 1], anchor, atol=1e-6)
    assert not torch.allclose(moving.mean[:, 1], anchor, atol=1e-3)
    # the offset (the change between the last value and the origin) adds to every time alike
    with torch.no_grad():
        m.decoder.net[2].bias[2 * spec.vocab.n_targets:] = 0.25
        shifted = m.rollout(batch, doses, t)
    assert torch.allclose(shifted.mean - moving.mean, torch.full_like(moving.mean, 0.25), atol=1e-5)


def test_cumulative_dose_counts_the_dose_given_up_to_each_time() -> None:
    doses = torch.zeros(1, 5, 2)
    doses[0, 0, 0], doses[0, 2, 1] = 1.0, 2.0  # drug 0 on day 0, drug 1 (twice its usual dose) on day 2
    t = torch.tensor([[0.0, 0.5, 1.0, 2.0, 2.25, 3.0, 9.0]])
    want = torch.tensor([[0.0, 0.0], [0.5, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.5], [1.0, 2.0], [1.0, 2.0]])
    torch.testing.assert_close(cumulative_dose(doses, t)[0], want)


def test_immediate_pathway_moves_a_lasting_targets_next_day(setup) -> None:
    """A single dose of a lasting treatment with a pulse gain shifts the target by
    ``(p + v * anchor) * dose`` from the end of its day on, and not before it is given."""
    _, spec, _, graphs = setup
    torch.manual_seed(3)
    m = TwinEnsemble.build_member(ModelConfig(), spec).eval()
    with torch.no_grad():
        m.lasting.fill_(1.0)
        m.pulse_bias[0, 0], m.pulse_slope[0, 0] = -0.2, 0.1
    p, d = len(graphs), spec.vocab.n_treatments
    doses = torch.zeros(2 * p, 6, d)
    doses[1::2, 2, 0] = 1.0  # plan 1: one dose of drug 0 on day 2
    t = torch.tensor([0.0, 2.0, 3.0, 5.0])
    with torch.no_grad():
        ro = m.rollout(Batch.from_data_list(graphs), doses, t)
    diff = ro.mean[1::2] - ro.mean[0::2]
    a = Batch.from_data_list(graphs)["patient"].anchor[:, 0] * Batch.from_data_list(graphs)["patient"].anchor_mask[:, 0]
    assert torch.allclose(diff[:, :2], torch.zeros_like(diff[:, :2]), atol=1e-6)
    assert torch.allclose(diff[:, 2, 0], -0.2 + 0.1 * a, atol=1e-5)
    assert torch.allclose(diff[:, 3, 0], diff[:, 2, 0], atol=1e-5)
    assert torch.allclose(diff[:, :, 1:], torch.zeros_like(diff[:, :, 1:]), atol=1e-6)
