"""Use cases on machines over the ClusterView port: the one home of machine-metadata rules.

The API's ``PATCH /machines`` and fleetctl's etcd driver both go through
:func:`update_metadata`, and fleetctl's ``set-metadata`` / ``unset-metadata``
parse their arguments with :func:`parse_assignments` / :func:`parse_keys`, so
a key or a value is judged the same way whichever road it takes to the
registry. A key is fleet's ``[A-Za-z0-9_.-]+``; a key, a value or a machine id
is valid UTF-8 of at most LINE_MAX (2048) bytes, because a unit's
``MachineMetadata=`` line is bounded by it and could never match a longer
one. Every change of a batch is checked before the first write, so bad input
writes nothing. Whether the machine is registered is not checked here
(fleet's metadata may be written before a machine joins and survives
rejoins); fleetctl resolves its MACHINE argument against the live machines.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from fleet.core.unitfile import LINE_MAX
from fleet.errors import InvalidInput
from fleet.ports import ClusterView

KEY = re.compile(r"[A-Za-z0-9_.-]+")
NO_VALUE = "add and replace require a value"


@dataclass(frozen=True, slots=True)
class MetadataChange:
    """One metadata write: ``value`` None removes the key (fleet's tombstone)."""

    machine_id: str
    key: str
    value: str | None


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored as a machine id, key or value; None if it can."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: no answer could show it
        return "not valid UTF-8"
    if size > LINE_MAX:
        return f"longer than {LINE_MAX} bytes"
    return None


def key_problem(key: str) -> str | None:
    """Why ``key`` cannot be a metadata key; None if it can."""
    problem = text_problem(key)
    if problem is None and not KEY.fullmatch(key):
        problem = "a key holds only letters, digits, '_', '.' and '-'"
    return problem


def value_problem(value: str) -> str | None:
    """Why ``value`` cannot be a metadata value; None if it can."""
    if not value:
        return NO_VALUE
    return text_problem(value)


def check_change(change: MetadataChange) -> None:
    """InvalidInput, naming what is wrong, if ``change`` must not be written."""
    if not change.machine_id or text_problem(change.machine_id) or "/" in change.machine_id:
        raise InvalidInput(f"invalid machine id {change.machine_id!r}")
    problem = key_problem(change.key)
    if problem is not None:
        raise InvalidInput(f"invalid metadata key {change.key!r}: {problem}")
    if change.value is not None:
        problem = value_problem(change.value)
        if problem is not None:
            raise InvalidInput(f"invalid value for metadata key {change.key}: {problem}")


async def update_metadata(view: ClusterView, changes: Sequence[MetadataChange]) -> None:
    """Check every change, then write them in order (dynamic metadata, no TTL)."""
    for change in changes:
        check_change(change)
    for change in changes:
        await view.set_machine_metadata(change.machine_id, change.key, change.value)


def parse_assignments(args: Sequence[str]) -> dict[str, str]:
    """``key=value`` arguments as a mapping (a later duplicate wins); InvalidInput
    for an argument without ``=``, a bad key or an empty or bad value."""
    pairs: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep:
            raise InvalidInput(f"invalid metadata {arg!r}: expected key=value")
        problem = key_problem(key)
        if problem is not None:
            raise InvalidInput(f"invalid metadata key {key!r}: {problem}")
        problem = value_problem(value)
        if problem == NO_VALUE:
            raise InvalidInput(
                f"invalid metadata {arg!r}: the value is empty (unset-metadata removes a key)"
            )
        if problem is not None:
            raise InvalidInput(f"invalid value for metadata key {key}: {problem}")
        pairs[key] = value
    return pairs


def parse_keys(args: Sequence[str]) -> list[str]:
    """Metadata key arguments, de-duplicated in order; InvalidInput for a bad one."""
    keys: dict[str, None] = {}
    for key in args:
        if "=" in key:
            raise InvalidInput(f"invalid metadata key {key!r}: give the key alone, without '='")
        problem = key_problem(key)
        if problem is not None:
            raise InvalidInput(f"invalid metadata key {key!r}: {problem}")
        keys[key] = None
    return list(keys)
