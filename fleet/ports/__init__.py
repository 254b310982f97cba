"""Narrow ports between fleetd's components and their adapters.

Components (engine, agent, API) depend on these Protocols and records only;
the composition root (:mod:`fleet.daemon`) hands them the adapters: the etcd
registry, the D-Bus systemd manager, the system clock. Each port has a fake
for logic tests that passes the same contract tests as its real adapter.
"""

from fleet.ports.clock import Clock, SystemClock
from fleet.ports.events import (
    BodyChanged,
    CordonChanged,
    DrainChanged,
    DrainStatusChanged,
    GlobalChanged,
    JobChanged,
    Leader,
    LeaderChanged,
    MachineChanged,
    MetadataChanged,
    ReasonChanged,
    RegistryEvent,
    ScheduleChanged,
    Scope,
    Topic,
    UnitStateChanged,
)
from fleet.ports.registry import (
    AgentStore,
    ClusterView,
    EngineStore,
    EventStore,
    HeldLease,
    Leadership,
    MachineLease,
    MaintenanceStore,
    ScheduleChange,
    UnitStore,
    Watchable,
)
from fleet.ports.systemd import NO_SUCH_UNIT, FileChange, SystemdManager, UnitChange, UnitTriple

__all__ = [
    "NO_SUCH_UNIT",
    "AgentStore",
    "BodyChanged",
    "Clock",
    "ClusterView",
    "CordonChanged",
    "DrainChanged",
    "DrainStatusChanged",
    "EngineStore",
    "EventStore",
    "FileChange",
    "GlobalChanged",
    "HeldLease",
    "JobChanged",
    "Leader",
    "LeaderChanged",
    "Leadership",
    "MachineChanged",
    "MachineLease",
    "MaintenanceStore",
    "MetadataChanged",
    "ReasonChanged",
    "RegistryEvent",
    "ScheduleChange",
    "ScheduleChanged",
    "Scope",
    "SystemClock",
    "SystemdManager",
    "Topic",
    "UnitChange",
    "UnitStateChanged",
    "UnitStore",
    "UnitTriple",
    "Watchable",
]
