"""The model registry: trained models by name under one folder, shared by the CLI and the API.

``<root>/<name>/model.pt`` plus its training report ``model.report.json``. ``twin train``
writes here, ``twin forecast``/``twin simulate`` and ``twin serve`` read from here, so the
model a user trains is the model every entry point sees. The root is ``--models`` on the CLI,
``model_path`` in the service settings, and ``$TWIN_MODEL_PATH`` for both.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import ModelError

if TYPE_CHECKING:
    from twin import TwinEnsemble

__all__ = ["CHECKPOINT", "DEFAULT_MODEL", "DEFAULT_MODEL_ROOT", "MODEL_NAME_PATTERN", "ModelInfo", "ModelRegistry",
           "default_model_root"]

#: Used when neither ``--models`` nor ``$TWIN_MODEL_PATH`` is given.
DEFAULT_MODEL_ROOT = Path("twin-data/models")
#: The model every command and request uses unless told otherwise.
DEFAULT_MODEL = "default"
#: Model names: lower-case letters, digits, ``-`` and ``_`` (they are folder names).
MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
CHECKPOINT = "model.pt"

_NAME = re.compile(MODEL_NAME_PATTERN)


def default_model_root() -> Path:
    """``$TWIN_MODEL_PATH`` or :data:`DEFAULT_MODEL_ROOT`."""
    return Path(os.environ.get("TWIN_MODEL_PATH") or DEFAULT_MODEL_ROOT)


@dataclass(frozen=True)
class ModelInfo:
    """One trained model: where it is, when it was written, what it was trained on."""

    name: str
    path: Path
    updated: datetime
    size_bytes: int
    report: dict[str, Any] | None

    @property
    def trained_at(self) -> str | None:
        return (self.report or {}).get("trained_at") or None

    @property
    def cohort(self) -> dict[str, Any]:
        """Training cohort: ``store`` (no paths or credentials) and ``patients``."""
        return dict((self.report or {}).get("cohort") or {})

    def summary(self) -> dict[str, Any]:
        """JSON-ready listing entry (no server paths)."""
        rep = self.report or {}
        return {"name": self.name, "updated": self.updated.isoformat(timespec="seconds"), "size_bytes": self.size_bytes,
                "trained_at": self.trained_at, "cohort": self.cohort, "spec": dict(rep.get("cohort_spec") or {})}


class ModelRegistry:
    """Named models under ``root`` and a cache of loaded ensembles (reloaded when retrained)."""

    def __init__(self, root: str | Path | None = None, device: str = "cpu") -> None:
        self.root = Path(root) if root is not None else default_model_root()
        self.device = device
        self._lock = threading.Lock()
        self._loaded: dict[Path, tuple[float, TwinEnsemble]] = {}

    @staticmethod
    def check_name(name: str) -> str:
        """``name`` if it is a valid model name; :class:`ModelError` saying what is allowed otherwise."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise ModelError(f"invalid model name {name!r}: use 1-64 lower-case letters, digits, '-' or '_', "
                             "starting with a letter or digit")
        return name

    def path_for(self, name: str) -> Path:
        """Where model ``name``'s checkpoint lives (or will be written)."""
        return self.root / self.check_name(name) / CHECKPOINT

    def find(self, name: str) -> ModelInfo | None:
        """Model ``name`` if it has been trained."""
        path = self.path_for(name)
        return _info(name, path) if path.is_file() else None

    def get(self, name: str) -> ModelInfo:
        """Model ``name``; :class:`ModelError` naming the registry and what it holds otherwise."""
        found = self.find(name)
        if found is None:
            have = ", ".join(m.name for m in self.list()) or "none"
            raise ModelError(f"no trained model named {name!r} in the model registry (models: {have}); "
                             f"train one with `twin train --name {name}` or POST /v1/models")
        return found

    def list(self) -> list[ModelInfo]:
        """Every trained model, by name."""
        if not self.root.is_dir():
            return []
        return [_info(d.name, d / CHECKPOINT) for d in sorted(self.root.iterdir())
                if _NAME.match(d.name) and (d / CHECKPOINT).is_file()]

    def load(self, name: str) -> TwinEnsemble:
        """The fitted ensemble of model ``name`` on this registry's device (cached per file version)."""
        return self.load_info(self.get(name))

    def load_info(self, info: ModelInfo) -> TwinEnsemble:
        from twin import load_model

        stamp = info.path.stat().st_mtime
        with self._lock:
            hit = self._loaded.get(info.path)
            if hit is not None and hit[0] == stamp:
                return hit[1]
            ens = load_model(info.path, self.device)
            self._loaded[info.path] = (stamp, ens)
            return ens


def _info(name: str, path: Path) -> ModelInfo:
    st = path.stat()
    report = None
    report_path = path.with_suffix(".report.json")
    if report_path.is_file():
        try:
            report = json.loads(report_path.read_text())
        except (OSError, ValueError):
            report = None
    if isinstance(report, dict):
        report["checkpoint"] = name  # the model's name, never the server path train() recorded
    return ModelInfo(name, path, datetime.fromtimestamp(st.st_mtime, UTC), st.st_size, report)
