"""Prometheus metrics of fleetd: fleet's nine metric names plus our own.

:class:`FleetMetrics` owns every collector, registered on a
``CollectorRegistry`` the daemon passes in (never the process-global default
registry, so tests and several in-process daemons never collide). The engine,
the agent and the registry adapter record through its small helpers; the API
records each request itself. ``GET /metrics`` renders the registry in
Prometheus text. Every collector is touched by product code:
``tests/test_metrics.py`` runs an engine, an agent and the API on a real etcd
and fails if one of them never moves from its initial value.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "FleetMetrics"]

# Queue depths (observed each time the queue is read) and counts of things.
_DEPTH_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)
# D-Bus calls: a local socket round trip, up to a daemon-reload.
_DBUS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


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

        self.engine_leader = Gauge(
            "fleet_engine_leader",
            "1 while this fleetd's engine is the cluster leader, else 0",
            registry=r,
        )
        self.engine_units = Gauge(
            "fleet_engine_units",
            "Units in the registry by desired state, as the leading engine last saw them",
            ["desired_state"],
            registry=r,
        )
        self.engine_unplaceable_units = Gauge(
            "fleet_engine_unplaceable_units",
            "Units the leading engine could not place in its last pass",
            registry=r,
        )
        self.engine_machines = Gauge(
            "fleet_engine_machines",
            "Live machines, as the leading engine last saw them",
            registry=r,
        )
        self.engine_pending_writes = Histogram(
            "fleet_engine_pending_writes",
            "Schedule writes still awaiting their watch echo, observed after each pass",
            buckets=_DEPTH_BUCKETS,
            registry=r,
        )
        self.agent_action_count = Counter(
            "fleet_agent_action_count_total",
            "Agent actions on systemd and the units directory, by kind and result",
            ["kind", "result"],
            registry=r,
        )
        self.agent_dbus_call_duration = Histogram(
            "fleet_agent_dbus_call_duration_seconds",
            "Latency of the agent's calls to systemd over D-Bus, by method",
            ["method"],
            buckets=_DBUS_BUCKETS,
            registry=r,
        )
        self.agent_dbus_call_failure_count = Counter(
            "fleet_agent_dbus_call_failure_count_total",
            "The agent's calls to systemd that failed, by method",
            ["method"],
            registry=r,
        )
        self.agent_reconcile_duration = Histogram(
            "fleet_agent_reconcile_duration_seconds",
            "Duration of agent reconcile passes in seconds (read, plan, execute)",
            registry=r,
        )
        self.agent_units = Gauge(
            "fleet_agent_units",
            "Units this agent holds, by the systemd active state it last published",
            ["active_state"],
            registry=r,
        )
        self.agent_hint_queue = Histogram(
            "fleet_agent_systemd_hint_queue_depth",
            "systemd state-change hints still queued, observed each time the agent takes one",
            buckets=_DEPTH_BUCKETS,
            registry=r,
        )

    # -- engine -------------------------------------------------------------

    def engine_leading(self, leading: bool) -> None:
        self.engine_leader.set(1 if leading else 0)

    def engine_view(
        self, units_by_desired: Mapping[str, int], unplaceable: int, machines: int, pending: int
    ) -> None:
        """What the leading engine saw in a pass."""
        for state in ("inactive", "loaded", "launched"):
            self.engine_units.labels(desired_state=state).set(units_by_desired.get(state, 0))
        self.engine_unplaceable_units.set(unplaceable)
        self.engine_machines.set(machines)
        self.engine_pending_writes.observe(pending)

    def engine_tasks_failed(self, task_type: str, count: int) -> None:
        """``count`` tasks of one type that a failed write did not apply."""
        if count:
            self.engine_task_count.labels(type=task_type).inc(count)
            self.engine_task_failure_count.labels(type=task_type).inc(count)

    # -- agent --------------------------------------------------------------

    def agent_action(self, kind: str, *, failed: bool = False) -> None:
        self.agent_action_count.labels(kind=kind, result="failed" if failed else "ok").inc()

    def agent_dbus_call(self, method: str, seconds: float, *, failed: bool = False) -> None:
        self.agent_dbus_call_duration.labels(method=method).observe(seconds)
        if failed:
            self.agent_dbus_call_failure_count.labels(method=method).inc()

    def agent_pass(self, seconds: float) -> None:
        self.agent_reconcile_duration.observe(seconds)

    def agent_unit_states(self, by_active_state: Mapping[str, int]) -> None:
        self.agent_units.clear()
        for state, count in by_active_state.items():
            self.agent_units.labels(active_state=state or "unknown").set(count)

    def agent_hints_queued(self, depth: int) -> None:
        self.agent_hint_queue.observe(depth)

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
