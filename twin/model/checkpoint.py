"""A fitted twin model on disk: ensemble members + vocabulary + normalisers + configs, one file.

Written with ``torch.save`` to a temporary file in the target directory and moved into place
with ``os.replace``, so a crash never leaves a half-written checkpoint. Only plain data
(dicts, lists, numbers, strings, tensors) is stored, so loading uses ``weights_only=True``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch_geometric.data import HeteroData

from core.errors import ModelError
from twin.calibration import IntervalCalibration
from twin.config import ModelConfig
from twin.features.hetero import FeatureSpec, node_dims
from twin.features.records import PatientRecords
from twin.features.vocab import Normalisers, Vocabulary
from twin.image_encoder import ImageEncoder
from twin.model.encodings import EncodingCache
from twin.model.stacked import StackedMembers
from twin.model.twin_model import Encoded, TwinModel
from twin.spec import CohortSpec

__all__ = ["CHECKPOINT_FORMAT", "TwinEnsemble", "load_model"]

# @2: lab levels, counts, trends; @3: first-order image statistics; @4: cohort specification
# (targets with transforms, treatments incl. procedures, time scales), dose history, rate pathway
CHECKPOINT_FORMAT = "patient-twin/model@5"


@dataclass
class TwinEnsemble:
    """Everything a forecast needs: members (same architecture, different seeds), feature spec
    (vocabulary, normalisers), image encoder and configs."""

    members: list[TwinModel]
    spec: FeatureSpec
    image_encoder: ImageEncoder
    model_config: ModelConfig
    train_config: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    #: Per-lab, per-horizon scale of the forecast band fitted on validation origins (``None``: not fitted).
    interval_calibration: IntervalCalibration | None = None
    encodings: EncodingCache = field(default_factory=EncodingCache, repr=False, compare=False)
    _stacked: dict[tuple[int, ...], tuple[list[torch.Tensor], list[tuple[int, int]], StackedMembers]] = field(default_factory=dict, init=False, repr=False,
                                                                         compare=False)

    @staticmethod
    def build_member(cfg: ModelConfig, spec: FeatureSpec) -> TwinModel:
        v = spec.vocab
        return TwinModel(cfg, v.cohort.scales, node_dims(spec), len(v.concepts), len(v.genes), v.n_targets,
                         v.n_treatments, len(v.event_kinds), [t.effect == "lasting" for t in v.cohort.treatments])

    @property
    def cohort(self) -> CohortSpec:
        """The cohort specification the members were trained on (targets, treatments, scales)."""
        return self.spec.vocab.cohort

    def stacked(self, members: list[int] | None = None) -> StackedMembers:
        """The chosen members (default: all) stacked for one-solve inference. Built once and
        rebuilt when a member's weights change (training, ``load_state_dict``) or move device."""
        chosen = tuple(range(len(self.members))) if members is None else tuple(members)
        cached = self._stacked.get(chosen)
        if cached is not None:
            params, versions, stacked = cached
            if [(p._version, p.data_ptr()) for p in params] == versions:
                return stacked
        params = [p for i in chosen for p in self.members[i].parameters()]
        stacked = StackedMembers([self.members[i] for i in chosen])
        self._stacked[chosen] = (params, [(p._version, p.data_ptr()) for p in params], stacked)
        return stacked

    def encode(self, records: PatientRecords) -> tuple[HeteroData, list[Encoded]]:
        """The as-of graph of ``records`` and every member's encoding of it (cached, see
        :class:`~twin.model.encodings.EncodingCache`)."""
        return self.encodings.get(self.stacked(), records, self.spec, self.image_encoder)

    def encode_many(self, records: Sequence[PatientRecords]) -> list[Encoded]:
        """Every member's encoding of each patient's as-of graph, the patients' rows in order
        (graphs not cached are built once per distinct patient and encoded in one batch)."""
        per_patient = self.encodings.get_many(self.stacked(), records, self.spec, self.image_encoder)
        return [Encoded.cat([p[k] for p in per_patient]) for k in range(len(self.members))]

    @property
    def device(self) -> torch.device:
        return next(self.members[0].parameters()).device

    def to(self, device: torch.device | str) -> TwinEnsemble:
        for m in self.members:
            m.to(device)
        return self

    def save(self, path: str | Path) -> Path:
        """Write atomically to ``path`` (parent directories are created)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "format": CHECKPOINT_FORMAT,
            "model_config": self.model_config.to_dict(),
            "train_config": self.train_config,
            "vocab": self.spec.vocab.to_dict(),
            "normalisers": self.spec.norms.to_dict(),
            "feature_spec": {"image_dim": self.spec.image_dim, "max_per_type": self.spec.max_per_type,
                             "max_labs": self.spec.max_labs},
            "image_encoder": self.image_encoder.state(),
            "members": [{k: v.detach().cpu() for k, v in m.state_dict().items()} for m in self.members],
            "report": self.report,
            "interval_calibration": self.interval_calibration.to_dict() if self.interval_calibration else None,
        }
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            torch.save(doc, tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> TwinEnsemble:
        """Read a checkpoint written by :meth:`save`; raises :class:`ModelError` naming the file."""
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"model checkpoint {path} does not exist")
        try:
            doc = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for corrupt or foreign files
            raise ModelError(f"model checkpoint {path} cannot be read: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT:
            found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
            raise ModelError(f"model checkpoint {path}: expected format {CHECKPOINT_FORMAT!r}, found {found!r}; "
                             "retrain it with this version (twin train)")
        cfg = ModelConfig(**doc["model_config"])
        spec = FeatureSpec(Vocabulary.from_dict(doc["vocab"]), Normalisers.from_dict(doc["normalisers"]),
                           **doc["feature_spec"])
        members = []
        for state in doc["members"]:
            m = cls.build_member(cfg, spec)
            m.load_state_dict(state)
            m.eval()
            members.append(m)
        try:
            cal = IntervalCalibration.from_dict(doc["interval_calibration"]) if doc.get("interval_calibration") else None
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"model checkpoint {path}: its interval calibration is invalid: {exc}") from exc
        ens = cls(members, spec, ImageEncoder.from_state(doc["image_encoder"]), cfg, doc["train_config"], doc["report"],
                  cal)
        return ens.to(device)


def load_model(path: str | Path, device: torch.device | str = "cpu") -> TwinEnsemble:
    """The trained ensemble in checkpoint ``path`` (written by :func:`twin.train`), on ``device``."""
    return TwinEnsemble.load(path, device)
