"""The service version reported by ``/healthz`` and the OpenAPI document."""

from __future__ import annotations

from importlib import metadata

__all__ = ["version"]


def version() -> str:
    """The installed package version (or the source tree's when not installed)."""
    try:
        return metadata.version("patient-twin")
    except metadata.PackageNotFoundError:
        return "0.1.0"
