"""Prometheus metrics: what each process counts, and the figures read from the database and Redis."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from number_pool import PoolStats

# prometheus_client's own switch, read by the library at import: `calltracker serve
# --workers N` sets it for each worker, so that counters live in files that any worker
# sums on a scrape (the scrape reaches whichever worker accepts it).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Request latency buckets (seconds): the visit API answers in about a millisecond; pages
# and reports take up to seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


_Labelled = Counter | Histogram


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


class Metrics:
    """The metrics this process updates where things happen (visits, calls, requests, AMI)."""

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        # A registry per app, not the global one: tests build many apps in one process.
        self.registry = CollectorRegistry()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry
        self.visits = Counter(
            "calltracker_visits",
            "Visits started, by the kind of number shown",
            ["kind"],
            registry=r,
        )
        self.leases = Counter(
            "calltracker_leases", "Numbers leased from a pool to a visit", ["pool"], registry=r
        )
        self.calls = Counter(
            "calltracker_calls", "Calls ended and stored, by status", ["status"], registry=r
        )
        self.request_seconds = Histogram(
            "calltracker_http_request_duration_seconds",
            "Time to answer an HTTP request, by route (its pattern, not the raw path)",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.responses = Counter(
            "calltracker_http_responses",
            "HTTP responses by route and status code",
            ["method", "route", "status"],
            registry=r,
        )
        # Per process; across the workers of one server the live values are combined.
        self.ami_connected = Gauge(
            "calltracker_ami_connected",
            "1 while this server's AMI listener is logged in to Asterisk",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.ami_leader = Gauge(
            "calltracker_ami_leader",
            "Processes of this server holding the AMI leader lock (0 or 1; sum over servers)",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.ami_open_calls = Gauge(
            "calltracker_ami_open_calls",
            "Calls in progress as the AMI listener tracks them",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.ami_facts_waiting = Gauge(
            "calltracker_ami_facts_waiting",
            "Call facts kept for a retry while the database fails",
            registry=r,
            multiprocess_mode="livesum",
        )

    def visit_started(self, kind: str, pool_id: int | None) -> None:
        """VisitService's observer: one visit, and a lease when it got a pooled number."""
        self._child(self.visits, kind).inc()
        if pool_id is not None and kind == "pool":
            self._child(self.leases, str(pool_id)).inc()

    def request_done(self, method: str, route: str, status: int, seconds: float) -> None:
        self._child(self.request_seconds, method, route).observe(seconds)
        self._child(self.responses, method, route, str(status)).inc()

    def _child(self, metric: _Labelled, *labels: str) -> Any:
        """metric.labels(*labels), remembered: `labels` takes a lock and validates its
        arguments on every call, which on the visit API's hot path added up to a few percent."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def set_ami(
        self, *, leader: bool, connected: bool, open_calls: int, facts_waiting: int
    ) -> None:
        self.ami_leader.set(int(leader))
        self.ami_connected.set(int(connected))
        self.ami_open_calls.set(open_calls)
        self.ami_facts_waiting.set(facts_waiting)

    def exposition(self, scraped: Scraped | None = None) -> bytes:
        """The text format: this server's metrics, then the figures gathered for this scrape."""
        if self.multiprocess_dir is not None:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
            text = generate_latest(registry)
        else:
            text = generate_latest(self.registry)
        if scraped is not None:
            once = CollectorRegistry()
            once.register(scraped)
            text += generate_latest(once)
        return text


@dataclass(frozen=True)
class PoolFigures:
    site: str
    stats: PoolStats


@dataclass(eq=False)  # hashable by identity: prometheus_client keys its registry by collector
class Scraped:
    """Figures read from the database and Redis at scrape time; the same from every worker."""

    pools: Sequence[PoolFigures] = ()
    outbox: Mapping[str, int] | None = None  # rows by state; None when the query failed
    dependencies: Mapping[str, bool] = field(default_factory=dict)
    ami_lock_held: bool | None = None  # None: no election (no Redis) or AMI off

    def describe(self) -> Iterable[Metric]:
        return []  # families vary with the data; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        if self.pools:
            yield from _pool_families(self.pools)
        if self.outbox is not None:
            rows = GaugeMetricFamily(
                "calltracker_outbox_rows",
                "Outbox deliveries not done yet, by state (pending, sending, failed, dead)",
                labels=["state"],
            )
            for state, count in sorted(self.outbox.items()):
                rows.add_metric([state], count)
            yield rows
        up = GaugeMetricFamily(
            "calltracker_dependency_up",
            "1 when the dependency answered this scrape's check",
            labels=["dependency"],
        )
        for name, ok in sorted(self.dependencies.items()):
            up.add_metric([name], int(ok))
        yield up
        if self.ami_lock_held is not None:
            yield GaugeMetricFamily(
                "calltracker_ami_lock_held",
                "1 when some process holds the AMI leader lock in Redis",
                value=int(self.ami_lock_held),
            )


def _pool_families(pools: Sequence[PoolFigures]) -> Iterator[Metric]:
    labels = ["pool", "site"]
    size = GaugeMetricFamily("calltracker_pool_numbers", "Numbers in the pool", labels=labels)
    leased = GaugeMetricFamily("calltracker_pool_leased", "Numbers leased now", labels=labels)
    ratio = GaugeMetricFamily(
        "calltracker_pool_utilisation_ratio", "Leased numbers / pool size", labels=labels
    )
    peak = GaugeMetricFamily(
        "calltracker_pool_peak_leased", "Most numbers leased at once, ever", labels=labels
    )
    recommended = GaugeMetricFamily(
        "calltracker_pool_recommended_size", "Pool size advised from the peak", labels=labels
    )
    exhausted = CounterMetricFamily(
        "calltracker_pool_exhaustions",
        "Lease requests that found no free number",
        labels=labels,
    )
    for p in pools:
        key = [p.stats.pool_id, p.site]
        size.add_metric(key, p.stats.size)
        leased.add_metric(key, p.stats.leased)
        ratio.add_metric(key, p.stats.utilisation)
        peak.add_metric(key, p.stats.peak_concurrent)
        recommended.add_metric(key, p.stats.recommended_size)
        exhausted.add_metric(key, p.stats.exhaustion_count)
    yield from (size, leased, ratio, peak, recommended, exhausted)
