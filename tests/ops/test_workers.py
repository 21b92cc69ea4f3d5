"""`calltracker serve --workers 2` on one PostgreSQL + Redis, as production runs it.

Real processes: the parent binds the port and supervises two workers; visits hammer both;
the AMI leader is killed with SIGKILL while a replayed call is in progress, and the other
worker must take over and finish recording that call.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from sqlalchemy import select

from calltracker.accounts import tokens
from calltracker.catalog import sites
from calltracker.db.engine import create_engine, create_sessionmaker
from calltracker.db.models import Call, Visit
from tests.conftest import PG_URL, REDIS_URL, _pg_admin, _pg_dsn
from tests.telephony.ami_server import AmiReplayServer
from tests.telephony.traces import TraceBlock

from ..telephony.conftest import trace

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).resolve().parents[2]
DID = "+74951234567"  # what the recorded "answered" call dials: a static number here
POOL = [f"+7495300{i:04d}" for i in range(20)]
UA = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 Safari/537.36"}
TAKEOVER_LIMIT = 10.0  # seconds from the leader's death to the new leader's AMI login
# The recorded call is answered, then (in this replay) talks for two minutes: longer than
# any handover, so it is still in progress when the new leader logs in.
TALK_GAP = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children_of(parent: int) -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                pids.add(int(entry.name))
    return pids


def call_in_progress_blocks() -> tuple[list[TraceBlock], int]:
    """The "answered" trace with a long talk: blocks after the answer move TALK_GAP later."""
    stream = list(trace("answered").stream)
    answered = 1 + next(
        i
        for i, b in enumerate(stream)
        if b.event == "BridgeEnter" and b.headers.get("Uniqueid") == "1795342603.60"
    )
    shifted = [
        TraceBlock(b.raw, b.headers, b.offset + (TALK_GAP if i >= answered else 0.0))
        for i, b in enumerate(stream)
    ]
    return shifted, answered


@dataclass
class Cluster:
    base: str
    parent: subprocess.Popen[bytes]
    redis: Redis
    prefix: str
    database_url: str
    admin_token: str
    ami: AmiReplayServer
    answered_at_block: int
    log_path: Path
    visits: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    made: int = 0

    def workers(self) -> set[int]:
        return children_of(self.parent.pid)

    async def leader_pid(self) -> int | None:
        value = await self.redis.get(self.prefix + "ami:leader")
        return int(value.decode().split(":")[1]) if value else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


async def seed(database_url: str) -> str:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            site = await sites.create_site(
                session,
                key="shop",
                name="Shop",
                domains=["shop.example.ru"],
                default_number="+74950000000",
            )
            pool = await sites.create_pool(session, site, name="main", hold_seconds=900)
            await sites.add_pool_numbers(session, pool, POOL)
            await sites.add_static_number(session, site, DID, source="billboard", medium="offline")
            _, token = await tokens.create_token(session, name="ops", role="admin")
    finally:
        await engine.dispose()
    return token


async def wait_healthy(base: str, parent: subprocess.Popen[bytes], log: Path) -> None:
    """Until both workers answer: each new connection lands on a worker the kernel picks."""
    deadline = time.monotonic() + 30
    answered: set[int] = set()
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        while time.monotonic() < deadline:
            assert parent.poll() is None, f"serve exited:\n{log.read_text()[-4000:]}"
            try:
                async with http.get(base + "/healthz") as resp:
                    if resp.status == 200:
                        answered.add((await resp.json())["pid"])
                        if len(answered) == 2:
                            return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"both workers never answered:\n{log.read_text()[-4000:]}")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(
    pg_template: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Cluster]:
    name = f"ct_ops_{uuid.uuid4().hex[:10]}"
    await _pg_admin(f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    database_url = _pg_dsn(PG_URL, name)
    token = await seed(database_url)
    blocks, answered = call_in_progress_blocks()
    source = trace("answered")
    ami = AmiReplayServer(
        blocks,
        login_response=source.login_response.raw,
        banner=source.banner,
        speed=1.0,
        timestamps=False,  # receive times: the talk time is the handover's real length
        stream_after_snapshot=True,
        hold=True,
    )
    await ami.start()
    prefix = f"ops-{uuid.uuid4().hex[:8]}:"
    port = free_port()
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {
        **os.environ,
        "CALLTRACKER_DATABASE_URL": database_url,
        "CALLTRACKER_REDIS_URL": REDIS_URL,
        "CALLTRACKER_REDIS_PREFIX": prefix,
        "CALLTRACKER_AMI_HOST": "127.0.0.1",
        "CALLTRACKER_AMI_PORT": str(ami.port),
        "CALLTRACKER_AMI_SECRET": "calltracker",
        "CALLTRACKER_AMI_RECONNECT_MAX_SECONDS": "0.5",
        "CALLTRACKER_AGI_PORT": "off",
        "CALLTRACKER_VISIT_RATE_PER_MINUTE": "1000000",
        "CALLTRACKER_RECORDINGS_DIR": str(log_path.parent / "recordings"),
        "CALLTRACKER_LOG_LEVEL": "INFO",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with log_path.open("wb") as log:
        parent = subprocess.Popen(
            [sys.executable, "-m", "calltracker", "serve", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    redis: Redis = Redis.from_url(REDIS_URL)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(base, parent, log_path)
        yield Cluster(base, parent, redis, prefix, database_url, token, ami, answered, log_path)
    finally:
        parent.send_signal(signal.SIGTERM)
        try:
            code = parent.wait(30)
        except subprocess.TimeoutExpired:
            parent.kill()
            code = parent.wait()
        await ami.close()
        async for key in redis.scan_iter(match=prefix + "*"):
            await redis.delete(key)
        await redis.aclose()
        await _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    assert code == 0, log_path.read_text()[-4000:]


async def hammer(cluster: Cluster, visitors: int, requests: int, concurrency: int) -> set[int]:
    """POST visits from many clients at once; returns the pids /healthz answered from."""
    answered_by: set[int] = set()
    queue = [f"visitor-{i % visitors:04d}" for i in range(requests)]
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(cluster.base, connector=connector) as http:

        async def client() -> None:
            while queue:
                visitor = queue.pop()
                body = {
                    "site_key": "shop",
                    "url": "https://shop.example.ru/?utm_medium=cpc",
                    "visitor_id": visitor,
                }
                async with http.post("/api/v1/visits", json=body, headers=UA) as resp:
                    assert resp.status == 200, await resp.text()
                    answer = await resp.json()
                cluster.made += 1
                if answer["kind"] == "pool":
                    cluster.visits[answer["number"]].add(visitor)
                if cluster.made % 10 == 0:
                    async with http.get("/healthz") as resp:
                        answered_by.add((await resp.json())["pid"])

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return answered_by


async def test_leases_never_collide_between_workers(cluster: Cluster) -> None:
    pids = await hammer(cluster, visitors=60, requests=400, concurrency=32)
    assert pids == cluster.workers() and len(pids) == 2  # both workers served
    # Hold time 900 s: nothing expires during the test, so each leased number must have
    # stayed with exactly one visitor, whichever worker answered.
    assert len(cluster.visits) == len(POOL)
    shared = {n: v for n, v in cluster.visits.items() if len(v) > 1}
    assert not shared, f"numbers given to two live visitors: {shared}"
    engine = create_engine(cluster.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            rows = (
                await session.execute(
                    select(Visit.number, Visit.visitor_key).where(Visit.number_kind == "pool")
                )
            ).all()
    finally:
        await engine.dispose()
    holders: defaultdict[str, set[str]] = defaultdict(set)
    for number, visitor in rows:
        holders[number].add(visitor)
    assert all(len(v) == 1 for v in holders.values())
    assert len({next(iter(v)) for v in holders.values()}) == len(POOL)  # 20 distinct visitors


async def scrape(cluster: Cluster) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession(cluster.base) as http:
        headers = {"Authorization": f"Bearer {cluster.admin_token}", "Connection": "close"}
        async with http.get("/metrics", headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            text = await resp.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_sum_the_visits_of_every_worker(cluster: Cluster) -> None:
    await hammer(cluster, visitors=60, requests=100, concurrency=8)
    for _ in range(4):  # whichever worker answers, it reports all of them
        samples = await scrape(cluster)
        visits = sum(v for (name, _), v in samples.items() if name == "calltracker_visits_total")
        assert visits == cluster.made
        assert samples[("calltracker_ami_leader", ())] == 1
        assert samples[("calltracker_ami_lock_held", ())] == 1


async def stored_call(cluster: Cluster) -> list[Call]:
    engine = create_engine(cluster.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            return list((await session.scalars(select(Call))).all())
    finally:
        await engine.dispose()


async def wait_for(what: str, check: Any, timeout: float, cluster: Cluster) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{cluster.log()}")
        await asyncio.sleep(0.05)


async def test_killed_leader_is_replaced_and_the_call_in_progress_is_recorded(
    cluster: Cluster,
) -> None:
    workers = cluster.workers()
    leader = await cluster.leader_pid()
    assert leader in workers
    assert cluster.ami.logins == 1  # only the leader ever logged in to Asterisk
    cluster.ami.release(epoch=time.time())

    async def answered() -> list[Call]:
        calls = await stored_call(cluster)
        return [c for c in calls if c.answered_at is not None]

    (call,) = await wait_for("the call to be answered", answered, 10, cluster)
    assert call.ended_at is None and cluster.ami.cursor == cluster.answered_at_block

    os.kill(leader, signal.SIGKILL)
    killed_at = time.monotonic()

    async def new_leader_logged_in() -> bool:
        pid = await cluster.leader_pid()
        return pid is not None and pid != leader and cluster.ami.logins == 2

    await wait_for("a new leader", new_leader_logged_in, TAKEOVER_LIMIT, cluster)
    takeover = time.monotonic() - killed_at
    new_leader = await cluster.leader_pid()
    # The survivor, or the dead worker's replacement if it started in time: either will do.
    assert new_leader != leader and new_leader in cluster.workers()

    async def ended() -> list[Call]:
        return [c for c in await stored_call(cluster) if c.ended_at is not None]

    (done,) = await wait_for("the call to end", ended, 10, cluster)
    assert (done.linkedid, done.status) == ("1795342603.59", "answered")
    assert done.tracking_number == DID and done.source == "billboard"
    # Answered before the kill, ended after the takeover: the new leader, which never saw
    # the answer, rebuilt it from the snapshot (its talk time is an estimate from there).
    assert done.answered_at is not None and done.talk_seconds > 0
    assert done.ended_at is not None and done.ended_at > done.answered_at
    assert len(await stored_call(cluster)) == 1
    print(f"takeover_seconds={takeover:.2f} talk_seconds={done.talk_seconds}")

    async def replaced() -> bool:
        return len(cluster.workers()) == 2 and leader not in cluster.workers()

    await wait_for("the parent to restart the dead worker", replaced, 10, cluster)
    assert await cluster.leader_pid() == new_leader  # no second handover
    samples = await scrape(cluster)
    assert samples[("calltracker_calls_total", (("status", "answered"),))] == 1
    assert samples[("calltracker_ami_leader", ())] == 1  # the dead one no longer counts
    visits = sum(v for (name, _), v in samples.items() if name == "calltracker_visits_total")
    assert visits == cluster.made  # the dead worker's counts are kept
