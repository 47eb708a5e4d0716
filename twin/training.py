"""Training of the twin model: ``train(store, TrainConfig, out) -> TrainReport``.

Patients are split (seeded) into training and validation sets; each patient contributes
several random forecast origins. Every ensemble member is trained with mini-batches across
patients on Gaussian NLL of the target labs + event likelihood + KL, modality dropout, and
early stopping on the validation loss; the best weights of every member go into one
checkpoint (written atomically) with the vocabulary, normalisers and configs, next to a
JSON training report.

``train(..., distributed=True)`` is the data-parallel form, one process per rank under
``torchrun`` (:mod:`twin.distributed`): each rank reads its share of the patients, the records
are exchanged so that every rank derives the same vocabulary and examples, each global batch is
split across the ranks with its loss terms weighted by each slice's share, and the summed
gradients are the single-process gradient of that batch. The random draws (shuffles, modality
dropout, ``z0`` noise) are made for the whole batch on every rank, so the run follows the
single-process one up to floating-point summation order. Rank 0 writes the checkpoint.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import torch
from tqdm.auto import tqdm

from core.errors import TwinError
from graph.schema import NodeType
from graph.store.base import GraphStore
from twin.calibration import fit_interval_calibration
from twin.config import TrainConfig
from twin.distributed import Ranks, all_reduce_grads, gather_dict, process_group, sum_over_ranks
from twin.features import (
    Example,
    FeatureSpec,
    PatientRecords,
    build_example,
    change_origins,
    choose_origins,
    collate,
    load_records,
)
from twin.features.records import image_path
from twin.features.vocab import build_vocabulary
from twin.image_encoder import ImageEncoder
from twin.model.checkpoint import TwinEnsemble
from twin.model.twin_model import TwinModel

__all__ = ["TrainReport", "build_examples", "evaluate_loss", "split_patients", "train"]

log = logging.getLogger(__name__)


@dataclass
class TrainReport:
    """What a training run did; written as JSON next to the checkpoint."""

    checkpoint: str
    n_train_patients: int
    n_val_patients: int
    n_train_examples: int
    n_val_examples: int
    cohort_spec: dict[str, Any]  # twin.spec.CohortSpec.to_dict(): targets, treatments, events, time scales
    n_images: int
    image_ae_mse: float
    members: list[dict[str, Any]]
    seconds: float
    seconds_per_epoch: float
    device: str
    trained_at: str = ""  # ISO UTC time the checkpoint was written
    cohort: dict[str, Any] = field(default_factory=dict)  # where the training patients came from (no ids)
    processes: int = 1  # data-parallel ranks that trained it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_patients(ids: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded patient-level split (so no patient is in both sets)."""
    ids = sorted(ids)
    random.Random(seed).shuffle(ids)
    n_val = int(round(len(ids) * val_fraction)) if len(ids) > 2 else 0
    return sorted(ids[n_val:]), sorted(ids[:n_val])


def build_examples(records: list[PatientRecords], spec: FeatureSpec, k: int, seed: int,
                   image_embed: Callable | None = None, k_change: int = 0) -> list[Example]:
    """``k`` random origins per patient (seeded), plus up to ``k_change`` origins just before
    treatment changes (:func:`~twin.features.change_origins`), turned into examples with at
    least one label within the cohort's horizon."""
    rng = random.Random(seed)
    scales = spec.vocab.cohort.scales
    horizon_days = scales.horizon_days
    out = []
    for rec in records:
        origins = set(choose_origins(rec, spec.vocab, k, rng))
        if k_change:
            origins.update(change_origins(rec, spec.vocab, k_change, rng, window_days=scales.change_window_days))
        for t0 in sorted(origins):
            ex = build_example(rec, t0, spec, horizon_days, image_embed)
            if len(ex.targets.t):
                out.append(ex)
    return out


_TERMS = ("loss", "lab_nll", "lab_mse", "event_nll", "kl")


