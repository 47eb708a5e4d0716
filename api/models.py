"""The trained models under ``settings.model_path``: ``<model_path>/<name>/model.pt`` + its report.

Listing and locating models, and the training job function, live here so routes stay thin.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from api.jobs import ProgressFn
from graph.store.base import GraphStore

__all__ = ["ModelCache", "ModelFile", "find_model", "list_models", "model_dir", "training_job"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
CHECKPOINT = "model.pt"


@dataclass(frozen=True)
class ModelFile:
    """One model checkpoint on disk."""

    name: str
    path: Path
    updated: datetime
    size_bytes: int
    report: dict[str, Any] | None


def model_dir(root: Path, name: str) -> Path:
    """The folder of model ``name`` (names are checked so they never escape ``root``)."""
    if not _NAME.match(name):
        raise ValueError(f"invalid model name {name!r}")
    return root / name


def _read(path: Path, name: str) -> ModelFile:
    st = path.stat()
    report_path = path.with_suffix(".report.json")
    report = None
    if report_path.is_file():
        try:
            report = json.loads(report_path.read_text())
        except (OSError, ValueError):
            report = None
    return ModelFile(name, path, datetime.fromtimestamp(st.st_mtime, UTC), st.st_size, report)


def find_model(root: Path, name: str) -> ModelFile | None:
    """Model ``name`` if its checkpoint exists."""
    path = model_dir(root, name) / CHECKPOINT
    return _read(path, name) if path.is_file() else None


def list_models(root: Path) -> list[ModelFile]:
    """Every model with a checkpoint under ``root``, by name."""
    if not root.is_dir():
        return []
    return [_read(d / CHECKPOINT, d.name) for d in sorted(root.iterdir())
            if _NAME.match(d.name) and (d / CHECKPOINT).is_file()]


def training_job(store: GraphStore, out_dir: Path, config: dict[str, Any], device: str):  # noqa: ANN201
    """A job function training :func:`twin.train.train` with ``config`` into ``out_dir``."""

    def run(progress: ProgressFn) -> dict[str, Any]:
        from twin.train import TrainConfig, train

        cfg = TrainConfig(**config, device=device, progress=False)
        report = train(store, cfg, out_dir, on_progress=progress)
        doc = report.to_dict()
        doc.pop("members", None)
        doc["checkpoint"] = out_dir.name
        return doc

    return run


class ModelCache:
    """Loaded ensembles by checkpoint path, reloaded when the file changes (e.g. retrained)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self._lock = threading.Lock()
        self._loaded: dict[Path, tuple[float, Any]] = {}

    def get(self, model: ModelFile) -> Any:
        """The :class:`~twin.model.checkpoint.TwinEnsemble` of ``model`` (loaded once per version)."""
        from twin.model.checkpoint import TwinEnsemble

        stamp = model.path.stat().st_mtime
        with self._lock:
            hit = self._loaded.get(model.path)
            if hit is not None and hit[0] == stamp:
                return hit[1]
            ens = TwinEnsemble.load(model.path, self.device)
            self._loaded[model.path] = (stamp, ens)
            return ens
