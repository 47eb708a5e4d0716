"""The software version, for ``/healthz``, the OpenAPI document and the provenance of exports."""

from __future__ import annotations

from importlib import metadata

__all__ = ["software_version"]


def software_version() -> str:
    """The installed package version (or the source tree's when not installed)."""
    try:
        return metadata.version("patient-twin")
    except metadata.PackageNotFoundError:
        return "0.1.0"
