"""The engine component of fleetd: one leader cluster-wide schedules units."""

from fleet.engine.campaign import EngineRegistry
from fleet.engine.engine import Engine, EngineStatistics

__all__ = ["Engine", "EngineRegistry", "EngineStatistics"]
