"""The engine component of fleetd: one leader cluster-wide schedules units."""

from fleet.engine.engine import Engine, EngineRegistry, EngineStatistics

__all__ = ["Engine", "EngineRegistry", "EngineStatistics"]