def _share_of_terms(out: dict[str, torch.Tensor], obs_frac: float, ex_frac: float,
                    cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """One rank's loss terms scaled to its contribution to the whole batch's: lab terms are
    means over observations (weight: its share of them), event and KL terms means over
    examples (its share of those). Summed over ranks they are the whole batch's terms."""
    per_example = cfg.event_weight * out["event_nll"] + cfg.kl_weight * out["kl"]
    return {"loss": out["loss"] * obs_frac + per_example * (ex_frac - obs_frac),
            "lab_nll": out["lab_nll"] * obs_frac, "lab_mse": out["lab_mse"] * obs_frac,
            "event_nll": out["event_nll"] * ex_frac, "kl": out["kl"] * ex_frac}


def _n_obs(examples: list[Example]) -> int:
    return max(sum(len(ex.targets.t) for ex in examples), 1)  # as the loss's clamped mask sum


@torch.no_grad()
def evaluate_loss(model: TwinModel, examples: list[Example], cfg: TrainConfig, device: torch.device,
                  ranks: Ranks | None = None) -> dict[str, float]:
    """Mean loss terms over ``examples`` with ``z0`` at the posterior mean (deterministic).

    With ``ranks`` every chunk is split across the ranks and the terms are summed over them."""
    model.eval()
    tot: dict[str, float] = {}
    n = 0
    for i in range(0, len(examples), cfg.batch_size * 2):
        chunk = examples[i: i + cfg.batch_size * 2]
        if ranks is None:
            out = model.loss(collate(chunk).to(device), sample=False, kl_weight=cfg.kl_weight,
                             event_weight=cfg.event_weight, nll_beta=cfg.nll_beta)
        else:
            mine = chunk[ranks.share(len(chunk))]
            out = {k: torch.zeros(()) for k in _TERMS}
            if mine:
                out = _share_of_terms(model.loss(collate(mine).to(device), sample=False, kl_weight=cfg.kl_weight,
                                                 event_weight=cfg.event_weight, nll_beta=cfg.nll_beta),
                                      _n_obs(mine) / _n_obs(chunk), len(mine) / len(chunk), cfg)
        for key in _TERMS:
            tot[key] = tot.get(key, 0.0) + float(out[key]) * len(chunk)
        n += len(chunk)
    if ranks is not None:
        tot = dict(zip(_TERMS, sum_over_ranks([tot.get(k, 0.0) for k in _TERMS], device), strict=True))
    return {k: v / max(n, 1) for k, v in tot.items()}


def _skip_dropout_draws(rng: random.Random, n: int, cfg: TrainConfig) -> None:
    """Advance ``rng`` past ``n`` examples' modality-dropout draws (two per example when
    dropout is on, as :func:`~twin.features.collate` draws them)."""
    if cfg.drop_image_p > 0 or cfg.drop_variant_p > 0:
        for _ in range(2 * n):
            rng.random()


def _parallel_step_loss(model: TwinModel, batch_ex: list[Example], cfg: TrainConfig, device: torch.device,
                        rng: random.Random, gen: torch.Generator, ranks: Ranks) -> torch.Tensor | None:
    """This rank's weighted loss on its slice of one global batch (``None`` for an empty slice).

    Every rank makes the whole batch's random draws (dropout from ``rng``, ``z0`` noise from
    ``gen``) and uses its slice of them, so the ranks together draw what one process would."""
    eps = torch.randn((len(batch_ex), model.cfg.latent), generator=gen)
    sl = ranks.share(len(batch_ex))
    mine = batch_ex[sl]
    _skip_dropout_draws(rng, sl.start, cfg)
    out = None
    if mine:
        batch = collate(mine, drop_image_p=cfg.drop_image_p, drop_variant_p=cfg.drop_variant_p, rng=rng).to(device)
        terms = model.loss(batch, sample=True, kl_weight=cfg.kl_weight, event_weight=cfg.event_weight,
                           nll_beta=cfg.nll_beta, eps=eps[sl])
        out = _share_of_terms(terms, _n_obs(mine) / _n_obs(batch_ex), len(mine) / len(batch_ex), cfg)["loss"]
    _skip_dropout_draws(rng, len(batch_ex) - sl.stop, cfg)
    return out


def _train_member(member: int, ens: TwinEnsemble, train_ex: list[Example], val_ex: list[Example],
                  cfg: TrainConfig, device: torch.device,
                  on_epoch: Callable[[int, float], None] | None = None,
                  ranks: Ranks | None = None) -> tuple[TwinModel, dict[str, Any]]:
    seed = cfg.seed * 1000 + member
    torch.manual_seed(seed)
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    model = TwinEnsemble.build_member(cfg.model, ens.spec).to(device)
    treat = {id(p) for p in model.treatment_parameters()}
    groups: list[dict[str, Any]] = [
        {"params": [p for p in model.parameters() if id(p) not in treat]},
        {"params": model.treatment_parameters(), "lr": cfg.lr * cfg.treatment_lr_mult, "eps": cfg.treatment_eps}]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs, eta_min=cfg.lr * 0.05)
    best, best_state, bad, history = math.inf, copy.deepcopy(model.state_dict()), 0, []
    monitor = val_ex or train_ex
    params = list(model.parameters())
    bar = tqdm(range(cfg.epochs), desc=f"member {member + 1}/{cfg.members}",
               disable=not cfg.progress or (ranks is not None and not ranks.is_main), leave=False)
    for epoch in bar:
        model.train()
        order = list(range(len(train_ex)))
        rng.shuffle(order)
        run, nb = 0.0, 0
        for i in range(0, len(order), cfg.batch_size):
            batch_ex = [train_ex[j] for j in order[i: i + cfg.batch_size]]
            opt.zero_grad()
            fit: torch.Tensor | None
            if ranks is None:
                batch = collate(batch_ex, drop_image_p=cfg.drop_image_p, drop_variant_p=cfg.drop_variant_p,
                                rng=rng).to(device)
                fit = model.loss(batch, sample=True, kl_weight=cfg.kl_weight, event_weight=cfg.event_weight,
                                 generator=gen, nll_beta=cfg.nll_beta)["loss"]
            else:
                fit = _parallel_step_loss(model, batch_ex, cfg, device, rng, gen, ranks)
            loss = fit if fit is not None else torch.zeros((), device=device)
            if cfg.treatment_l1 and (ranks is None or ranks.is_main):  # added once: gradients are summed
                loss = loss + cfg.treatment_l1 * sum(g.abs().sum() for g in model.gain_parameters())
            if loss.requires_grad:
                loss.backward()
            fit_value = float(fit.detach()) if fit is not None else 0.0
            if ranks is not None:
                fit_value = all_reduce_grads(params, [fit_value])[0]
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            run += fit_value
            nb += 1
        sched.step()
        val = evaluate_loss(model, monitor, cfg, device, ranks)
        history.append({"epoch": epoch + 1, "train_loss": run / max(nb, 1), **{f"val_{k}": v for k, v in val.items()}})
        bar.set_postfix(train=f"{run / max(nb, 1):.3f}", val=f"{val['loss']:.3f}")
        if on_epoch is not None:
            on_epoch(epoch + 1, val["loss"])
        if val[cfg.early_stopping] < best - 1e-4:
            best, best_state, bad = val[cfg.early_stopping], copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    return model, {"member": member, "seed": seed, "early_stopping": cfg.early_stopping, "best_val_loss": best,
                   "epochs_run": len(history), "history": history}


