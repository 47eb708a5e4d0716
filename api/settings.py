"""Service settings: one pydantic-settings class read from ``TWIN_*`` environment variables.

A YAML or JSON settings file can supply the same fields (``load_settings(path)`` or
``TWIN_SETTINGS_FILE``); environment variables override the file. Unknown keys are refused
so a typo never silently falls back to a default.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core import ConfigError
from graph import DEFAULT_STORE_URL
from service import DEFAULT_MAX_JOB_COST, DEFAULT_MAX_REQUEST_COST, DEFAULT_MODEL_ROOT, DEFAULT_TORCH_THREADS

__all__ = ["Settings", "load_settings"]


class Settings(BaseSettings):
    """Everything the service needs to start; safe defaults (loopback, CORS closed)."""

    model_config = SettingsConfigDict(env_prefix="TWIN_", extra="forbid", frozen=True)

    store: str = Field(DEFAULT_STORE_URL, description="Store URL: sqlite:///path.db (default), bolt:// or neo4j://.")
    model_path: Path = Field(DEFAULT_MODEL_ROOT, description="Model registry folder (`twin train` writes there too).")
    device: Literal["cpu", "cuda"] = Field("cpu", description="Torch device for forecasts, scenarios and training.")
    keys_db: Path = Field(Path("twin-data/api-keys.db"), description="SQLite file of hashed API keys.")
    audit_log: Path = Field(Path("twin-data/audit.jsonl"), description="Append-only JSON-lines audit log.")
    upload_dir: Path = Field(Path("twin-data/uploads"), description="Uploaded image files (by content hash).")
    jobs_db: Path = Field(Path("twin-data/jobs.db"), description="SQLite file persisting background job state.")
    job_workers: int = Field(1, ge=1, le=8, description="Background jobs at once (each training job is its own process).")
    job_queue_max: int = Field(16, ge=1, le=10_000,
                               description="Jobs that may wait for a worker; more are refused with 429 and Retry-After.")
    max_request_cost: int = Field(
        DEFAULT_MAX_REQUEST_COST, ge=1_000,
        description="Largest forecast/scenario request answered at once, in trajectory-steps (service.limits); "
                    "the default keeps each within a few seconds on one core. Larger work: the job endpoints.")
    max_job_cost: int = Field(DEFAULT_MAX_JOB_COST, ge=1_000,
                              description="Largest forecast/scenario job, in trajectory-steps (bounds its memory and time).")
    ray_address: str | None = Field(None, description="Ray cluster the shards of POST /v1/trials run on (ray://host:10001, "
                                                      "auto); default: in the job worker. Its nodes must reach the store.")
    compute_slots: int = Field(
        1, ge=1, le=64,
        description="Forecasts and scenario runs computed at once in each server process; the others wait their "
                    "turn in arrival order. Model work is CPU-bound: running more at once than the process has "
                    "torch threads only interleaves them and makes every answer later.")
    torch_threads: int = Field(DEFAULT_TORCH_THREADS, ge=1, le=256,
                               description="torch CPU threads of the server process and of each training process.")
    max_request_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 above).")
    rate_limit_per_minute: float = Field(600.0, gt=0, description="Sustained requests per minute per API key.")
    rate_limit_burst: int = Field(60, ge=1, description="Requests a key may make at once before the rate applies.")
    cors_origins: list[str] = Field(default_factory=list, description="Allowed CORS origins; empty = CORS closed.")
    cypher_timeout_s: float = Field(10.0, gt=0, le=300, description="Time limit of one read-only Cypher query.")
    cypher_row_limit: int = Field(10_000, ge=1, le=100_000, description="Most rows one Cypher query returns.")
    deid_salt: SecretStr | None = Field(None, description="Secret salt for de-identified graph exports.")

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard(cls, v: list[str]) -> list[str]:
        if "*" in v:
            raise ValueError("cors_origins must list explicit origins; '*' would expose health data to any site")
        return v

    @field_validator("store")
    @classmethod
    def _store_nonempty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("store URL must not be empty")
        return v


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"settings file {path} cannot be read: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"settings file {path} must hold a mapping of setting names to values")
    return data


def load_settings(path: str | Path | None = None) -> Settings:
    """Settings from ``path`` (or ``$TWIN_SETTINGS_FILE``) overridden by ``TWIN_*`` variables.

    Invalid settings raise :class:`~core.ConfigError` naming each bad setting.
    """
    path = path or os.environ.get("TWIN_SETTINGS_FILE")
    try:
        if path is None:
            return Settings()
        from_file = _read_file(Path(path))
        unknown = sorted(set(from_file) - set(Settings.model_fields))
        if unknown:
            raise ConfigError(f"settings file {path}: unknown setting(s) {unknown}")
        from_env = Settings().model_dump(exclude_unset=True)
        return Settings(**{**from_file, **from_env})
    except ValidationError as exc:
        bad = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid settings: {bad}") from None
