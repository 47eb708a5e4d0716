"""Cooperative cancellation of long work (forecasts, scenarios, training).

A :class:`CancelToken` is set by whoever wants the work stopped (the API when a client
disconnects or a job is cancelled); the work calls :meth:`CancelToken.check` at its
checkpoints (between solver chunks, ensemble members and quantile chunks) and stops there
with :class:`Cancelled`. Nothing is interrupted mid-step: a checkpoint is at most one chunk
of work away.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from core import TwinError

__all__ = ["CancelToken", "Cancelled", "ProgressFn", "checkpoint"]

#: Called with the fraction done in [0, 1] and a short message (counts and stages, no patient data).
#: It may raise (e.g. :class:`Cancelled`) to stop the work at that checkpoint.
ProgressFn = Callable[[float, str], None]


class Cancelled(TwinError):
    """The work was stopped at a checkpoint because its :class:`CancelToken` was set."""


class CancelToken:
    """A thread-safe flag: :meth:`cancel` from any thread, :meth:`check` at the work's checkpoints."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = "cancelled"

    def cancel(self, reason: str = "cancelled") -> None:
        """Ask the work to stop at its next checkpoint (idempotent; the first reason is kept)."""
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if :meth:`cancel` was called."""
        if self._event.is_set():
            raise Cancelled(self.reason)


def checkpoint(on_progress: ProgressFn | None, cancel: CancelToken | None) -> ProgressFn:
    """One callback for a piece of work: checks ``cancel`` and then reports to ``on_progress``."""

    def report(frac: float, message: str) -> None:
        if cancel is not None:
            cancel.check()
        if on_progress is not None:
            on_progress(frac, message)

    return report