def _checkpoint_path(out: str | Path) -> Path:
    out = Path(out)
    return out if out.suffix == ".pt" else out / "model.pt"


ProgressFn = Callable[[float, str], None]


def train(store: GraphStore, cfg: TrainConfig, out: str | Path,
          patient_ids: list[str] | None = None, on_progress: ProgressFn | None = None,
          distributed: bool = False) -> TrainReport:
    """Train an ensemble on the patients of ``store`` (or ``patient_ids``) and write the checkpoint.

    ``out`` is the checkpoint file (``*.pt``) or a directory (then ``out/model.pt``); the report
    goes to ``<checkpoint>.report.json``. ``on_progress(fraction, message)`` is called as the
    stages advance (reading 0-5%, features 5-15%, one step per epoch up to 98%, saved 100%);
    messages carry counts and losses, never patient data. Raises :class:`TwinError` when the
    cohort is unusable.

    ``distributed``: data-parallel over the ``torchrun`` process group (see the module
    docstring); every rank returns the report, only rank 0 reports progress and writes files.
    """
    if not distributed:
        return _train(store, cfg, out, patient_ids, on_progress, None)
    with process_group(cfg.device) as (ranks, device):
        local = TrainConfig(**{**cfg.to_dict(), "device": device, "progress": cfg.progress and ranks.is_main})
        return _train(store, local, out, patient_ids, on_progress if ranks.is_main else None, ranks)


def _read_records(store: GraphStore, ids: list[str], ranks: Ranks | None, progress: bool) -> dict[str, PatientRecords]:
    """The records of ``ids``; with ``ranks`` each rank reads its share and they are exchanged."""
    mine = ids if ranks is None else ranks.part(ids)
    got = {p: load_records(store, p) for p in tqdm(mine, desc="read", disable=not progress, leave=False)}
    return got if ranks is None else gather_dict(got)


