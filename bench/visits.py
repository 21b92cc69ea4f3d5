"""Visit API load: N concurrent clients for T seconds against a real server; prints visits/s.

    python bench/visits.py [--mode embedded|scale|both] [--clients 64] [--seconds 10]
                           [--driver wrk|python] [--workers N]

embedded: SQLite file + in-process pool. scale: PostgreSQL + Redis pool (one process, or
`--workers N` processes on one port, as `calltracker serve --workers N` runs them).
The server runs in its own process, as in production. The load comes from wrk (Debian package
`wrk`) when it is installed: a Python client tops out near 1,500 requests/s on its own and
would measure itself rather than the server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get(
    "CALLTRACKER_TEST_PG_URL", "postgresql://postgres:postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("CALLTRACKER_BENCH_REDIS_URL", "redis://127.0.0.1:6379/2")
POOL_SIZE = 1000
VISITORS = 800
URLS = [
    "https://bench.example.ru/?utm_source=yandex&utm_medium=cpc&utm_campaign=c{}&utm_term=sofa",
    "https://bench.example.ru/?gclid=abc{}",
    "https://bench.example.ru/catalog/{}",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(env: dict[str, str], *args: str, stdin: str | None = None) -> None:
    subprocess.run(
        [sys.executable, "-m", "calltracker", *args],
        env=env,
        input=stdin,
        text=True,
        check=True,
        capture_output=True,
    )


async def reset_pg_database(name: str) -> str:
    conn = await asyncpg.connect(PG_ADMIN)
    await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await conn.execute(f"CREATE DATABASE {name}")
    await conn.close()
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


async def prepare(mode: str, workdir: Path) -> dict[str, str]:
    env = dict(
        os.environ, CALLTRACKER_LOG_LEVEL="WARNING", CALLTRACKER_VISIT_RATE_PER_MINUTE="100000000"
    )
    if mode == "embedded":
        env["CALLTRACKER_DATABASE_URL"] = f"sqlite:///{workdir / 'bench.db'}"
        env.pop("CALLTRACKER_REDIS_URL", None)
    else:
        env["CALLTRACKER_DATABASE_URL"] = await reset_pg_database("ct_bench")
        env["CALLTRACKER_REDIS_URL"] = REDIS_URL
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(REDIS_URL)
        await client.flushdb()
        await client.aclose()
    cli(env, "migrate")  # the other commands refuse a database that is behind
    cli(
        env,
        "site",
        "add",
        "bench",
        "--default-number",
        "+74950000000",
        "--domain",
        "bench.example.ru",
    )
    numbers = "\n".join(f"+7495{3000000 + i:07d}" for i in range(POOL_SIZE))
    cli(env, "pool", "add", "bench", "--hold", "900", "--file", "-", stdin=numbers)
    return env


async def drive(base: str, clients: int, seconds: float) -> tuple[int, list[float], int]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    visitors = [f"visitor-{i:06d}" for i in range(VISITORS)]
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(base, connector=connector) as session:

        async def one_client(seed: int) -> None:
            nonlocal errors
            rng = random.Random(seed)
            while time.perf_counter() < deadline:
                body = {
                    "site_key": "bench",
                    "url": rng.choice(URLS).format(rng.randint(1, 50)),
                    "visitor_id": rng.choice(visitors),
                    "referrer": "https://yandex.ru/",
                }
                started = time.perf_counter()
                async with session.post(
                    "/api/v1/visits", json=body, headers={"User-Agent": "Mozilla/5.0 bench"}
                ) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(one_client(i) for i in range(clients)))
    return len(latencies), latencies, errors


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["User-Agent"] = "Mozilla/5.0 bench"
local urls = {
  "https://bench.example.ru/?utm_source=yandex&utm_medium=cpc&utm_campaign=c%d&utm_term=sofa",
  "https://bench.example.ru/?gclid=abc%d",
  "https://bench.example.ru/catalog/%d",
}
local n = 0
request = function()
  n = n + 1
  local url = string.format(urls[(n % 3) + 1], n % 50)
  local body = string.format(
    '{"site_key":"bench","url":"%s","visitor_id":"visitor-%06d","referrer":"https://yandex.ru/"}',
    url, math.random(0, VISITORS - 1))
  return wrk.format(nil, "/api/v1/visits", nil, body)
end
""".replace("VISITORS", str(VISITORS))


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live children (the workers), from /proc."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def drive_wrk(
    base: str, clients: int, seconds: float, workdir: Path
) -> tuple[float, float, float, int]:
    """visits/s, p50 ms, p99 ms, non-2xx count, as wrk measured them."""
    script = workdir / "visits.lua"
    script.write_text(WRK_SCRIPT)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{clients}", f"-d{seconds:g}s", "--latency", "-s", str(script), base],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(out.split("Requests/sec:")[1].split()[0])
    p50 = _wrk_ms(out, "50%")
    p99 = _wrk_ms(out, "99%")
    errors = int(out.split("Non-2xx or 3xx responses:")[1].split()[0]) if "Non-2xx" in out else 0
    return rate, p50, p99, errors


def _wrk_ms(out: str, label: str) -> float:
    value = out.split(f" {label}")[1].split()[0]
    for unit, factor in (("ms", 1.0), ("us", 0.001), ("s", 1000.0)):
        if value.endswith(unit):
            return float(value[: -len(unit)]) * factor
    return float(value)


async def run_mode(mode: str, clients: int, seconds: float, driver: str, workers: int = 1) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = await prepare(mode, Path(tmp))
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "calltracker", "serve", "--port", str(port), "--no-migrate"]
            + (["--workers", str(workers)] if mode == "scale" and workers > 1 else []),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession() as s:
                for _ in range(100):
                    try:
                        async with s.get(base + "/healthz") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)
            await drive(base, clients, 1.0)  # warm-up: caches, prepared statements, connections
            if driver == "wrk":
                # Server CPU per visit too: on a shared machine throughput swings with the
                # neighbours, the work each visit costs the server much less.
                cpu_before = cpu_seconds(server.pid)
                rate, p50, p99, errors = drive_wrk(base, clients, seconds, Path(tmp))
                cpu_ms = (cpu_seconds(server.pid) - cpu_before) * 1000 / (rate * seconds)
                print(
                    f"mode={mode} workers={workers if mode == 'scale' else 1} driver=wrk "
                    f"clients={clients} seconds={seconds:g} "
                    f"errors={errors} visits_per_s={rate:.0f} p50_ms={p50:.1f} p99_ms={p99:.1f} "
                    f"server_cpu_ms_per_visit={cpu_ms:.3f}",
                    flush=True,
                )
                return
            count, latencies, errors = await drive(base, clients, seconds)
        finally:
            server.terminate()
            server.wait(10)
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(
        f"mode={mode} workers={workers if mode == 'scale' else 1} driver=python clients={clients} "
        f"seconds={seconds:g} visits={count} errors={errors} "
        f"visits_per_s={count / seconds:.0f} p50_ms={p50:.1f} p99_ms={p99:.1f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=["embedded", "scale", "both"], default="both")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--driver", choices=["wrk", "python"], default=None)
    parser.add_argument("--workers", type=int, default=1, help="server processes (scale mode)")
    args = parser.parse_args()
    driver = args.driver or ("wrk" if shutil.which("wrk") else "python")
    modes = ["embedded", "scale"] if args.mode == "both" else [args.mode]
    for mode in modes:
        asyncio.run(run_mode(mode, args.clients, args.seconds, driver, args.workers))


if __name__ == "__main__":
    main()
