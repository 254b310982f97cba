"""How the scheduler's refusals read: the words users see when a unit cannot go somewhere.

A :class:`Rejection` is what one checker (:mod:`fleet.core.checks`) returns for one
machine: the ``[X-Fleet]`` rule that failed and a sentence saying how.
:func:`explain` sums a unit's rejections across the cluster into the one
paragraph the engine stores and ``fleetctl`` prints, short even on a large
cluster. The machine-id and plural forms every scheduler text uses live here too,
so all of them read alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fleet.core.reasons import Rule

__all__ = ["Rejection", "explain", "plural", "short_id"]


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one machine cannot take a unit: the first rule that failed and how."""

    machine_id: str
    rule: Rule
    detail: str

    def __str__(self) -> str:
        return f"{short_id(self.machine_id)}: {self.rule}: {self.detail}"


def explain(name: str, rejections: Sequence[Rejection]) -> str:
    """One paragraph saying why ``name`` could not be placed, grouped by rule.

    Up to three machines rejected for the same reason are named (by short id);
    more are counted, so the text stays short on a large cluster."""
    if not rejections:
        return f"{name} cannot be placed: there are no machines in the cluster."
    total = len(rejections)
    where = "the only machine" if total == 1 else f"any of the {total} machines"
    by_rule: dict[Rule, dict[str, list[str]]] = {}
    for r in sorted(rejections, key=lambda r: (r.rule.order, r.machine_id)):
        by_rule.setdefault(r.rule, {}).setdefault(r.detail, []).append(r.machine_id)
    sentences = [f"{name} cannot be placed on {where}."]
    for rule, groups in by_rule.items():
        shown = [f"{detail} [{_machines_text(ids)}]" for detail, ids in list(groups.items())[:3]]
        if len(groups) > 3:
            rest = sum(len(ids) for ids in list(groups.values())[3:])
            shown.append(f"and {rest} more {plural(rest, 'machine')}")
        sentences.append(f"{rule}: {'; '.join(shown)}.")
    return " ".join(sentences)


def short_id(machine_id: str) -> str:
    """A machine id as users read it (fleetctl's short form)."""
    return machine_id[:8]


def plural(n: int, word: str) -> str:
    return word if n == 1 else f"{word}s"


_NAMED_MACHINES = 3  # a small cluster's machines are named; a larger group is counted


def _machines_text(ids: Sequence[str]) -> str:
    if len(ids) > _NAMED_MACHINES:
        return f"on {len(ids)} machines"
    shorts = [short_id(i) for i in ids]
    if len(shorts) == 1:
        return f"on {shorts[0]}"
    return f"on {', '.join(shorts[:-1])} and {shorts[-1]}"
