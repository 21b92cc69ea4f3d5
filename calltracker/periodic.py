"""Background upkeep that runs now and then every so often, for as long as a block lasts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def running_every(
    seconds: float, work: Callable[[], Awaitable[None]], name: str, *, first_after: float = 0.0
) -> AsyncIterator[None]:
    """Run `work` after `first_after` seconds (at once by default) and then every `seconds`
    until the block exits. A failing round is logged and the next one tries again: upkeep
    must not die of one database outage."""

    async def loop() -> None:
        await asyncio.sleep(first_after)
        while True:
            try:
                await work()
            except Exception:
                log.exception("event=periodic_failed task=%s", name)
            await asyncio.sleep(seconds)

    task = asyncio.create_task(loop(), name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
