"""The bottom layer every package may import: the error hierarchy and duration parsing."""

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
]
