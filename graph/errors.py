"""The project's exception hierarchy.

    TwinError                  base of every error the project raises on purpose
    ├── RecordError            a source record is malformed (names file, resource, field, reason)
    ├── StoreError             a graph store cannot do what was asked (bad URL, read-only, ...)
    └── QueryError             a query or predicate is invalid

Every user-facing failure is one of these; anything else escaping is a bug.
"""

from __future__ import annotations

__all__ = ["QueryError", "RecordError", "StoreError", "TwinError"]


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
        """A copy with missing location parts filled in (inner parsers know less than outer ones)."""
        return RecordError(
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
