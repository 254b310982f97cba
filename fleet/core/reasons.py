"""Every named reason behind a scheduling decision, in the words users read.

:class:`Rule` names the ``[X-Fleet]`` option that rejected a machine for a unit
(its value is the option name users write in their unit files); :class:`Reason`
is why the scheduler placed or unscheduled a unit. The engine logs these texts,
stores them for the API and ``fleetctl`` prints them, so they are written as
plain sentences and never change meaning silently.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Reason", "Rule"]


class Rule(StrEnum):
    """The requirement that ruled a machine out, named after its ``[X-Fleet]`` option.

    Members are listed in the order the scheduler checks them: a rejection
    always names the first rule that fails.
    """

    CORDON = "cordon"  # not an [X-Fleet] option: the machine takes nothing new
    MACHINE_ID = "MachineID"
    MACHINE_METADATA = "MachineMetadata"
    MACHINE_OF = "MachineOf"
    CONFLICTS = "Conflicts"
    SPREAD_BY = "SpreadBy"
    MAX_PER_MACHINE = "MaxPerMachine"
    REPLACES = "Replaces"

    @property
    def order(self) -> int:
        return _RULE_ORDER[self]


_RULE_ORDER = {rule: i for i, rule in enumerate(Rule)}


class Reason(StrEnum):
    """Why the scheduler placed or unscheduled a unit (or could not place it)."""

    # Placements
    PLACED_LEAST_LOADED = "placed on the least-loaded machine that satisfies its requirements"
    PLACED_MACHINE_ID = "placed on the machine its MachineID names"
    PLACED_MACHINE_OF = "placed with the units it follows (MachineOf)"
    PLACED_SPREAD = "placed where SpreadBy keeps its template's instances even"

    # Unschedulings
    DESIRED_INACTIVE = "unscheduled: its desired state is inactive"
    MACHINE_GONE = "unscheduled: its target machine went away"
    RULES_BROKEN = "unscheduled: its machine no longer satisfies its requirements"
    FOLLOWS_UNSCHEDULED = "unscheduled: a unit it follows (MachineOf) was unscheduled"
    REPLACED = "unscheduled: replaced by a unit on its machine (Replaces)"
    UNIT_DESTROYED = "unscheduled: the unit no longer exists"
    NOW_GLOBAL = "unscheduled: the unit is global, every machine decides whether to run it"
    DRAINED = "unscheduled: its machine is being drained"

    # No decision possible
    UNPLACEABLE = "no machine satisfies its requirements"

    def text(self, detail: str = "") -> str:
        """The reason followed by its detail, as one line for logs and events."""
        return f"{self.value} ({detail})" if detail else self.value
