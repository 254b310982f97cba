"""Prometheus metrics of fleetd: fleet's nine metric names plus the API's own.

:class:`FleetMetrics` owns every collector, registered on a
``CollectorRegistry`` the daemon passes in (never the process-global default
registry, so tests and several in-process daemons never collide). The engine
and the registry adapter record through its small helpers; the API records
each request itself. ``GET /metrics`` renders the registry in Prometheus text.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "FleetMetrics"]


class FleetMetrics:
    """All fleetd collectors on one registry.

    fleet's names (``fleet-reference.md`` §4.6) are kept exactly, including the
    singular ``_second`` suffix of its histograms, so existing dashboards work.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.engine_leader_start_time = Gauge(
            "fleet_engine_leader_start_time",
            "Unix time at which this engine last became the cluster leader",
            registry=r,
        )
        self.engine_task_count = Counter(
            "fleet_engine_task_count_total",
            "Engine scheduling tasks attempted, by task type",
            ["type"],
            registry=r,
        )
        self.engine_task_failure_count = Counter(
            "fleet_engine_task_failure_count_total",
            "Engine scheduling tasks that failed, by task type",
            ["type"],
            registry=r,
        )
        self.engine_reconcile_count = Counter(
            "fleet_engine_reconcile_count_total",
            "Engine reconcile passes run",
            registry=r,
        )
        self.engine_reconcile_duration = Histogram(
            "fleet_engine_reconcile_duration_second",
            "Duration of engine reconcile passes in seconds",
            registry=r,
        )
        self.engine_reconcile_failure_count = Counter(
            "fleet_engine_reconcile_failure_count_total",
            "Engine reconcile passes that failed",
            registry=r,
        )
        self.registry_operation_count = Counter(
            "fleet_registry_operation_count_total",
            "etcd registry operations, by operation",
            ["operation"],
            registry=r,
        )
        self.registry_operation_failed_count = Counter(
            "fleet_registry_operation_failed_count_total",
            "etcd registry operations that failed, by operation",
            ["operation"],
            registry=r,
        )
        self.registry_operation_duration = Histogram(
            "fleet_registry_operation_duration_second",
            "Duration of etcd registry operations in seconds, by operation",
            ["operation"],
            registry=r,
        )
        # Ours (feature B17).
        self.api_request_count = Counter(
            "fleet_api_request_count_total",
            "HTTP API requests answered, by method, route template and status code",
            ["method", "route", "status"],
            registry=r,
        )
        self.api_request_duration = Histogram(
            "fleet_api_request_duration_seconds",
            "HTTP API request latency in seconds, by method and route template",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )

    # -- engine -------------------------------------------------------------

    def engine_became_leader(self, unix_time: float | None = None) -> None:
        self.engine_leader_start_time.set(time.time() if unix_time is None else unix_time)

    def engine_tasks(self, task_type: str, count: int) -> None:
        """``count`` tasks of one type applied in a pass."""
        if count:
            self.engine_task_count.labels(type=task_type).inc(count)

    def engine_task(self, task_type: str, *, failed: bool = False) -> None:
        self.engine_task_count.labels(type=task_type).inc()
        if failed:
            self.engine_task_failure_count.labels(type=task_type).inc()

    def engine_reconcile(self, seconds: float, *, failed: bool = False) -> None:
        self.engine_reconcile_count.inc()
        self.engine_reconcile_duration.observe(seconds)
        if failed:
            self.engine_reconcile_failure_count.inc()

    # -- registry -------------------------------------------------------------

    def registry_operation(self, operation: str, seconds: float, *, failed: bool = False) -> None:
        self.registry_operation_count.labels(operation=operation).inc()
        self.registry_operation_duration.labels(operation=operation).observe(seconds)
        if failed:
            self.registry_operation_failed_count.labels(operation=operation).inc()

    @contextmanager
    def time_registry_operation(self, operation: str) -> Iterator[None]:
        """Count and time the block; an exception counts as a failed operation."""
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            self.registry_operation(operation, time.perf_counter() - start, failed=True)
            raise
        self.registry_operation(operation, time.perf_counter() - start)

    # -- API ------------------------------------------------------------------

    def api_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.api_request_count.labels(method=method, route=route, status=str(status)).inc()
        self.api_request_duration.labels(method=method, route=route).observe(seconds)

    def render(self) -> bytes:
        """The registry in Prometheus text exposition format."""
        return bytes(generate_latest(self.registry))
