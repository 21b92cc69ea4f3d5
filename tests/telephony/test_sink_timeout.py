"""A hung or failing database does not stall the AMI consumer: facts wait, then go in once."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from calltracker.app import create_app
from calltracker.keys import ami_key
from calltracker.settings import Settings
from calltracker.telephony.calls import CallEnded, CallFact, CallStarted
from tests.conftest import seed

from .ami_server import AmiReplayServer, concat_blocks
from .app_support import visit, wait_for_ended_calls, with_ami
from .conftest import FactLog, MakeListener, eventually, trace


class StuckSink(FactLog):
    """Hangs on every fact (or fails with OSError) until healed."""

    def __init__(self, *, fail_with: type[BaseException] | None = None) -> None:
        super().__init__()
        self.healed = asyncio.Event()
        self.fail_with = fail_with
        self.attempts = 0

    async def __call__(self, fact: CallFact) -> None:
        self.attempts += 1
        if not self.healed.is_set():
            if self.fail_with is not None:
                raise self.fail_with("database unavailable")
            await asyncio.Event().wait()  # hung: only a cancel gets us out
        await super().__call__(fact)


def two_calls() -> AmiReplayServer:
    return AmiReplayServer(concat_blocks([trace("busy"), trace("noanswer")]))


async def test_a_hung_sink_times_out_while_events_go_on_then_every_fact_lands_once_in_order(
    make_listener: MakeListener,
) -> None:
    async with two_calls() as server:
        sink = StuckSink()
        listener = await make_listener(
            server.port, sink, sink_timeout=0.05, retry_min_seconds=0.05, retry_max_seconds=0.1
        )
        await eventually(server.finished.is_set, what="the whole trace streamed")
        # The consumer was not stuck behind the sink: every event was read and tracked.
        await eventually(lambda: listener.metrics()["queue_depth"] == 0, what="an empty queue")
        await eventually(lambda: listener.metrics()["open_calls"] == 0, what="calls closed")
        # The first try, then retries of the first kept fact (never of the later ones).
        await eventually(lambda: listener.metrics()["sink_timeouts"] >= 3, what="retries")
        assert listener.metrics()["facts_waiting"] == 6 and not sink.facts
        sink.healed.set()
        await eventually(lambda: len(sink.ended) == 2, what="the kept facts delivered")
    kinds = [type(f).__name__ for f in sink.facts]
    assert kinds == ["CallStarted", "OperatorRinging", "CallEnded"] * 2
    assert [f.linkedid for f in sink.facts] == ["1795342623.74"] * 3 + ["1795342612.66"] * 3
    assert listener.metrics()["facts_waiting"] == 0
    assert listener.metrics()["facts_lost"] == 0


async def test_a_transient_error_keeps_the_fact_but_a_bug_drops_it(
    make_listener: MakeListener,
) -> None:
    async with two_calls() as server:
        sink = StuckSink(fail_with=OSError)
        listener = await make_listener(
            server.port, sink, retry_on=(OSError,), retry_min_seconds=0.05, retry_max_seconds=0.1
        )
        await eventually(lambda: listener.metrics()["facts_waiting"] == 6, what="facts kept")
        sink.healed.set()
        await eventually(lambda: len(sink.ended) == 2, what="the kept facts delivered")
    assert len(sink.facts) == 6 and not listener.oddities["sink_error"]
    async with two_calls() as server:
        sink = StuckSink(fail_with=ValueError)  # not in retry_on: a bug, retrying won't help
        listener = await make_listener(server.port, sink, retry_on=(OSError,))
        await eventually(lambda: listener.oddities["sink_error"] == 6, what="facts dropped")
    assert listener.metrics()["facts_waiting"] == 0


async def test_beyond_the_retry_limit_the_oldest_facts_are_lost_and_counted(
    make_listener: MakeListener,
) -> None:
    async with two_calls() as server:
        sink = StuckSink(fail_with=OSError)
        listener = await make_listener(
            server.port,
            sink,
            retry_on=(OSError,),
            retry_limit=4,
            retry_min_seconds=0.05,
            retry_max_seconds=0.1,
        )
        await eventually(lambda: listener.metrics()["facts_lost"] == 2, what="two lost")
        sink.healed.set()
        await eventually(lambda: len(sink.facts) == 4, what="the newest four delivered")
    assert isinstance(sink.facts[0], CallEnded) and sink.facts[0].linkedid == "1795342623.74"
    assert isinstance(sink.facts[1], CallStarted) and sink.facts[1].linkedid == "1795342612.66"


@contextlib.asynccontextmanager
async def call_table_locked(database_url: str) -> AsyncIterator[None]:
    """Another client holds the lock the recorder needs: PostgreSQL hangs, SQLite is busy."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        conn = sqlite3.connect(str(Path(url.database or "")), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    pg = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(False))
    tx = pg.transaction()
    await tx.start()
    await pg.execute("LOCK TABLE call IN ACCESS EXCLUSIVE MODE")
    try:
        yield
    finally:
        await tx.rollback()
        await pg.close()


async def test_a_hung_database_delays_the_call_but_does_not_lose_it(
    settings: Settings, tmp_path: Path, aiohttp_client: Any
) -> None:
    server = AmiReplayServer.from_trace(trace("busy"), hold=True)
    await server.start()
    try:
        app_settings = with_ami(settings, server.port, tmp_path / "rec", sink_timeout_seconds=0.3)
        client = await aiohttp_client(create_app(app_settings))
        await seed(client.app, numbers=("+74951234569",))
        held = await visit(client, "spring")
        listener = client.app[ami_key]
        async with call_table_locked(settings.database_url):
            server.release(epoch=datetime.now(UTC).timestamp())
            await eventually(lambda: listener.metrics()["sink_timeouts"] >= 1, what="a timeout")
            await eventually(server.finished.is_set, what="the whole trace streamed")
            # The consumer kept reading while the database hung.
            await eventually(lambda: listener.metrics()["queue_depth"] == 0, what="drained")
            health = await (await client.get("/healthz")).json()
            assert health["checks"]["ami"]["facts_waiting"] >= 1
        (call,) = await wait_for_ended_calls(client.app, 1, timeout=15)
        assert (call.status, call.visit_id) == ("busy", held["visit_id"])
        await eventually(lambda: listener.metrics()["facts_waiting"] == 0, what="all delivered")
        assert listener.metrics()["facts_lost"] == 0
    finally:
        await server.close()
