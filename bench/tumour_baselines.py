"""Graph-free baselines for the tumour counterfactual benchmark (``shared/benchmarks/tumour.md``).

    PYTHONPATH=. .venv/bin/python bench/tumour_baselines.py --gammas 0 2 --train 1000 --val 100 --test 200

* persistence: today's volume ``V_t`` for every action and every τ;
* a sequence model without the graph: a GRU encoder over the daily history (log volume, the
  previous day's chemo and radio, patient type one-hot) and a GRU-cell decoder that takes the
  action of each coming day and predicts the change of log volume, for τ = 1..6. Trained on
  factual paths only (the factual future actions and volumes are the teacher-forced inputs and
  targets), early stopping on a validation cohort, seeded.

Both are scored with :func:`synthetic.tumour.normalised_rmse`: CT's "orig" for the one-step
set, pooled per τ for the sliding-treatment set.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthetic.tumour import (  # noqa: E402
    V_MAX,
    OneStepSet,
    SlidingSet,
    TumourCohort,
    normalised_rmse,
    one_step_counterfactuals,
    simulate_cohort,
    sliding_treatment_counterfactuals,
)

HORIZON = 6  # τ = 1..6
LOG_FLOOR = 1e-3  # cm3: recovered (0) volumes enter the log at this floor


def persistence_predictions(cohort: TumourCohort, test_set: OneStepSet | SlidingSet) -> np.ndarray:
    """``V_t`` of each row's origin, shaped like ``test_set.volume``."""
    v = cohort.volumes[test_set.patient, test_set.t]
    return v if isinstance(test_set, OneStepSet) else np.repeat(v[:, None], test_set.volume.shape[1], axis=1)


