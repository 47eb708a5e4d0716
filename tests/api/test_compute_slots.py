"""Model work in the server takes one of the process's compute slots, in arrival order."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from api.routes.twins import _until_disconnect


class _Connected:
    async def is_disconnected(self) -> bool:
        return False


async def _two_requests(slots: int) -> tuple[list[str], list[str]]:
    services: Any = SimpleNamespace(compute=asyncio.Semaphore(slots))
    events: list[str] = []
    release = threading.Event()

    def first(token: object) -> str:
        events.append("first started")
        release.wait(30)
        events.append("first done")
        return "first"

    def second(token: object) -> str:
        events.append("second started")
        return "second"

    a = asyncio.ensure_future(_until_disconnect(_Connected(), services, first))  # type: ignore[arg-type]
    while "first started" not in events:
        await asyncio.sleep(0.01)
    b = asyncio.ensure_future(_until_disconnect(_Connected(), services, second))  # type: ignore[arg-type]
    for _ in range(30):  # give the second request every chance to start
        await asyncio.sleep(0.01)
    seen_before_release = list(events)
    release.set()
    assert await asyncio.gather(a, b) == ["first", "second"]
    return seen_before_release, events


@pytest.mark.parametrize("slots", [1, 2])
def test_requests_wait_for_a_free_compute_slot(slots: int) -> None:
    before, after = asyncio.run(_two_requests(slots))
    if slots == 1:
        assert before == ["first started"]
        assert after == ["first started", "first done", "second started"]
    else:  # a second slot: the second request runs while the first still computes
        assert before == ["first started", "second started"]
