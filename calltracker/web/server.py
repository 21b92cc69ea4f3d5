"""`calltracker serve`: the app in this process, or N worker processes on one port, dead ones
restarted (--workers N).

The parent migrates the database, checks that the port can be bound, and starts each
worker as a fresh `python -m calltracker serve` that binds the port with SO_REUSEPORT.
The kernel then spreads connections over the workers by their addresses. One socket
shared by all workers was tried first: an idle worker accepts every waiting connection in
one wake-up, so a proxy's few keep-alive connections all landed on one worker. The price
of SO_REUSEPORT: connections still queued on a worker that dies are reset. Fresh
interpreters rather than fork(): the parent has run an event loop and database drivers for
the migrations, which a forked child must not inherit, and prometheus_client picks its
multi-process mode at import.

All workers share PostgreSQL and Redis; among them one holds the AMI leader lock
(telephony/leader.py), and each runs its outbox loops. Their metrics are summed from the
files in a private PROMETHEUS_MULTIPROC_DIR, so a scrape answered by any worker covers all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType

from aiohttp import web
from prometheus_client.multiprocess import mark_process_dead

from calltracker import logs
from calltracker.app import create_app, orphan_watch_ctx
from calltracker.metrics import MULTIPROC_ENV
from calltracker.settings import Settings

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2
# A worker that dies sooner than this after starting is crashing, not unlucky: its
# restarts back off from RESTART_MIN to RESTART_MAX seconds instead of spinning.
STABLE_SECONDS = 10.0
RESTART_MIN = 0.5
RESTART_MAX = 30.0
# Workers finish the requests they are serving (and the AMI leader hands over) in this long.
SHUTDOWN_GRACE = 25.0


@dataclass
class _Slot:
    index: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    delay: float = RESTART_MIN
    restart_at: float | None = 0.0  # when to (re)start; None while running


class Supervisor:
    """Keeps `count` copies of `command(index)` running until SIGTERM or SIGINT."""

    def __init__(
        self,
        command: Callable[[int], Sequence[str]],
        count: int,
        *,
        env: dict[str, str],
        metrics_dir: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._command = command
        self._slots = [_Slot(i) for i in range(count)]
        self._env = env
        self._metrics_dir = metrics_dir
        self._clock = clock
        self._stopping = False

    def stop(self, signum: int = signal.SIGTERM, _frame: FrameType | None = None) -> None:
        if not self._stopping:
            log.info("event=workers_stopping signal=%s", signal.Signals(signum).name)
        self._stopping = True

    def run(self) -> int:
        previous = {s: signal.signal(s, self.stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            while not self._stopping:
                now = self._clock()
                for slot in self._slots:
                    self._check(slot, now)
                time.sleep(POLL_SECONDS)
        finally:
            self._shutdown()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return 0

    def _check(self, slot: _Slot, now: float) -> None:
        if slot.process is not None:
            code = slot.process.poll()
            if code is None:
                return
            self._reaped(slot, code, now)
        if slot.restart_at is not None and now >= slot.restart_at:
            self._start(slot, now)

    def _start(self, slot: _Slot, now: float) -> None:
        # Its own process group: a Ctrl-C in the terminal reaches the parent only, which
        # then stops the workers in order instead of all of them dying at once.
        slot.process = subprocess.Popen(
            list(self._command(slot.index)),
            env=self._env,
            process_group=0,
        )
        slot.started_at = now
        slot.restart_at = None
        log.info("event=worker_started worker=%d pid=%d", slot.index, slot.process.pid)

    def _reaped(self, slot: _Slot, code: int, now: float) -> None:
        assert slot.process is not None
        pid = slot.process.pid
        slot.process = None
        # Its live gauges (AMI leader, connected) must stop counting; its counters stay.
        mark_process_dead(pid, self._metrics_dir)  # type: ignore[no-untyped-call]
        lived = now - slot.started_at
        slot.delay = RESTART_MIN if lived >= STABLE_SECONDS else min(slot.delay * 2, RESTART_MAX)
        slot.restart_at = now + slot.delay
        how = f"signal={signal.Signals(-code).name}" if code < 0 else f"code={code}"
        log.error(
            "event=worker_exited worker=%d pid=%d %s lived_seconds=%.1f restart_in_seconds=%.1f",
            slot.index,
            pid,
            how,
            lived,
            slot.delay,
        )

    def _shutdown(self) -> None:
        running = [s.process for s in self._slots if s.process is not None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + SHUTDOWN_GRACE
        for process in running:
            try:
                process.wait(max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                log.error("event=worker_killed pid=%d reason=shutdown_grace_passed", process.pid)
                process.kill()
                process.wait()
        log.info("event=workers_stopped count=%d", len(running))


def serve_workers(settings: Settings, host: str, port: int, count: int) -> int:
    """Run `count` workers on host:port until a signal; the parent itself never serves."""
    # Fail here, with one clear message, if another program holds the port.
    socket.create_server((host, port), reuse_port=True).close()
    metrics_dir = tempfile.mkdtemp(prefix="calltracker-metrics-")
    env = {**os.environ, MULTIPROC_ENV: metrics_dir}

    def command(index: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "calltracker",
            "serve",
            "--no-migrate",
            "--host",
            host,
            "--port",
            str(port),
            "--worker-index",
            str(index),
        ]

    print(f"calltracker running on http://{host}:{port} with {count} workers", flush=True)
    log.info("event=workers_starting count=%d listen=%s:%d", count, host, port)
    supervisor = Supervisor(command, count, env=env, metrics_dir=metrics_dir)
    try:
        return supervisor.run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def serve(settings: Settings, host: str, port: int, count: int) -> int:
    """Serve host:port in this process, or in `count` worker processes, until a signal."""
    if count > 1:
        return serve_workers(settings, host, port, count)
    web.run_app(
        create_app(settings),
        host=host,
        port=port,
        access_log=None,
        print=_print_listen,
        loop=new_event_loop(),
    )
    return 0


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed: it roughly doubles what one process serves."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _print_listen(message: str) -> None:
    print(message.replace("Running on", "calltracker running on"), flush=True)


def run_worker(settings: Settings, host: str, port: int, index: int) -> int:
    """One worker: serve host:port beside its siblings until SIGTERM, or the parent is gone."""
    logs.configure(settings.log_level, settings.log_format, worker=index)
    app = create_app(settings)
    app.cleanup_ctx.append(orphan_watch_ctx(os.getppid()))
    web.run_app(
        app,
        host=host,
        port=port,
        reuse_port=True,
        access_log=None,
        print=None,
        loop=new_event_loop(),
        shutdown_timeout=SHUTDOWN_GRACE - 5,  # within the parent's patience
    )
    return 0