class SequenceBaseline(nn.Module):
    """GRU encoder over the history, GRU-cell decoder over the coming actions."""

    def __init__(self, hidden: int, log_mean: float, log_sd: float) -> None:
        super().__init__()
        self.encoder = nn.GRU(6, hidden, batch_first=True)
        self.decoder = nn.GRUCell(2, hidden)
        self.head = nn.Linear(hidden, 1)
        self.log_mean, self.log_sd = log_mean, log_sd  # standardisation of log volume (training cohort)

    def decode(self, h: torch.Tensor, y0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Standardised log ``V_{t+1..t+S}`` from the encoder state and log ``V_t`` at ``t`` and
        the (chemo, radio) actions ``[M, S, 2]`` of days ``t..t+S-1``."""
        steps = []
        for k in range(actions.shape[1]):
            h = self.decoder(actions[:, k], h)
            steps.append(self.head(h).squeeze(-1))
        return y0[:, None] + torch.cumsum(torch.stack(steps, dim=1), dim=1)


def _tensors(cohort: TumourCohort, model: SequenceBaseline, device: torch.device) -> dict[str, torch.Tensor]:
    """Encoder inputs ``x`` [N, T+1, 6], standardised log volumes ``y`` and their mask [N, T+1], actions [N, T, 2]."""
    defined = np.isfinite(cohort.volumes)
    y = (np.log(np.maximum(np.where(defined, cohort.volumes, 1.0), LOG_FLOOR)) - model.log_mean) / model.log_sd
    y = np.where(defined, y, 0.0)
    acts = np.stack([cohort.chemo, cohort.radio], axis=-1).astype(np.float32)
    prev = np.concatenate([np.zeros_like(acts[:, :1]), acts], axis=1)
    types = np.eye(3, dtype=np.float32)[cohort.patient_type - 1][:, None, :].repeat(y.shape[1], axis=1)
    x = np.concatenate([y[..., None], prev, types], axis=-1)
    return {k: torch.as_tensor(np.asarray(v, dtype=np.float32), device=device)
            for k, v in (("x", x), ("y", y), ("mask", defined), ("acts", acts))}


def _windows(a: torch.Tensor, start: int) -> torch.Tensor:
    """``[B, L - start, HORIZON, ...]``: row ``t`` holds entries ``start + t .. start + t + HORIZON - 1`` of ``a``
    along dim 1 (length ``L``), zero-padded past the end."""
    pad = torch.zeros((a.shape[0], HORIZON - 1, *a.shape[2:]), dtype=a.dtype, device=a.device)
    return torch.cat([a[:, start:], pad], dim=1).unfold(1, HORIZON, 1).movedim(-1, 2)


def _loss(model: SequenceBaseline, d: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed squared error of every factual (origin, τ) target, and the number of targets."""
    h, _ = model.encoder(d["x"])
    target, mask = _windows(d["y"], 1), _windows(d["mask"], 1)
    origin = mask[:, :, 0] > 0  # V_{t+1} defined
    pred = model.decode(h[:, :-1][origin], d["y"][:, :-1][origin], _windows(d["acts"], 0)[origin])
    m = mask[origin]
    return (((pred - target[origin]) ** 2) * m).sum(), m.sum()


def train_sequence_model(train_cohort: TumourCohort, val_cohort: TumourCohort, epochs: int = 50, seed: int = 0,
                         device: str = "cpu", hidden: int = 64, batch_size: int = 64, lr: float = 3e-3,
                         patience: int = 5) -> SequenceBaseline:
    """Fit :class:`SequenceBaseline` on factual paths; the weights of the best validation epoch are kept."""
    torch.manual_seed(seed)
    dev = torch.device(device)
    logs = np.log(np.maximum(train_cohort.volumes[np.isfinite(train_cohort.volumes)], LOG_FLOOR))
    model = SequenceBaseline(hidden, float(logs.mean()), float(logs.std())).to(dev)
    train, val = _tensors(train_cohort, model, dev), _tensors(val_cohort, model, dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    best, best_state, stale = float("inf"), copy.deepcopy(model.state_dict()), 0
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(train_cohort.n_patients, generator=gen).split(batch_size):
            sse, n = _loss(model, {k: v[idx.to(dev)] for k, v in train.items()})
            opt.zero_grad()
            (sse / n).backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        model.eval()
        with torch.no_grad():
            parts = [_loss(model, {k: v[i:i + 256] for k, v in val.items()}) for i in range(0, val_cohort.n_patients, 256)]
            val_loss = float(sum(p[0] for p in parts) / sum(p[1] for p in parts))
        if val_loss < best:
            best, best_state, stale = val_loss, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= patience:
                break
    model.load_state_dict(best_state)
    return model.eval()


@torch.no_grad()
def sequence_predictions(model: SequenceBaseline, cohort: TumourCohort, test_set: OneStepSet | SlidingSet,
                         chunk: int = 65536) -> np.ndarray:
    """Predicted volumes (cm3, clipped to ``[0, V_MAX]``) shaped like ``test_set.volume``."""
    dev = next(model.parameters()).device
    d = _tensors(cohort, model, dev)
    h = torch.cat([model.encoder(d["x"][i:i + 256])[0] for i in range(0, cohort.n_patients, 256)])
    if isinstance(test_set, OneStepSet):
        actions = np.stack([test_set.chemo, test_set.radio], axis=-1)[:, None, :]
    else:
        actions = test_set.actions
    p, t = torch.as_tensor(test_set.patient, device=dev), torch.as_tensor(test_set.t, device=dev)
    acts = torch.as_tensor(actions, dtype=torch.float32, device=dev)
    out = torch.cat([model.decode(h[p[i:i + chunk], t[i:i + chunk]], d["y"][p[i:i + chunk], t[i:i + chunk]],
                                  acts[i:i + chunk]) for i in range(0, len(p), chunk)])
    v = np.exp(out.cpu().numpy().astype(float) * model.log_sd + model.log_mean)
    v = np.clip(v, 0.0, V_MAX)  # the simulator clips at V_MAX (death)
    return v[:, 0] if isinstance(test_set, OneStepSet) else v[:, 1:]


Predictor = Callable[[TumourCohort, OneStepSet | SlidingSet], np.ndarray]


def evaluate(cohort: TumourCohort, predict: dict[str, Predictor]) -> dict[str, list[float]]:
    """Per predictor: one-step normalised RMSE ("orig") then τ = 2..6 (pooled per τ)."""
    one, sliding = one_step_counterfactuals(cohort), sliding_treatment_counterfactuals(cohort)
    rows: dict[str, list[float]] = {}
    for name, fn in predict.items():
        p1, ps = fn(cohort, one), fn(cohort, sliding)
        rows[name] = [normalised_rmse(p1, one.volume, one.t)] + [
            normalised_rmse(ps[:, k], sliding.volume[:, k]) for k in range(sliding.volume.shape[1])]
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gammas", type=float, nargs="+", default=[0.0, 2.0])
    ap.add_argument("--train", type=int, default=1000)
    ap.add_argument("--val", type=int, default=100)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    print("| γ | model | one-step | τ=2 | τ=3 | τ=4 | τ=5 | τ=6 | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for gamma in args.gammas:
        t0 = time.perf_counter()
        train, val, test = (simulate_cohort(n, gamma, args.seed + k)
                            for k, n in enumerate((args.train, args.val, args.test)))
        model = train_sequence_model(train, val, args.epochs, args.seed, args.device)
        t1 = time.perf_counter()
        rows = evaluate(test, {"persistence": persistence_predictions,
                               "GRU (no graph)": partial(sequence_predictions, model)})
        t2 = time.perf_counter()
        for name, vals in rows.items():
            secs = f"{t1 - t0:.0f} train + {t2 - t1:.0f} eval" if name != "persistence" else ""
            print(f"| {gamma:g} | {name} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | {secs} |")


if __name__ == "__main__":
    main()
