"""The service version reported by ``/healthz`` and the OpenAPI document."""

from __future__ import annotations

from core import software_version

__all__ = ["version"]


def version() -> str:
    """The installed package version (or the source tree's when not installed)."""
    return software_version()
