"""The bottom layer every package may import: the error hierarchy, duration parsing and the version."""

from core.durations import parse_duration
from core.errors import (
    ConfigError,
    ConflictError,
    ModelError,
    PlanError,
    QueryError,
    RecordError,
    SchemaError,
    StoreError,
    TwinError,
)
from core.version import software_version

__all__ = [
    "ConfigError",
    "ConflictError",
    "ModelError",
    "PlanError",
    "QueryError",
    "RecordError",
    "SchemaError",
    "StoreError",
    "TwinError",
    "parse_duration",
    "software_version",
]
