"""The project's exception hierarchy.

    TwinError                  base of every error the project raises on purpose
    ├── RecordError            a source record is malformed (names file, resource, field, reason)
    │   ├── SchemaError        a node or edge breaks the graph schema (names node/edge and field)
    │   └── ConflictError      a record would change or link to another patient's records
    ├── StoreError             a graph store cannot do what was asked (bad URL, read-only, down, ...)
    ├── QueryError             a query or predicate is invalid
    ├── ConfigError            a setting is out of its allowed range (names the setting)
    ├── ModelError             no usable trained model (unknown name, unreadable checkpoint, ...)
    └── PlanError              a treatment plan is invalid, contradictory or out of distribution

Every user-facing failure is one of these; anything else escaping is a bug. Third-party
errors (sqlite3, neo4j, pydantic) are translated into these at exactly one boundary each:
the store base class for storage, the API's handlers for HTTP.
"""

from __future__ import annotations

__all__ = ["ConfigError", "ConflictError", "ModelError", "PlanError", "QueryError", "RecordError", "SchemaError", "StoreError", "TwinError"]


class TwinError(Exception):
    """Base class of all patient-twin errors."""


class RecordError(TwinError, ValueError):
    """A record could not be turned into graph nodes.

    Attributes name exactly what failed so the message can be acted on: ``file`` (path or
    upload name), ``resource`` (``"Observation/abc"`` or ``"line 12"``), ``field`` (a FHIR
    path such as ``valueQuantity.unit``) and ``reason``.
    """

    def __init__(
        self,
        reason: str,
        *,
        file: str | None = None,
        resource: str | None = None,
        field: str | None = None,
    ) -> None:
        self.reason = reason
        self.file = file
        self.resource = resource
        self.field = field
        super().__init__(self._message())

    def _message(self) -> str:
        where = [p for p in (self.file, self.resource) if p]
        loc = " ".join(where)
        fld = f" field {self.field!r}" if self.field else ""
        return f"{loc}{fld}: {self.reason}" if (loc or fld) else self.reason

    def with_context(self, *, file: str | None = None, resource: str | None = None) -> RecordError:
        """A copy (of the same class) with missing location parts filled in (inner parsers know less than outer ones)."""
        return type(self)(
            self.reason,
            file=self.file or file,
            resource=self.resource or resource,
            field=self.field,
        )

    def to_dict(self) -> dict[str, str | None]:
        return {"file": self.file, "resource": self.resource, "field": self.field, "reason": self.reason}


class StoreError(TwinError):
    """A graph store failed or refused an operation."""


class QueryError(TwinError, ValueError):
    """A query, predicate or Cypher statement is invalid or not allowed."""


class SchemaError(RecordError):
    """A node or edge does not fit the graph schema (raised by :mod:`graph.schema` validation)."""


class ConflictError(RecordError):
    """A write would take over or link to another patient's record (the API answers 409).

    Every patient-scoped node belongs to exactly one patient, fixed by its first write: a
    record of patient B whose id is already patient A's, or that references one of A's
    records, is refused as a whole. ``resource`` names the offending record; the message
    does not name the other patient.
    """


class ConfigError(TwinError, ValueError):
    """A setting (training, forecast or service configuration) is out of its allowed range."""


class ModelError(TwinError):
    """No usable trained model: unknown name, missing or unreadable checkpoint."""


class PlanError(TwinError, ValueError):
    """A treatment plan cannot be simulated as written.

    ``plan`` names the plan, ``field`` the offending part (``"actions[2].dose"``) and ``reason``
    says why, so a user can fix the plan file.
    """

    def __init__(self, reason: str, *, plan: str | None = None, field: str | None = None, file: str | None = None) -> None:
        self.reason = reason
        self.plan = plan
        self.field = field
        self.file = file
        super().__init__(self._message())

    def _message(self) -> str:
        where = " ".join(p for p in (self.file, f"plan {self.plan!r}" if self.plan else None) if p)
        fld = f" field {self.field!r}" if self.field else ""
        return f"{where}{fld}: {self.reason}" if (where or fld) else self.reason

    def to_dict(self) -> dict[str, str | None]:
        return {"file": self.file, "plan": self.plan, "field": self.field, "reason": self.reason}
