"""At scale: `serve --workers 2` on PostgreSQL + Redis, the AMI leader killed during a real call."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from calltracker.db.auth_models import User
from calltracker.db.engine import create_engine, create_sessionmaker
from tests.admin.conftest import password_hash
from tests.conftest import PG_URL, REDIS_URL, _pg_admin, _pg_dsn
from tests.ops.test_workers import ROOT, UA, seed, wait_healthy

from .conftest import Console, Lab
from .pbx import Pbx, free_tcp_port
from .sipp import ANSWER, CallPlan, caller_for

TAKEOVER_LIMIT = 15.0


async def add_operator(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            session.add(
                User(
                    username="op101",
                    role="operator",
                    password_hash=password_hash(),
                    extension="101",
                )
            )
    finally:
        await engine.dispose()


async def until(what: str, check: Any, timeout: float, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-5000:]
            raise AssertionError(f"timed out waiting for {what}\n{tail}")
        await asyncio.sleep(0.1)


async def test_the_ami_leader_killed_during_a_call_is_replaced_and_the_call_recorded_once(
    lab: Lab, pbx: Pbx, pg_template: str, tmp_path: Path, consoles: list[Any]
) -> None:
    name = f"ct_ast_{uuid.uuid4().hex[:10]}"
    await _pg_admin(f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    database_url = _pg_dsn(PG_URL, name)
    token = await seed(database_url)
    await add_operator(database_url)
    prefix = f"ast-{uuid.uuid4().hex[:8]}:"
    port = free_tcp_port()
    log_path = tmp_path / "serve.log"
    env = {
        **os.environ,
        "CALLTRACKER_DATABASE_URL": database_url,
        "CALLTRACKER_REDIS_URL": REDIS_URL,
        "CALLTRACKER_REDIS_PREFIX": prefix,
        "CALLTRACKER_AMI_HOST": "127.0.0.1",
        "CALLTRACKER_AMI_PORT": str(pbx.ports.ami),
        "CALLTRACKER_AMI_SECRET": pbx.ami_secret,
        "CALLTRACKER_AMI_RECONNECT_MAX_SECONDS": "0.5",
        "CALLTRACKER_AGI_PORT": str(pbx.ports.agi),  # both workers listen (SO_REUSEPORT)
        "CALLTRACKER_VISIT_RATE_PER_MINUTE": "1000000",
        "CALLTRACKER_RECORDINGS_DIR": str(tmp_path / "recordings"),
        "CALLTRACKER_PUBLIC_URL": f"http://127.0.0.1:{port}",
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
    admin = {"Authorization": f"Bearer {token}"}
    try:
        await wait_healthy(base, parent, log_path)
        async with aiohttp.ClientSession(base) as http:

            async def leader() -> int | None:
                value = await redis.get(prefix + "ami:leader")
                return int(value.decode().split(":")[1]) if value else None

            async def calls() -> list[dict[str, Any]]:
                async with http.get("/api/v1/calls", headers=admin) as resp:
                    assert resp.status == 200, await resp.text()
                    return list((await resp.json())["calls"])

            first = await until("an AMI leader", leader, 15, log_path)
            url = "https://shop.example.ru/?utm_source=yandex&utm_medium=cpc&utm_campaign=scale"
            async with http.post(
                "/api/v1/visits", json={"site_key": "shop", "url": url}, headers=UA
            ) as resp:
                assert resp.status == 200, await resp.text()
                visit = await resp.json()
            console = await Console.open(base, "op101")
            consoles.append(console)
            caller = caller_for({"101": ANSWER}, lab.next_serial())
            trunk = lab.call(CallPlan(visit["number"][1:], caller, talk_ms=12_000))
            await trunk.start()

            async def answered() -> list[dict[str, Any]]:
                return [c for c in await calls() if c["answered_at"]]

            await until("the answer", answered, 20, log_path)
            os.kill(first, signal.SIGKILL)

            async def new_leader() -> bool:
                pid = await leader()
                return pid is not None and pid != first

            await until("a new leader", new_leader, TAKEOVER_LIMIT, log_path)
            await trunk.finished()

            async def ended() -> list[dict[str, Any]]:
                return [c for c in await calls() if c["status"] != "ringing"]

            (call,) = await until("the call's end", ended, 20, log_path)
            assert (call["status"], call["operator"]) == ("answered", "101")
            assert (call["source"], call["medium"], call["campaign"]) == ("yandex", "cpc", "scale")
            assert call["visit"]["id"] == visit["visit_id"]
            assert call["talk_seconds"] >= 5, call  # from before the kill to the hang-up
            assert len(await calls()) == 1
            # Whichever worker a console reaches now, it shows the call as it ended.
            late = await Console.open(base, "op101")
            consoles.append(late)
            card = late.last(caller)
            assert (card["state"], card["answered_by"], card["source"]) == (
                "ended",
                "101",
                "yandex",
            )
    finally:
        parent.send_signal(signal.SIGTERM)
        try:
            parent.wait(30)
        except subprocess.TimeoutExpired:
            parent.kill()
            parent.wait()
        async for key in redis.scan_iter(match=prefix + "*"):
            await redis.delete(key)
        await redis.aclose()
        await _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