def _train(store: GraphStore, cfg: TrainConfig, out: str | Path, patient_ids: list[str] | None,
           on_progress: ProgressFn | None, ranks: Ranks | None) -> TrainReport:
    report_progress = on_progress or (lambda _f, _m: None)
    started = time.perf_counter()
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TwinError("--device cuda was asked for but CUDA is not available on this machine")
    ids = patient_ids if patient_ids is not None else store.patient_ids()
    if len(ids) < 2:
        raise TwinError(f"training needs at least 2 patients, {store.url} has {len(ids)}")
    train_ids, val_ids = split_patients(ids, cfg.val_fraction, cfg.seed)
    report_progress(0.0, f"reading {len(ids)} patients")
    records = _read_records(store, train_ids + val_ids, ranks, cfg.progress)
    train_rec = [records[p] for p in train_ids]
    val_rec = [records[p] for p in val_ids]
    vocab, norms = build_vocabulary(train_rec, cfg.spec)
    report_progress(0.05, "building features")

    images = sorted({str(p) for r in train_rec for n in r.nodes if n.type is NodeType.IMAGE
                     if (p := image_path(n)) is not None and p.exists()})
    image_enc = ImageEncoder(cfg.image_dim)
    spec = FeatureSpec(vocab, norms, image_dim=image_enc.dim)
    ae_mse = image_enc.fit([Path(p) for p in images], epochs=cfg.image_epochs, seed=cfg.seed) if images else float("nan")

    train_ex = build_examples(train_rec, spec, cfg.origins_per_patient, cfg.seed, image_enc,
                              cfg.change_origins_per_patient)
    val_ex = build_examples(val_rec, spec, cfg.origins_per_patient, cfg.seed + 1, image_enc,
                            cfg.change_origins_per_patient)
    if not train_ex:
        raise TwinError("no training example: no patient has target-lab measurements before and after an origin")
    ens = TwinEnsemble([], spec, image_enc, cfg.model, cfg.to_dict())
    t_train = time.perf_counter()
    reports, epochs_run = [], 0
    total_epochs = cfg.members * cfg.epochs
    for m in range(cfg.members):
        def on_epoch(epoch: int, val_loss: float, _m: int = m) -> None:
            # early stopping may end a member before cfg.epochs: progress then jumps to the next
            frac = 0.15 + 0.83 * (_m * cfg.epochs + epoch) / total_epochs
            report_progress(frac, f"member {_m + 1}/{cfg.members} epoch {epoch}/{cfg.epochs} val loss {val_loss:.3f}")

        report_progress(0.15 + 0.83 * m / cfg.members, f"training member {m + 1}/{cfg.members}")
        model, rep = _train_member(m, ens, train_ex, val_ex, cfg, device, on_epoch, ranks)
        ens.members.append(model)
        reports.append(rep)
        epochs_run += rep["epochs_run"]
    train_s = time.perf_counter() - t_train
    ckpt = _checkpoint_path(out)
    report = TrainReport(
        checkpoint=str(ckpt), n_train_patients=len(train_ids), n_val_patients=len(val_ids),
        n_train_examples=len(train_ex), n_val_examples=len(val_ex), cohort_spec=vocab.cohort.to_dict(), n_images=len(images), image_ae_mse=ae_mse,
        members=reports, seconds=time.perf_counter() - started, seconds_per_epoch=train_s / max(epochs_run, 1),
        device=str(device), trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        cohort={"store": _store_label(store.url), "patients": len(ids)}, processes=ranks.world if ranks else 1)
    if ranks is not None and not ranks.is_main:
        return report
    ens.report = {k: v for k, v in report.to_dict().items() if k != "members"}
    report_progress(0.99, "calibrating the forecast intervals on the validation origins")
    ens.interval_calibration = fit_interval_calibration(ens, val_ex, seed=cfg.seed) if val_ex else None
    ens.to("cpu").save(ckpt)
    tmp = ckpt.with_suffix(".report.json.tmp")
    tmp.write_text(json.dumps(report.to_dict(), indent=2, default=_json_default))
    os.replace(tmp, ckpt.with_suffix(".report.json"))
    report_progress(1.0, "saved")
    return report


def _store_label(url: str) -> str:
    """``sqlite:///a/b/twin.db`` → ``sqlite:twin.db``; ``bolt://user:pw@host:7687`` → ``bolt://host:7687``.

    Names the training cohort's store without server paths or credentials.
    """
    parts = urlsplit(url)
    if parts.scheme.startswith("sqlite") or not parts.scheme:
        return f"sqlite:{Path(parts.path or url).name}"
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"


def _json_default(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return str(o)
