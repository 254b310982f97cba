"""Where ``ssh``/``status``/``journal`` go: machine prefixes and unit names (no cluster)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from fleet.core.model import Machine
from fleetctl.client import FleetClient
from fleetctl.targets import AmbiguousMachine, LookupFailed, resolve_ssh_target

MACHINES = [Machine("ab12" + "0" * 28, "10.0.0.1"), Machine("ab34" + "0" * 28, "10.0.0.2")]


class _Cluster:
    """Only what the lookups call: live machines and (no) units."""

    async def list_machines(self) -> list[Machine]:
        return MACHINES

    async def get_unit(self, name: str) -> Any:
        return None


def _resolve(target: str) -> Machine | None:
    client = cast(FleetClient, _Cluster())
    return asyncio.run(resolve_ssh_target(client, machine=None, unit=None, target=target))


def test_a_prefix_of_two_machines_is_ambiguous_and_names_them() -> None:
    with pytest.raises(AmbiguousMachine) as caught:
        _resolve("ab")
    assert str(caught.value) == (
        "found more than one machine for 'ab' (ab120000..., ab340000...): "
        "give more of the machine id"
    )


def test_a_unique_prefix_finds_its_machine() -> None:
    assert _resolve("ab3") == MACHINES[1]


def test_nothing_matching_says_so() -> None:
    with pytest.raises(LookupFailed, match="could not find matching unit or machine"):
        _resolve("zz")
