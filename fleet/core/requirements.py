"""[X-Fleet] requirements as data: what a unit asks of the machine it runs on.

Parsed once, at submit time, from a unit file into a frozen
:class:`Requirements`; invalid combinations are rejected there with a message
naming the options. The scheduler and the agent only ever see this data.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class MetadataOp(StrEnum):
    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="


@dataclass(frozen=True, slots=True)
class MetadataConstraint:
    """One ``key<op>value`` term of ``MachineMetadata``."""

    key: str
    op: MetadataOp
    value: str

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.value}"


@dataclass(frozen=True, slots=True)
class Requirements:
    """Everything ``[X-Fleet]`` says, with specifiers (%n %N %p %i) already expanded."""

    machine_id: str | None = None
    machine_of: tuple[str, ...] = ()
    metadata: tuple[MetadataConstraint, ...] = ()
    conflicts: tuple[str, ...] = ()  # globs (fleet's path.Match syntax)
    replaces: tuple[str, ...] = ()  # globs
    is_global: bool = False
    warnings: tuple[str, ...] = ()  # e.g. unknown [X-Fleet] keys
